//! The SDK's errors. Each says whether trying again may help.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The service could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A call took longer than its timeout.
    #[error("{what} timed out")]
    Timeout { what: String },
    /// The other side could not be reached (refused, reset, DNS).
    #[error("{url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The other side answered with an error status.
    #[error("{url} rejected the request with HTTP {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    /// The other side answered something that makes no sense.
    #[error("{url} sent a bad response: {reason}")]
    BadResponse { url: String, reason: String },
    /// No provider of a required service is known.
    #[error("no provider of {name} is known")]
    NoProvider { name: String },
    /// The service is shutting down.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// A setting is wrong (a bad URL or name given to the builder).
    #[error("invalid setting: {0}")]
    Config(String),
}

impl SdkError {
    /// Whether the same call may succeed later: timeouts, unreachable peers,
    /// server-side (5xx) and rate-limit (429) rejections, and missing providers
    /// are worth retrying; 4xx rejections, bad responses and shutdown are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SdkError::Timeout { .. }
            | SdkError::Unreachable { .. }
            | SdkError::NoProvider { .. } => true,
            SdkError::Rejected { status, .. } => *status >= 500 || *status == 429,
            SdkError::Bind { .. }
            | SdkError::BadResponse { .. }
            | SdkError::ShuttingDown
            | SdkError::Config(_) => false,
        }
    }

    /// Classifies a client error for `url`.
    pub fn from_reqwest(url: &str, error: reqwest::Error) -> Self {
        if error.is_timeout() {
            return SdkError::Timeout {
                what: format!("request to {url}"),
            };
        }
        let mut cause: &dyn std::error::Error = &error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        if error.is_connect() || error.is_request() {
            SdkError::Unreachable {
                url: url.to_owned(),
                reason: cause.to_string(),
            }
        } else {
            SdkError::BadResponse {
                url: url.to_owned(),
                reason: cause.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_kind() {
        assert!(SdkError::Timeout { what: "x".into() }.is_retryable());
        let rejected = |status| SdkError::Rejected {
            url: "u".into(),
            status,
            body: String::new(),
        };
        assert!(rejected(503).is_retryable());
        assert!(rejected(429).is_retryable());
        assert!(!rejected(400).is_retryable());
        assert!(!SdkError::ShuttingDown.is_retryable());
    }
}

/// Why a service built on the SDK stopped with an error: its store (`E`)
/// or the SDK.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(E),
    #[error(transparent)]
    Service(#[from] SdkError),
}
