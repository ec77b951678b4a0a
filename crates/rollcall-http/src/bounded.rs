//! Reading another service's answer without trusting its size: at most
//! `max` bytes, then an error instead of a bigger buffer. (Time is bounded
//! by each request's own timeout.)

/// The whole body, if it is at most `max` bytes.
pub async fn read(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body decoded as JSON, if it is at most `max` bytes.
pub async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    max: usize,
) -> Result<T, String> {
    let body = read(response, max).await?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
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
