//! Helpers shared by the end-to-end tests: the real binaries, started as a user
//! would start them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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
