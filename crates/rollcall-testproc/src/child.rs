//! Real child processes for end-to-end tests: started with arguments, their
//! announced URL read from the `listening on URL` line they print on stdout,
//! and stopped by real signals (SIGKILL, SIGTERM, SIGINT, SIGSTOP, SIGCONT).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Reads lines from a child's output on a thread of its own (so the child
/// never blocks on a full pipe) and hands them over as they come.
pub fn read_lines(output: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running child process.
#[derive(Debug)]
pub struct ChildProcess {
    pub child: Child,
    pub url: String,
    /// The stdout lines before the announcement (a registry's
    /// `answering DNS on ADDR`, for one).
    pub before: Vec<String>,
    /// Every stdout line after the announcement, as it arrives (a thread reads
    /// them, so the child never blocks on a full pipe).
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl ChildProcess {
    /// Starts `program args...` and waits (up to 30 s) for it to print
    /// `listening on URL`. Its logs go to the test's stderr at `warn` (set
    /// `ROLLCALL_TEST_LOG=info` to see more).
    pub async fn start(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env(
                "ROLLCALL_LOG",
                std::env::var("ROLLCALL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut rx = read_lines(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut before = Vec::new();
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(url) = line.split("listening on ").nth(1) {
                        break url.trim().to_owned();
                    }
                    before.push(line);
                }
                _ => {
                    let _ = child.kill();
                    panic!("{} did not announce its address", program.display());
                }
            }
        };
        Self {
            child,
            url,
            before,
            lines: rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`KILL`, `TERM`, `INT`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        if let Err(e) = crate::signal::send(self.pid(), name) {
            panic!("kill -{name} {} failed: {e}", self.pid());
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `timeout`; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = &mut self.child;
        crate::within(timeout, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Never leave a process behind, even when a test fails; a stopped one
        // must be continued to die promptly.
        let _ = crate::signal::send(self.pid(), "CONT");
        self.kill();
    }
}

/// Waits (up to `timeout`) until `child` answers 2xx at `url`; `false` if
/// it exits first (a port taken before it bound it, say) or never does.
pub async fn wait_answering(child: &mut Child, url: &str, timeout: Duration) -> bool {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let answered = client
            .get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
