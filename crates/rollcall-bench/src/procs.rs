//! Child processes: the release `rollcall` binaries, started as a user would,
//! with their announced URL, memory and CPU read from `/proc`, and real
//! signals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `release` or `debug`.
    pub profile: String,
    pub rollcall: PathBuf,
    pub hello: PathBuf,
    pub bench: PathBuf,
}

impl Binaries {
    /// Next to this program (same cargo profile). With `build`, asks cargo to
    /// build them first (`cargo run` has released its lock by now).
    pub fn locate(build: bool) -> anyhow::Result<Binaries> {
        let bench = std::env::current_exe().context("cannot find this program")?;
        let dir = bench.parent().context("no directory")?.to_owned();
        let release = dir.ends_with("release");
        if build && let Some(cargo) = std::env::var_os("CARGO") {
            let mut command = std::process::Command::new(cargo);
            command.args(["build", "-p", "rollcall", "--bins", "--examples"]);
            if release {
                command.arg("--release");
            }
            eprintln!(
                "rollcall-bench: building the {} binaries",
                if release { "release" } else { "debug" }
            );
            let status = command.status().context("cannot run cargo")?;
            if !status.success() {
                bail!("building the rollcall binaries failed");
            }
        }
        let binaries = Binaries {
            profile: if release { "release" } else { "debug" }.to_owned(),
            rollcall: dir.join("rollcall"),
            hello: dir.join("examples").join("hello"),
            bench,
        };
        for path in [&binaries.rollcall, &binaries.hello] {
            if !path.exists() {
                bail!(
                    "{} is missing: run `cargo build {}-p rollcall --bins --examples` (or start the bench with `cargo run`)",
                    path.display(),
                    if release { "--release " } else { "" }
                );
            }
        }
        Ok(binaries)
    }
}

/// A running child.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub url: String,
}

impl Proc {
    /// Starts `program args` and waits for `listening on URL`.
    pub async fn start(program: &Path, args: &[&str]) -> anyhow::Result<Proc> {
        let mut child = Command::new(program)
            .args(args)
            .env("ROLLCALL_LOG", "error")
            // Services ship their own records to the log service; the bench
            // measures each service, not that (section 6 measures logs).
            .env("ROLLCALL_FORWARD_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .with_context(|| format!("{} {args:?} did not start", program.display()))?;
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc { child, pid, url })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn signal(&self, name: &str) {
        signal(self.pid, name);
    }

    /// Resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        rss(self.pid)
    }

    /// User + system CPU time so far.
    pub fn cpu(&self) -> Duration {
        cpu(self.pid)
    }

    pub async fn stop(mut self) {
        self.signal("TERM");
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    let (Ok(pid), Ok(signal)) = (
        i32::try_from(pid),
        format!("SIG{name}").parse::<nix::sys::signal::Signal>(),
    ) else {
        return;
    };
    // A process that is already gone is fine.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

pub fn cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit(") ").next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Facts about this machine for the report.
pub fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_owned(), |m| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cores": cores,
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "cpu": model,
        "kernel": kernel.trim(),
    })
}
