//! `rollcall up`: the whole system with one command.
//!
//! Starts the registry, the log service, the grading service and the portal as
//! child processes of this same binary, in dependency order, each once the
//! previous one answers `/healthz`; shows their output prefixed with their
//! name (coloured on a terminal, like `docker compose`); restarts a child that
//! crashes, with back-off; and on Ctrl-C or SIGTERM stops them in reverse
//! order — each deregisters and flushes its logs — within `--stop-timeout`,
//! killing whatever is still running after it.
//!
//! Children run in their own process groups (a terminal's Ctrl-C reaches only
//! `up`, which stops them in order) and exit by themselves if `up` dies: they
//! watch their stdin, a pipe `up` holds, and stop when it closes.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::Style;

mod args;
mod ports;
mod signing;

pub use args::UpArgs;
use args::{dns_flags, etcd_flags};
use ports::{check_dns_port, check_port};

/// The environment variable that tells a child to stop when its stdin closes.
pub const EXIT_WITH_PARENT: &str = "ROLLCALL_EXIT_WITH_PARENT";
/// How long a child may take to announce itself and answer `/healthz`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A child that ran this long before crashing restarts without back-off.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One service `up` runs.
#[derive(Debug, Clone)]
struct Spec {
    /// This program's path, taken once at start: a rebuilt binary replaces
    /// the file there, and restarts run the new one (`current_exe` names the
    /// deleted old file by then).
    program: std::sync::Arc<std::path::Path>,
    name: &'static str,
    subcommand: &'static str,
    addr: SocketAddr,
    flag: &'static str,
    color: &'static str,
    extra: Vec<String>,
    /// Asks its `/healthz` (trusting what the children trust).
    client: reqwest::Client,
    /// `ROLLCALL_SIGNING_KEY` for the child (`None`: it inherits `up`'s).
    signing_key: Option<std::sync::Arc<str>>,
}

impl Spec {
    fn args(&self, addr: SocketAddr, data_dir: &str) -> Vec<String> {
        let mut args = vec![
            self.subcommand.to_owned(),
            "--addr".to_owned(),
            addr.to_string(),
            "--data-dir".to_owned(),
            data_dir.to_owned(),
        ];
        if self.subcommand == "portal" {
            // The portal keeps no data.
            args.truncate(3);
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A started child.
struct Running {
    child: Child,
    /// Held, never written: the child stops when it closes (when `up` dies).
    /// Kept out of `child`, because `Child::wait` closes the stdin it holds.
    _stdin: Option<tokio::process::ChildStdin>,
    pid: u32,
    url: String,
    /// Where it answers DNS (the registry with `--dns-addr`).
    dns: Option<String>,
    started: Instant,
}

/// Prints children's output, one line at a time, prefixed with their name.
#[derive(Clone)]
struct Printer {
    style: Style,
    width: usize,
}

impl Printer {
    fn line(&self, spec: &Spec, line: &str) {
        let name = format!("{:<width$} |", spec.name, width = self.width);
        crate::cli::sayln!("{} {line}", self.style.paint(spec.color, &name));
    }

    fn note(&self, text: &str) {
        crate::cli::sayln!("{}", self.style.paint("1", &format!("up: {text}")));
    }
}

/// Starts one child and waits until it announced its URL and answers
/// `/healthz`.
async fn start(
    spec: &Spec,
    addr: SocketAddr,
    data_dir: &str,
    printer: &Printer,
) -> anyhow::Result<Running> {
    let mut command = Command::new(&*spec.program);
    command
        .args(spec.args(addr, data_dir))
        .env(EXIT_WITH_PARENT, "1")
        .envs(
            spec.signing_key
                .iter()
                .map(|k| ("ROLLCALL_SIGNING_KEY", &**k)),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} from {}", spec.name, spec.program.display()))?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take();
    // The announcements: `answering DNS on ADDR` (the registry's, before)
    // and `listening on URL`.
    let (url_tx, mut url_rx) = mpsc::unbounded_channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        let (spec, printer, url_tx) = (spec.clone(), printer.clone(), url_tx.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening on ") || line.starts_with("answering DNS on ") {
                    let _ = url_tx.send(line.clone());
                }
                printer.line(&spec, &line);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let (spec, printer) = (spec.clone(), printer.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                printer.line(&spec, &line);
            }
        });
    }
    drop(url_tx);
    let mut dns = None;
    let announced = async {
        while let Some(line) = url_rx.recv().await {
            if let Some(url) = line.strip_prefix("listening on ") {
                return Some(url.trim().to_owned());
            }
            dns = line
                .strip_prefix("answering DNS on ")
                .map(|a| a.trim().to_owned());
        }
        None
    };
    let url = tokio::select! {
        url = announced => url,
        status = child.wait() => bail!("{} exited while starting ({})", spec.name, describe(status.ok())),
        () = tokio::time::sleep(START_TIMEOUT) => None,
    };
    let Some(url) = url else {
        let _ = child.kill().await;
        bail!(
            "{} did not start within {}s",
            spec.name,
            START_TIMEOUT.as_secs()
        );
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let healthy = spec
            .client
            .get(format!("{url}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{} exited while starting ({})",
                spec.name,
                describe(Some(status))
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            bail!(
                "{} did not become healthy within {}s",
                spec.name,
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Running {
        child,
        _stdin: stdin,
        pid,
        url,
        dns,
        started: Instant::now(),
    })
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.and_then(|s| s.signal()) {
            return format!("killed by signal {signal}");
        }
    }
    match status.and_then(|s| s.code()) {
        Some(code) => format!("exit code {code}"),
        None => "unknown status".to_owned(),
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
async fn terminate(spec: &Spec, running: &mut Running, grace: Duration, printer: &Printer) {
    if let Ok(pid) = i32::try_from(running.pid) {
        // A child that is already gone is what we wanted.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(grace, running.child.wait()).await {
        Ok(status) => printer.note(&format!(
            "{} stopped ({})",
            spec.name,
            describe(status.ok())
        )),
        Err(_) => {
            let _ = running.child.kill().await;
            printer.note(&format!(
                "{} did not stop within {:.1}s: killed",
                spec.name,
                grace.as_secs_f64()
            ));
        }
    }
}

/// Keeps one child running until `stop` fires; returns when it has stopped.
async fn supervise(
    spec: Spec,
    mut running: Running,
    data_dir: String,
    restart: bool,
    printer: Printer,
    stop: CancellationToken,
    grace: tokio::sync::watch::Receiver<Duration>,
) {
    // Restarts keep the port it got, so its URL (and registration) stays.
    let addr: SocketAddr = running
        .url
        .split_once("://")
        .and_then(|(_, addr)| addr.parse().ok())
        .unwrap_or(spec.addr);
    let mut failures: u32 = 0;
    loop {
        let status = tokio::select! {
            () = stop.cancelled() => {
                let grace = *grace.borrow();
                terminate(&spec, &mut running, grace, &printer).await;
                return;
            }
            status = running.child.wait() => status.ok(),
        };
        printer.note(&format!(
            "{} exited unexpectedly ({})",
            spec.name,
            describe(status)
        ));
        if !restart {
            printer.note(&format!("{} stays down (--no-restart)", spec.name));
            stop.cancelled().await;
            return;
        }
        if running.started.elapsed() > STABLE_AFTER {
            failures = 0;
        }
        loop {
            failures = failures.saturating_add(1);
            let wait = rollcall_proto::jitter::backoff(
                Duration::from_millis(500),
                Duration::from_secs(30),
                failures,
                rollcall_proto::jitter::stable_hash(spec.name),
            );
            printer.note(&format!(
                "restarting {} in {:.1}s",
                spec.name,
                wait.as_secs_f64()
            ));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match start(&spec, addr, &data_dir, &printer).await {
                Ok(new) => {
                    printer.note(&format!(
                        "{} restarted: {} (pid {})",
                        spec.name, new.url, new.pid
                    ));
                    running = new;
                    break;
                }
                Err(e) => printer.note(&format!("{e:#}")),
            }
        }
    }
}

/// Runs `rollcall up` until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.to_string_lossy().into_owned();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {data_dir}"))?;
    let client = args
        .tls
        .client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()))?
        .build()
        .context("cannot build an HTTP client")?;
    let extra = args.tls_flags();
    let (signing_key, signing_note) = signing::key(&args.data_dir)?;
    let program: std::sync::Arc<std::path::Path> = std::env::current_exe()
        .context("cannot find this program to start the services")?
        .into();
    let mut specs = vec![
        Spec {
            program: program.clone(),
            name: "registry",
            subcommand: "registry",
            addr: args.registry_addr,
            flag: "--registry-addr",
            color: "36",
            extra: [
                extra.clone(),
                etcd_flags(&args.etcd),
                dns_flags(args.dns_addr),
            ]
            .concat(),
            client: client.clone(),
            signing_key: signing_key.clone(),
        },
        Spec {
            program: program.clone(),
            name: "log",
            subcommand: "log",
            addr: args.log_addr,
            flag: "--log-addr",
            color: "33",
            extra: extra.clone(),
            client: client.clone(),
            signing_key: signing_key.clone(),
        },
        Spec {
            program: program.clone(),
            name: "grades",
            subcommand: "grades",
            addr: args.grades_addr,
            flag: "--grades-addr",
            color: "32",
            extra: extra.clone(),
            client: client.clone(),
            signing_key: signing_key.clone(),
        },
        Spec {
            program: program.clone(),
            name: "portal",
            subcommand: "portal",
            addr: args.portal_addr,
            flag: "--portal-addr",
            color: "35",
            extra: extra.clone(),
            client: client.clone(),
            signing_key: signing_key.clone(),
        },
    ];
    for spec in &specs {
        check_port(spec)?;
    }
    if let Some(addr) = args.dns_addr {
        check_dns_port(addr)?;
    }
    let printer = Printer {
        style: Style::for_stdout(),
        width: specs.iter().map(|s| s.name.len()).max().unwrap_or(8),
    };
    printer.note(&format!("data in {data_dir}"));
    printer.note(&signing_note);
    let signal = rollcall_http::wait_for_signal();
    tokio::pin!(signal);
    let mut started: Vec<(Spec, Running)> = Vec::new();
    for i in 0..specs.len() {
        let spec = specs[i].clone();
        let outcome = tokio::select! {
            r = start(&spec, spec.addr, &data_dir, &printer) => Some(r),
            () = &mut signal => None,
        };
        match outcome {
            Some(Ok(running)) => {
                if spec.name == "registry" {
                    for later in specs.iter_mut().skip(1) {
                        later
                            .extra
                            .extend(["--registry".into(), running.url.clone()]);
                    }
                }
                started.push((spec, running));
            }
            other => {
                // Failed or interrupted while starting: stop what runs.
                for (spec, mut running) in started.into_iter().rev() {
                    terminate(&spec, &mut running, Duration::from_secs(5), &printer).await;
                }
                return match other {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                };
            }
        }
    }
    print_table(&started, &printer);
    let (grace_tx, grace_rx) = tokio::sync::watch::channel(args.stop_timeout);
    let mut supervisors = Vec::new();
    for (spec, running) in started {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(supervise(
            spec.clone(),
            running,
            data_dir.clone(),
            !args.no_restart,
            printer.clone(),
            stop.clone(),
            grace_rx.clone(),
        ));
        supervisors.push((spec, stop, handle));
    }
    signal.await;
    let deadline = Instant::now() + args.stop_timeout;
    printer.note(&format!(
        "stopping everything (within {}s)",
        args.stop_timeout.as_secs_f64()
    ));
    for (spec, stop, handle) in supervisors.into_iter().rev() {
        let left = deadline.saturating_duration_since(Instant::now());
        grace_tx.send_replace(left.max(Duration::from_millis(100)));
        stop.cancel();
        if tokio::time::timeout(left + Duration::from_secs(1), handle)
            .await
            .is_err()
        {
            printer.note(&format!("{} did not stop in time", spec.name));
        }
    }
    printer.note("stopped");
    Ok(())
}

fn print_table(started: &[(Spec, Running)], printer: &Printer) {
    let rows: Vec<Vec<String>> = started
        .iter()
        .map(|(spec, r)| vec![spec.name.to_owned(), r.url.clone(), r.pid.to_string()])
        .collect();
    let table = crate::cli::table::table(&["NAME", "URL", "PID"], &rows, |_, c| c.to_owned());
    crate::cli::sayln!();
    crate::cli::sayln!("{table}");
    crate::cli::sayln!();
    let url = |name: &str| {
        started
            .iter()
            .find(|(s, _)| s.name == name)
            .map_or_else(String::new, |(_, r)| r.url.clone())
    };
    printer.note(&format!(
        "rollcall is up. Open the portal: {}   Dashboard: {}/",
        url("portal"),
        url("registry")
    ));
    let dns = started.iter().find_map(|(_, r)| r.dns.as_deref());
    if let Some(addr) = dns.and_then(|a| a.parse::<SocketAddr>().ok()) {
        printer.note(&format!(
            "DNS on {addr}: dig @{} -p {} gradingservice.service.rollcall SRV",
            addr.ip(),
            addr.port()
        ));
    }
    printer.note("Ctrl-C stops everything.");
}

#[cfg(test)]
mod tests;
