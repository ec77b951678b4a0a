//! Signals by name (`KILL`, `TERM`, `INT`, `STOP`, `CONT`, or `0` to test
//! that a process exists), sent with `kill(2)` through `nix`: no `kill`
//! process spawned, nothing blocking.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Sends signal `name` to `pid`; `Err` says why it could not.
pub fn send(pid: u32, name: &str) -> Result<(), String> {
    let pid = Pid::from_raw(i32::try_from(pid).map_err(|e| e.to_string())?);
    let signal = if name == "0" {
        None
    } else {
        Some(
            format!("SIG{name}")
                .parse::<Signal>()
                .map_err(|e| format!("{name}: {e}"))?,
        )
    };
    kill(pid, signal).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_sent_by_name_and_bad_names_refused() {
        assert!(send(std::process::id(), "0").is_ok(), "we exist");
        assert!(send(std::process::id(), "NOPE").is_err());
    }
}
