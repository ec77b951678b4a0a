//! Helpers shared by the end-to-end tests: the real binaries, started as a user
//! would start them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;

use std::path::PathBuf;
use std::time::Duration;

// Not every test file uses every helper.
#[allow(unused_imports)]
pub use rollcall_testkit::{ChildProcess, FakeService, Mode, eventually, read_lines};

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

/// Starts `rollcall registry` in memory on exactly `addr` (to restart one on
/// the port it had).
pub async fn registry_at(addr: &str) -> ChildProcess {
    ChildProcess::start(
        &rollcall_bin(),
        &["registry", "--addr", addr, "--in-memory"],
        &[],
    )
    .await
}

/// Starts the `hello` example (an SDK service) as `name`, registering with
/// `registry`, with `extra` flags.
pub async fn hello(registry: &str, name: &str, extra: &[&str]) -> ChildProcess {
    let mut args = vec!["--name", name, "--registry", registry];
    args.extend_from_slice(extra);
    ChildProcess::start(&example_bin("hello"), &args, &[]).await
}

/// Waits until `url` is in `registry`'s catalog.
pub async fn wait_registered(registry: &str, url: &str) {
    eventually(
        Duration::from_secs(15),
        &format!("{url} to be registered"),
        || async { instance(registry, url).await.map(|_| ()) },
    )
    .await;
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

/// `GET url` as JSON (within 10 s).
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /services`.
pub async fn catalog(registry: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{registry}/services")).await
}

/// Starts a long-running `rollcall ARGS…` and hands its stdout and stderr
/// lines over channels.
pub fn spawn_rollcall(
    args: &[&str],
) -> (
    std::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = std::process::Command::new(rollcall_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = read_lines(child.stdout.take().unwrap());
    let err = read_lines(child.stderr.take().unwrap());
    (child, out, err)
}

/// Runs `rollcall ARGS…` to the end: (succeeded, stdout, stderr).
pub async fn run_rollcall(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(rollcall_bin())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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

/// Sends `request` with `Authorization: Bearer token`; its status.
pub async fn send_with_token(request: reqwest::RequestBuilder, token: &str) -> u16 {
    request
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Registers `body` and checks the answer is 200.
pub async fn register_ok(registry: &str, body: &serde_json::Value) {
    assert_eq!(register_raw(registry, body).await.status(), 200, "{body}");
}

/// Starts `rollcall log` on `data_dir` at `addr`, registering with `registry`
/// (empty: standalone), with `extra` flags.
pub async fn log_service(
    data_dir: &std::path::Path,
    addr: &str,
    registry: &str,
    extra: &[&str],
) -> ChildProcess {
    stateful("log", data_dir, addr, registry, extra).await
}

/// Starts `rollcall SUBCOMMAND` with a data dir, an address and a registry.
async fn stateful(
    subcommand: &str,
    data_dir: &std::path::Path,
    addr: &str,
    registry: &str,
    extra: &[&str],
) -> ChildProcess {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec![
        subcommand,
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

/// Waits until the registry shows the instance at `url` with `status`.
pub async fn wait_status(registry: &str, url: &str, status: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{url} to be {status}"),
        || async {
            let entry = instance(registry, url).await?;
            (entry["Status"] == status).then_some(())
        },
    )
    .await;
}

/// Starts a fake `GradingService` and registers it, requiring `LogService`.
async fn fake_grading(registry: &str) -> FakeService {
    let grading = FakeService::start().await;
    register_raw(
        registry,
        &grading.registration("GradingService", &["LogService"]),
    )
    .await;
    grading
}

/// Registers a fake `GradingService` that requires `LogService`, and starts
/// (without registering) the fake `LogService` it will be told about.
pub async fn dependent_first(registry: &str) -> (FakeService, FakeService) {
    let grading = fake_grading(registry).await;
    (grading, FakeService::start().await)
}

/// Registers a fake `LogService` and then a fake `GradingService` that
/// requires it, the way their classic counterparts do.
pub async fn log_and_grading(registry: &str) -> (FakeService, FakeService) {
    let log = FakeService::start().await;
    register_raw(registry, &log.registration("LogService", &[])).await;
    (log, fake_grading(registry).await)
}

/// `GET {base}/v1/logs?{query}` → the records.
pub async fn query_logs(base: &str, query: &str) -> Vec<serde_json::Value> {
    let page: serde_json::Value = get_json(&format!("{base}/v1/logs?{query}")).await;
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
        let page: serde_json::Value = get_json(&format!("{base}/v1/logs?{q}")).await;
        out.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// `GET url` through `client`, within 5 s, if it answers.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Option<reqwest::Response> {
    client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
}

/// Posts a log batch to `log` (its base URL) until the log service
/// acknowledges it (200), however long it is dead or stopped meanwhile —
/// within [`ACKNOWLEDGED_WITHIN`], past which the test fails.
pub async fn post_until_acknowledged(
    client: &reqwest::Client,
    log: &str,
    batch: &serde_json::Value,
) {
    let deadline = std::time::Instant::now() + ACKNOWLEDGED_WITHIN;
    loop {
        let sent = client
            .post(format!("{log}/v1/logs"))
            .body(batch.to_string())
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log service at {log} acknowledged nothing for {ACKNOWLEDGED_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The longest a test waits for a write to be acknowledged through faults.
pub const ACKNOWLEDGED_WITHIN: Duration = Duration::from_secs(90);

/// `bytes` gzipped (at the best compression: bombs are small).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A process's memory in MB from `/proc`: `VmRSS` (resident now) or
/// `VmHWM` (the most it was ever resident).
pub fn memory_mb(field: &str, pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// `GET url` as text; `None` if it does not answer within 10 s (a stopped
/// process never does).
pub async fn get_text(url: &str) -> Option<String> {
    let exchange = async { reqwest::get(url).await.ok()?.text().await.ok() };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// The value of a counter or gauge in a Prometheus text page.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = get_text(&format!("{base}/metrics")).await?;
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
    stateful("grades", data_dir, "127.0.0.1:0", registry, extra).await
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

/// `rollcall up` running as a user runs it, on free ports.
pub struct Up {
    pub child: std::process::Child,
    /// name → (URL, PID) from the table `up` prints.
    pub services: std::collections::BTreeMap<String, (String, u32)>,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub data_dir: tempfile::TempDir,
}

impl Up {
    pub async fn start(extra: &[&str]) -> Up {
        Self::start_from(&rollcall_bin(), extra).await
    }

    /// `up` run from the binary at `program`.
    pub async fn start_from(program: &std::path::Path, extra: &[&str]) -> Up {
        let data_dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "up",
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--registry-addr",
            "127.0.0.1:0",
            "--log-addr",
            "127.0.0.1:0",
            "--grades-addr",
            "127.0.0.1:0",
            "--portal-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = std::process::Command::new(program)
            .args(&args)
            .env(
                "ROLLCALL_LOG",
                std::env::var("ROLLCALL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut rx = read_lines(child.stdout.take().unwrap());
        let mut services = std::collections::BTreeMap::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("rollcall up starts within a minute")
                .expect("rollcall up is running");
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() == 3 && words[1].starts_with("http") {
                services.insert(
                    words[0].to_owned(),
                    (words[1].to_owned(), words[2].parse().unwrap()),
                );
            }
            if line.contains("rollcall is up") {
                break;
            }
        }
        Up {
            child,
            services,
            lines: rx,
            data_dir,
        }
    }

    pub fn url(&self, name: &str) -> &str {
        &self.services[name].0
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.services[name].1
    }

    /// Waits for an output line containing `text`.
    pub async fn wait_line(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no line with {text:?} within {timeout:?}"))
                .expect("rollcall up is running");
            if line.contains(text) {
                return line;
            }
        }
    }

    pub fn signal(&self, name: &str) {
        signal_pid(self.child.id(), name);
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // Killing `up` makes its children stop by themselves.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal (`KILL`, `TERM`, `INT`, `STOP`, `CONT`) to a process.
pub fn signal_pid(pid: u32, name: &str) {
    if let Err(e) = rollcall_testkit::signal::send(pid, name) {
        panic!("kill -{name} {pid}: {e}");
    }
}

/// Whether a process with this PID exists.
pub fn alive(pid: u32) -> bool {
    rollcall_testkit::signal::send(pid, "0").is_ok()
}

/// Whether anything accepts connections at `url`.
pub fn listening(url: &str) -> bool {
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// `GET {registry}/v1/events`: recent catalog events, oldest first.
pub async fn events(registry: &str) -> Vec<serde_json::Value> {
    reqwest::get(format!("{registry}/v1/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
