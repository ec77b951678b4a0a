//! HTTP plumbing shared by every rollcall service.
//!
//! - [`error_response`]: the one JSON error shape (`{"error": {"code", "message"}}`).
//! - [`RawBody`]: the request body as bytes, with its own size limit; too large
//!   is a JSON 413 the client can actually read, a broken stream a JSON 400.
//! - [`QueryParams`]: query parameters whose rejections are JSON 400s.
//! - [`with_fallbacks`]: JSON answers for unknown routes (404) and wrong methods
//!   (405), and a panic turned into a bare JSON 500 instead of a dropped
//!   connection.
//! - [`server::serve_with`]: runs a router on an already-bound listener, with
//!   connection limits, until a `CancellationToken` fires, then drains
//!   in-flight requests up to a deadline.

pub mod access;
pub mod bounded;
pub mod browser;
pub mod openapi;
pub mod rate;

/// The browser, rate and access guards in one layer (what three
/// `from_fn` layers did, without cloning and boxing three services for
/// every request): browsers first, then the write rate, then the token.
#[derive(Debug, Clone)]
pub struct Guards {
    pub access: std::sync::Arc<access::Access>,
    pub limit: std::sync::Arc<rate::WriteLimit>,
    pub browsers: std::sync::Arc<browser::Browsers>,
}

impl Guards {
    /// Lets `req` through (marked authenticated if it is), or answers.
    pub fn admit(&self, req: &mut Request) -> Result<(), Box<Response>> {
        browser::admit(&self.browsers, req)?;
        rate::admit(&self.limit, req)?;
        access::admit(&self.access, req)
    }
}
pub mod server;
pub mod signing;
pub mod tls;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_proto::ErrorBody;
use tokio_util::sync::CancellationToken;

/// A JSON error response.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    error_body_response(status, &ErrorBody::new(code, message))
}

/// A JSON error response from a complete body (one that names a field, say).
/// An HTML page with `status`, from a template's rendering (askama's
/// `Template::render()`): a page that failed to render is a plain 500, said
/// in the log, never half a page.
pub fn html_page<E: std::fmt::Display>(
    status: StatusCode,
    rendered: Result<String, E>,
) -> Response {
    match rendered {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub fn error_body_response(status: StatusCode, body: &ErrorBody) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| {
        r#"{"error":{"code":"internal","message":"internal error"}}"#.to_owned()
    });
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Query parameters whose rejection (a malformed query string, a value of the
/// wrong type) is a JSON 400 like every other error.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than the {limit} bytes this route accepts")]
    TooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    Unreadable(String),
    #[error("the body did not arrive in time")]
    TimedOut,
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "payload_too_large",
            BodyError::Unreadable(_) => "unreadable_body",
            BodyError::TimedOut => "body_timeout",
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.code(), self.to_string())
    }
}

/// Most bytes read and thrown away after a body went over its limit, so the
/// client, still sending, can read the 413 instead of a reset connection.
pub const DRAIN_LIMIT: usize = 32 * 1024 * 1024;
/// Most time spent draining an oversized body.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The whole request body, at most `MAX` bytes, whatever its content type (the
/// classic clients are not consistent about it).
///
/// A larger body is answered with a JSON 413 — after the rest of it has been
/// read and discarded (up to [`DRAIN_LIMIT`] bytes and [`DRAIN_TIME`]), because
/// closing a connection with unread data resets it and the client would see a
/// broken pipe instead of the answer.
#[derive(Debug)]
pub struct RawBody<const MAX: usize = 65536>(pub Bytes);

impl<S: Send + Sync, const MAX: usize> FromRequest<S> for RawBody<MAX> {
    type Rejection = BodyError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, MAX).await.map(RawBody)
    }
}

/// Whether a body failed because it did not arrive within the server's
/// body timeout.
fn timed_out(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Reads a whole request body of at most `limit` bytes (for limits set at run
/// time; [`RawBody`] is the same with a fixed one).
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt as _;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = req.into_body().into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut over = declared.is_some_and(|n| n > limit);
    while !over {
        match stream.next().await {
            Some(Ok(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    over = true;
                } else {
                    buf.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) if timed_out(&e) => return Err(BodyError::TimedOut),
            Some(Err(e)) => return Err(BodyError::Unreadable(e.to_string())),
            None => return Ok(Bytes::from(buf)),
        }
    }
    drop(buf);
    let drain = async {
        let mut drained = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    Err(BodyError::TooLarge { limit })
}

async fn not_found(req: Request) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

/// Adds JSON 404 and 405 answers and turns a panicking handler into a JSON 500.
pub fn with_fallbacks<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// A `CancellationToken` that fires on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    token
}

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received: shutting down"),
        () = term => tracing::info!("SIGTERM received: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    async fn echo(RawBody(body): RawBody<8>) -> Bytes {
        body
    }

    #[allow(clippy::unused_async)]
    async fn boom() -> &'static str {
        panic!("boom")
    }

    fn app() -> Router {
        with_fallbacks(
            Router::new()
                .route("/echo", post(echo))
                .route("/panic", post(boom)),
        )
    }

    async fn call(method: &str, path: &str, body: &'static str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body))
            .unwrap();
        let res = app().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn errors_are_json_with_the_right_status() {
        assert_eq!(
            call("POST", "/echo", "hi").await,
            (StatusCode::OK, "hi".into())
        );
        let (status, body) = call("POST", "/echo", "way too long").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("\"code\":\"payload_too_large\""), "{body}");
        let (status, body) = call("GET", "/echo", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body.contains("method_not_allowed"), "{body}");
        let (status, body) = call("GET", "/nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("not_found"), "{body}");
        let (status, body) = call("POST", "/panic", "").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("boom"), "5xx bodies reveal nothing: {body}");
    }
}
