//! Test helpers for rollcall: never used outside tests.
//!
//! - [`eventually`]: wait for a condition with a deadline (never a fixed sleep).
//! - [`TestRegistry`]: an in-process registry on port 0.
//! - [`FakeService`]: a classic-style service written as raw HTTP + JSON, whose
//!   heartbeat and patch endpoints can be told to answer, fail, hang or close.
//! - [`router::call`]: one request to a router in process, no socket.
//! - [`etcd::EtcdCluster`]: real etcd members on loopback, to kill and stop.
//! - [`prometheus::Prometheus`]: a real Prometheus discovering through a registry.
//! - [`tls::TestCa`]: a CA and a server certificate made at run time.
//! - [`otlp`]: OTLP exports written on the wire format (bombs included).
//! - [`ChildProcess`]: a real process (the `rollcall` binary, an example) with
//!   its announced URL, killed or signalled for real.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake;
pub mod openapi;
pub mod otlp;
pub mod prometheus;
pub mod router;
pub mod tls;

use std::time::Duration;

/// Real processes (in `rollcall-testproc`, which depends on no rollcall
/// service, so the etcd client's tests use it without the registry).
pub use rollcall_testproc::{
    ChildProcess, bin_on_path, child, etcd, eventually, read_lines, signal, within,
};

pub use fake::{FakeService, Mode};
use rollcall_registry::RegistryConfig;
use tokio_util::sync::CancellationToken;

/// A registry running in this process.
#[derive(Debug)]
pub struct TestRegistry {
    pub url: String,
    pub addr: std::net::SocketAddr,
    /// Where it answers DNS, when its config asks it to.
    pub dns_addr: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestRegistry {
    /// Starts a registry with `config` on `config.addr` (port 0: any free port).
    pub async fn start(config: RegistryConfig) -> Self {
        let listener = tokio::net::TcpListener::bind(config.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            rollcall_registry::run(config, listener, token, |started| {
                let _ = started_tx.send(started);
            })
            .await
            .unwrap();
        });
        let started = started_rx.await.expect("the registry started");
        let registry = Self {
            url: format!("http://{addr}"),
            addr,
            dns_addr: started.dns_addr,
            shutdown,
            handle: Some(handle),
        };
        registry.wait_ready().await;
        registry
    }

    /// Starts an in-memory registry with default settings.
    pub async fn in_memory() -> Self {
        Self::start(RegistryConfig::for_tests()).await
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.url);
        eventually(Duration::from_secs(10), "registry ready", || {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// Stops it and waits until it has (its port is free again).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("registry stops in time")
                .unwrap();
        }
    }

    /// The catalog as JSON.
    pub async fn services(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/services", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The catalog entry for `url`, if any.
    pub async fn instance(&self, url: &str) -> Option<serde_json::Value> {
        self.services()
            .await
            .into_iter()
            .find(|i| i["ServiceURL"] == url)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `POST`s a registration body (raw JSON, as a classic client would).
pub async fn register_raw(registry: &str, body: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{registry}/services"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
}

/// `DELETE`s a registration (raw text body, as a classic client would).
pub async fn deregister_raw(registry: &str, url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(format!("{registry}/services"))
        .body(url.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
}
