//! Reading another service's answer without trusting its size: at most
//! `max` bytes, then an error instead of a bigger buffer. (Time is bounded
//! by each request's own timeout.)

/// Why an answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Larger than the caller allows (said by its `Content-Length`, or found
    /// while reading): not read on.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while the body was read.
    #[error("{0}")]
    Read(reqwest::Error),
    /// Not the JSON expected.
    #[error("{0}")]
    Json(serde_json::Error),
}

/// The whole body, if it is at most `max` bytes.
pub async fn read(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, AnswerError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(AnswerError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(AnswerError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(AnswerError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body decoded as JSON, if it is at most `max` bytes.
pub async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    max: usize,
) -> Result<T, AnswerError> {
    let body = read(response, max).await?;
    serde_json::from_slice(&body).map_err(AnswerError::Json)
}

/// The start of the body, for an error message: at most `max` bytes read,
/// never an error.
pub async fn start_of(mut response: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(max);
    String::from_utf8_lossy(&body).into_owned()
}
