//! The registry API's one error type, mapped to HTTP in exactly one place:
//! the request's own faults, and the shell's [`WriteError`]s.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_http::{BodyError, error_response};
use rollcall_proto::registration::RegistrationError;
use rollcall_proto::{InvalidName, InvalidUrl};

use crate::shell::WriteError;

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
    #[error(transparent)]
    NeedsToken(#[from] crate::callbacks::NeedsToken),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the registry holds its most watch streams ({0}, --max-watch-streams)")]
    TooManyStreams(usize),
    /// A bug: nothing the client did. The body says no more than that.
    #[error("internal error")]
    Internal,
}

impl From<crate::callbacks::RegistrationRefused> for ApiError {
    fn from(refused: crate::callbacks::RegistrationRefused) -> Self {
        match refused {
            crate::callbacks::RegistrationRefused::Callback(e) => e.into(),
            crate::callbacks::RegistrationRefused::Name(e) => e.into(),
        }
    }
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
            ApiError::Write(WriteError::NotRegistered(_)) => StatusCode::NOT_FOUND,
            ApiError::Callback(_) | ApiError::NeedsToken(_) => StatusCode::FORBIDDEN,
            ApiError::Write(
                WriteError::Store(_) | WriteError::ShuttingDown | WriteError::CatalogFull(_),
            )
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
            ApiError::Write(WriteError::NotRegistered(_)) => "not_registered",
            ApiError::Callback(_) => "callback_refused",
            ApiError::NeedsToken(_) => "name_needs_token",
            ApiError::Write(WriteError::Store(_)) => "store_unavailable",
            ApiError::Write(WriteError::CatalogFull(_)) => "catalog_full",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::Write(WriteError::ShuttingDown) => "shutting_down",
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
        let down = ApiError::from(WriteError::ShuttingDown);
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.code(), "shutting_down");
        let url = rollcall_proto::ServiceUrl::parse("http://x").unwrap();
        let unknown = ApiError::from(WriteError::NotRegistered(url));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.code(), "not_registered");
        let outage = ApiError::from(WriteError::Store(crate::store::StoreError::NoLease));
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outage.code(), "store_unavailable");
        assert_eq!(
            ApiError::InvalidBody("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
