//! Real processes for tests, and nothing of rollcall's services: start a
//! program and wait for its `listening on URL` ([`child`]), send it a signal
//! by name ([`signal`]), run etcd members on loopback ([`etcd`]). A program a
//! test needs and cannot find fails the test naming its Debian package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod child;
pub mod etcd;
pub mod signal;

pub use child::{ChildProcess, read_lines};

use std::time::{Duration, Instant};

/// Polls `check` (every 10 ms) until it returns `Some`, or gives up after
/// `timeout`: the one retry loop with a deadline that every wait in the
/// tests goes through.
pub async fn within<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(timeout, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// `program` on `PATH`; panics naming the Debian `package` when missing (a
/// test that needs a real counterpart fails without it, never skips).
pub fn bin_on_path(program: &str, package: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed: `apt-get install {package}` (./scripts/test.sh installs it)"
            )
        })
}
