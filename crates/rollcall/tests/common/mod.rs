//! Helpers shared by the end-to-end tests: the real binaries, started as a user
//! would start them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;

use std::path::PathBuf;
use std::time::Duration;

// Not every test file uses every helper.
#[allow(unused_imports)]
pub use rollcall_testkit::{ChildProcess, FakeService, Mode, eventually};

/// The `rollcall` binary cargo built for these tests.
pub fn rollcall_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rollcall"))
}

/// An example binary (`cargo test` builds examples next to the binary).
pub fn example_bin(name: &str) -> PathBuf {
    let path = rollcall_bin()
        .parent()
        .expect("binary has a directory")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path
}

/// Fast health checks, so tests of health behaviour take seconds, not minutes.
pub const FAST_CHECKS: &[&str] = &[
    "--check-interval",
    "200ms",
    "--check-timeout",
    "200ms",
    "--fast-recheck",
    "100ms",
];

/// Starts `rollcall registry` in memory on a free port with `extra` flags.
pub async fn registry(extra: &[&str]) -> ChildProcess {
    let mut args = vec!["registry", "--addr", "127.0.0.1:0", "--in-memory"];
    args.extend_from_slice(extra);
    ChildProcess::start(&rollcall_bin(), &args, &[]).await
}

/// Starts `rollcall registry` on `data_dir` with `extra` flags.
pub async fn registry_on_disk(
    data_dir: &std::path::Path,
    addr: &str,
    extra: &[&str],
) -> ChildProcess {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec!["registry", "--addr", addr, "--data-dir", dir];
    args.extend_from_slice(extra);
    ChildProcess::start(&rollcall_bin(), &args, &[]).await
}

/// The catalog entry of `url` in `registry`, if any.
pub async fn instance(registry: &str, url: &str) -> Option<serde_json::Value> {
    catalog(registry)
        .await
        .into_iter()
        .find(|i| i["ServiceURL"] == url)
}

/// `GET /services`.
pub async fn catalog(registry: &str) -> Vec<serde_json::Value> {
    reqwest::Client::new()
        .get(format!("{registry}/services"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `fake` holds exactly `expected` for `name` (order ignored).
pub async fn wait_providers(fake: &FakeService, name: &str, expected: &[&str], timeout: Duration) {
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    let what = format!("{} to hold {name} = {expected:?}", fake.url);
    eventually(timeout, &what, || {
        let mut held = fake.providers(name);
        held.sort();
        let ok = held == expected;
        async move { ok.then_some(()) }
    })
    .await;
}

#[allow(unused_imports)]
pub use rollcall_testkit::{deregister_raw, register_raw};

/// Starts `rollcall log` on `data_dir` at `addr`, registering with `registry`
/// (empty: standalone), with `extra` flags.
pub async fn log_service(
    data_dir: &std::path::Path,
    addr: &str,
    registry: &str,
    extra: &[&str],
) -> ChildProcess {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec![
        "log",
        "--addr",
        addr,
        "--data-dir",
        dir,
        "--registry",
        registry,
    ];
    args.extend_from_slice(extra);
    ChildProcess::start(&rollcall_bin(), &args, &[]).await
}

/// `GET {base}/v1/logs?{query}` → the records.
pub async fn query_logs(base: &str, query: &str) -> Vec<serde_json::Value> {
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/logs?{query}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["records"].as_array().cloned().unwrap_or_default()
}

/// Every record matching `query`, following cursors.
pub async fn all_logs(base: &str, query: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let q = match cursor {
            Some(c) => format!("{query}&limit=1000&order=asc&cursor={c}"),
            None => format!("{query}&limit=1000&order=asc"),
        };
        let page: serde_json::Value = reqwest::get(format!("{base}/v1/logs?{q}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The value of a counter or gauge in a Prometheus text page.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap().trim_end_matches('/')
}

/// Starts `rollcall grades` on `data_dir`, registering with `registry`
/// (empty: standalone), with `extra` flags.
pub async fn grades_service(
    data_dir: &std::path::Path,
    registry: &str,
    extra: &[&str],
) -> ChildProcess {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec![
        "grades",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--registry",
        registry,
    ];
    args.extend_from_slice(extra);
    ChildProcess::start(&rollcall_bin(), &args, &[]).await
}

/// Starts `rollcall portal` registering with `registry`.
pub async fn portal_service(registry: &str) -> ChildProcess {
    ChildProcess::start(
        &rollcall_bin(),
        &["portal", "--addr", "127.0.0.1:0", "--registry", registry],
        &[],
    )
    .await
}
