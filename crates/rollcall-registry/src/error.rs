//! The registry API's one error type, mapped to HTTP in exactly one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_http::{BodyError, error_response};
use rollcall_proto::registration::RegistrationError;
use rollcall_proto::{InvalidName, InvalidUrl};

/// An optional service name from query parameter `param` (empty: none).
pub fn optional_name(
    value: Option<String>,
    param: &'static str,
) -> Result<Option<rollcall_proto::ServiceName>, ApiError> {
    value
        .filter(|s| !s.is_empty())
        .map(|s| rollcall_proto::ServiceName::parse(&s))
        .transpose()
        .map_err(|reason| ApiError::InvalidName { param, reason })
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the body must be the instance's ServiceURL as text: {0}")]
    InvalidUrl(InvalidUrl),
    #[error("the body is not UTF-8 text")]
    NotText,
    #[error("`{param}` is not a valid service name: {reason}")]
    InvalidName {
        param: &'static str,
        reason: InvalidName,
    },
    #[error("`{param}` is invalid: {reason}")]
    InvalidQuery { param: &'static str, reason: String },
    #[error("the body is invalid: {0}")]
    InvalidBody(String),
    #[error(transparent)]
    Callback(#[from] crate::callbacks::Refused),
    #[error("the catalog holds its most instances ({0}, --max-instances); nothing was changed")]
    CatalogFull(usize),
    #[error("the registry holds its most watch streams ({0}, --max-watch-streams)")]
    TooManyStreams(usize),
    #[error("no instance is registered at {0}")]
    NotRegistered(String),
    #[error("the catalog could not be written ({0}); nothing was changed")]
    StoreUnavailable(String),
    #[error("the registry is shutting down")]
    ShuttingDown,
    /// A bug: nothing the client did. The body says no more than that.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Registration(_)
            | ApiError::InvalidUrl(_)
            | ApiError::NotText
            | ApiError::InvalidName { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Body(e) => e.status(),
            ApiError::NotRegistered(_) => StatusCode::NOT_FOUND,
            ApiError::Callback(_) => StatusCode::FORBIDDEN,
            ApiError::StoreUnavailable(_)
            | ApiError::ShuttingDown
            | ApiError::CatalogFull(_)
            | ApiError::TooManyStreams(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Registration(e) => e.code(),
            ApiError::Body(e) => e.code(),
            ApiError::InvalidUrl(_) => "invalid_url",
            ApiError::NotText => "not_text",
            ApiError::InvalidName { .. } => "invalid_name",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::NotRegistered(_) => "not_registered",
            ApiError::Callback(_) => "callback_refused",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::CatalogFull(_) => "catalog_full",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_client_error() {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        error_response(status, self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_and_a_stable_code() {
        let internal = ApiError::Internal;
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.code(), "internal");
        assert_eq!(
            ApiError::ShuttingDown.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::NotRegistered("http://x".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::InvalidBody("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
