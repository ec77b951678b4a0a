//! Calling a router in process, without a socket: for tests of a service's
//! routes (bad input, error shapes) that need no network.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// What a route answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// A header's value as text (`None` if absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The `code` of a JSON error body (`""` if there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A registry's routes in process (no socket), the registry, and the token
/// that stops it.
pub fn registry(
    config: rollcall_registry::RegistryConfig,
) -> (
    Router,
    rollcall_registry::Registry,
    tokio_util::sync::CancellationToken,
) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (registry, _background, _starts) =
        rollcall_registry::Registry::start(config, shutdown.clone()).expect("a registry");
    (
        rollcall_registry::api::router(registry.clone()),
        registry,
        shutdown,
    )
}

/// Sends one request to `router` and reads the whole answer.
pub async fn call(router: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a readable body")
        .to_bytes();
    Answer {
        status,
        content_type,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Sends one request and checks that it was refused with `status` and a
/// JSON error whose code is `code`; returns the answer for more checks.
pub async fn assert_refused(
    router: &Router,
    (method, uri, body): (&str, &str, &str),
    status: u16,
    code: &str,
) -> Answer {
    let answer = call(router, method, uri, body.to_owned()).await;
    let what = format!("{method} {uri} {body}: {}", answer.body);
    assert_eq!(answer.status, status, "{what}");
    assert_eq!(answer.error_code(), code, "{what}");
    assert!(
        answer.content_type.starts_with("application/json"),
        "{what}"
    );
    answer
}
