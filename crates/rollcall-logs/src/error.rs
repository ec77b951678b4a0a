//! The log service's one error type, mapped to HTTP in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_http::{BodyError, error_response};

use crate::query::QueryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the body is empty: send one log message as text")]
    EmptyMessage,
    #[error("the body is not UTF-8 text")]
    NotText,
    #[error("the batch has no records")]
    EmptyBatch,
    #[error("the batch is not JSON (an array, or one object per line): {0}")]
    MalformedBatch(String),
    #[error("the batch has {count} records; the limit is {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("`Content-Encoding: {0}` is not supported: send the body uncompressed or gzip")]
    Encoding(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("log storage is unavailable")]
    Store(#[from] StoreError),
    /// A bug (a query task that panicked): nothing the client did.
    #[error("internal error")]
    Internal,
}

impl LogError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            LogError::Body(e) => e.status(),
            LogError::EmptyMessage
            | LogError::NotText
            | LogError::EmptyBatch
            | LogError::MalformedBatch(_)
            | LogError::Query(_) => StatusCode::BAD_REQUEST,
            LogError::TooManyRecords { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            LogError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            LogError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            LogError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LogError::Body(e) => e.code(),
            LogError::EmptyMessage => "empty_message",
            LogError::NotText => "not_text",
            LogError::EmptyBatch => "empty_batch",
            LogError::MalformedBatch(_) => "malformed_json",
            LogError::TooManyRecords { .. } => "too_many_records",
            LogError::Encoding(_) => "unsupported_encoding",
            LogError::Query(_) => "invalid_query",
            LogError::Store(_) => "store_unavailable",
            LogError::Internal => "internal",
        }
    }
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        if let LogError::Store(e) = &self {
            // The detail goes to the log, not to the client.
            tracing::error!(error = %e, "log store failure");
        }
        error_response(self.status(), self.code(), self.to_string())
    }
}
