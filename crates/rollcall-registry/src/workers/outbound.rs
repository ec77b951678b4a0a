//! Every call the registry makes to other services: health checks (`GET` the
//! heartbeat URL), patch deliveries (`POST` the update URL), in one place, with
//! one client and one way of describing what went wrong. Each call has its own
//! timeout; answers are read only a little way (to keep the connection
//! reusable), never whole.

use std::time::{Duration, Instant};

use rollcall_http::signing::SigningKey;
use rollcall_proto::ServiceUrl;

use crate::catalog::health::CheckOutcome;
use crate::config::RegistryConfig;

/// Why a call to another service did not succeed. Its text is what events,
/// logs and the dashboard show ("HTTP 500", "connection failed: …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: this replica may no longer act (its lease may have
    /// lapsed, so the receiver may have another owner by now).
    #[error("not sent: this replica's lease may have lapsed")]
    NotSent,
    #[error("connection failed: {0}")]
    Connect(String),
    /// No answer within the call's own timeout.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The HTTP client's own timeout (connecting) ran out.
    #[error("timed out")]
    ClientTimedOut,
    /// An answer that is not a 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// Anything else the exchange failed on: its innermost cause.
    #[error("{0}")]
    Failed(String),
}

/// Most bytes of an answer read (to keep the connection reusable).
pub const MAX_ANSWER_READ: usize = 16 * 1024;

/// The registry's HTTP client (verifying `https` services against
/// `--ca-file` when given).
pub fn client(config: &RegistryConfig) -> Result<reqwest::Client, crate::StartError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(config.check_timeout.max(config.delivery_timeout))
        .pool_idle_timeout(Duration::from_secs(30))
        // Instances past the held-connection cap share these. 32 per host
        // was tried (the bench's 10,000 instances on 50 hosts open a
        // connection for many checks): no steadier CPU, up to twice the RSS.
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true)
        .user_agent(concat!("rollcall-registry/", env!("CARGO_PKG_VERSION")))
        // A redirect is an answer, not an address to call next: an
        // instance cannot send the registry's calls somewhere else.
        .redirect(reqwest::redirect::Policy::none());
    Ok(config.serving.tls.client(builder)?.build()?)
}

/// `request` to `url` signed with `key` (if the registry has one) over
/// `body`.
fn signed(
    request: reqwest::RequestBuilder,
    key: Option<&SigningKey>,
    method: &str,
    url: &ServiceUrl,
    body: &[u8],
) -> reqwest::RequestBuilder {
    match key {
        Some(key) => key
            .sign(
                method,
                url.as_str(),
                body,
                rollcall_proto::Timestamp::system_now().0,
            )
            .into_iter()
            .fold(request, |r, (name, value)| r.header(name, value)),
        None => request,
    }
}

/// `GET`s a heartbeat URL: any 2xx within `timeout` passes.
pub async fn probe(
    client: &reqwest::Client,
    url: &ServiceUrl,
    timeout: Duration,
    key: Option<&SigningKey>,
) -> CheckOutcome {
    let attempt = async {
        let response = signed(client.get(url.as_str()), key, "GET", url, b"")
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        drain(response).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(CallError::Status(status.as_u16()))
        }
    };
    timed_check(timeout, attempt).await
}

/// A check's outcome: `attempt` (`Ok` passes) within `timeout`, and how
/// long it took.
pub async fn timed_check(
    timeout: Duration,
    attempt: impl std::future::Future<Output = Result<(), CallError>>,
) -> CheckOutcome {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(CallError::TimedOut(timeout)));
    let latency = started.elapsed();
    match result {
        Ok(()) => CheckOutcome::pass(latency),
        // The catalog keeps the text, to show.
        Err(error) => CheckOutcome::fail(latency, error.to_string()),
    }
}

/// `POST`s a patch body once: `Ok` for a 2xx within `timeout`.
pub async fn post_patch(
    client: &reqwest::Client,
    url: &ServiceUrl,
    body: Vec<u8>,
    timeout: Duration,
    key: Option<&SigningKey>,
) -> Result<(), CallError> {
    let request = client
        .post(url.as_str())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    let request = signed(request, key, "POST", url, &body).body(body).send();
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(response)) if response.status().is_success() => {
            drain(response).await;
            Ok(())
        }
        Ok(Ok(response)) => Err(CallError::Status(response.status().as_u16())),
        Ok(Err(error)) => Err(describe(error)),
        Err(_) => Err(CallError::TimedOut(timeout)),
    }
}

/// `GET`s `url` and decodes its JSON answer, within `timeout` for the whole
/// exchange and reading at most `max_bytes` of the body (a larger answer is an
/// error, not a bigger buffer).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    token: Option<&rollcall_http::access::Secret>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<T, CallError> {
    let exchange = async {
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(describe)?;
        if !response.status().is_success() {
            return Err(CallError::Status(response.status().as_u16()));
        }
        rollcall_http::bounded::json(response, max_bytes)
            .await
            .map_err(|e| CallError::Failed(e.to_string()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(CallError::TimedOut(timeout)))
}

/// Reads a small answer to the end so the connection can be reused; a large
/// one is abandoned (and its connection closed).
pub async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_ANSWER_READ {
            break;
        }
    }
}

/// A client error as a [`CallError`], told by its innermost cause
/// ("Connection refused (os error 111)").
pub fn describe(error: reqwest::Error) -> CallError {
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_connect() {
        CallError::Connect(cause.to_string())
    } else if error.is_timeout() {
        CallError::ClientTimedOut
    } else {
        CallError::Failed(cause.to_string())
    }
}
