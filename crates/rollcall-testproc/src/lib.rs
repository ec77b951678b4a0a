//! Real processes for tests, and nothing of rollcall's services: start a
//! program and wait for its `listening on URL` ([`child`]), send it a signal
//! by name ([`signal`]), run etcd members on loopback ([`etcd`]). A program a
//! test needs and cannot find fails the test naming its Debian package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod child;
pub mod etcd;
pub mod signal;

pub use child::{ChildProcess, read_lines};

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
