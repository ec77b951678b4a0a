//! `rollcall-bench`: measures every rollcall service against the loopback
//! ceiling in one run and writes `BENCHMARKS.md` and `BENCHMARKS.json`.
//!
//! ```text
//! cargo run --release -p rollcall-bench            # the full run (a few minutes)
//! cargo run --release -p rollcall-bench -- --quick # a reduced run, under a minute
//! ```
//!
//! Every service runs as its own process from the `rollcall` binary built with
//! the same profile; the load comes from this process. Nothing here asserts a
//! timing: targets are printed next to the figures. What is checked is
//! correctness under load (stored equals acknowledged); a failed check makes
//! the run exit non-zero.

mod helpers;
mod load;
mod procs;
mod report;
mod sections;
mod servers;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use procs::{Binaries, Proc};
use report::{Report, Row, Section};
use servers::Receivers;
use stats::{Samples, ms};

/// The sections `--only` may name (the ceiling runs with each).
const SECTIONS: [&str; 8] = [
    "registry throughput",
    "push latency",
    "failure detection",
    "health-check scale",
    "logs",
    "application",
    "memory",
    "cluster",
];

#[derive(Debug, Parser)]
#[command(
    name = "rollcall-bench",
    about = "Benchmarks every rollcall service against the loopback ceiling."
)]
struct Args {
    /// A reduced run (smaller counts, 1 s measurements) that finishes in under
    /// a minute.
    #[arg(long)]
    quick: bool,
    /// Where to write BENCHMARKS.md and BENCHMARKS.json (default: the
    /// workspace root for a full run, target/bench-quick for --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Run only this section (and the ceiling), e.g. `--only cluster`; the
    /// report goes to target/bench-only unless --out says otherwise.
    #[arg(long, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(SECTIONS), String::from))]
    only: Option<String>,
    /// Do not build the rollcall binaries first.
    #[arg(long)]
    no_build: bool,
    /// Serve the trivial ceiling handler on this address (used by the bench
    /// itself, in a child process).
    #[arg(long, hide = true)]
    serve_trivial: Option<SocketAddr>,
    /// Only drive load at a running registry at this address, for profiling
    /// (`--load-kind register|read`, `--load-seconds N`).
    #[arg(long, hide = true)]
    load: Option<SocketAddr>,
    #[arg(long, hide = true, default_value = "register")]
    load_kind: String,
    #[arg(long, hide = true, default_value_t = 10)]
    load_seconds: u64,
}

/// `--load`: registrations or small catalog reads against a running registry.
async fn load_only(args: &Args, addr: SocketAddr) -> anyhow::Result<bool> {
    let read = args.load_kind == "read";
    if read {
        let client = reqwest::Client::new();
        for i in 0..10 {
            client
                .post(format!("http://{addr}/services"))
                .body(registration(
                    "Small",
                    &format!("http://127.0.0.1:9/small/{i}"),
                ))
                .send()
                .await?;
        }
    }
    let r = load::run(
        addr,
        args.connections,
        Duration::from_secs(args.load_seconds),
        None,
        Arc::new(move |i| {
            if read {
                load::request("GET", addr, "/services?service=Small", Bytes::new())
            } else {
                load::request(
                    "POST",
                    addr,
                    "/services",
                    registration("Load", &format!("http://127.0.0.1:9/load/{i}")),
                )
            }
        }),
    )
    .await;
    println!(
        "{} ok, {} rejected, {} errors: {:.0} req/s",
        r.ok,
        r.rejected,
        r.errors,
        r.rate()
    );
    Ok(true)
}

/// How big each part of the run is.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    connections: usize,
    measure: Duration,
    push_trials: usize,
    fanout: u64,
    fanout_trials: usize,
    failure_trials: usize,
    scale_instances: u64,
    scale_window: Duration,
    memory_instances: [u64; 2],
    log_batch: usize,
    /// Instances checked by the cluster section's replicas, and how many
    /// replicas it kills one after another.
    cluster_instances: u64,
    cluster_trials: usize,
}

impl Plan {
    fn new(quick: bool, connections: usize) -> Self {
        if quick {
            Plan {
                quick,
                connections: connections.min(8),
                measure: Duration::from_millis(700),
                push_trials: 20,
                fanout: 100,
                fanout_trials: 2,
                failure_trials: 3,
                scale_instances: 500,
                scale_window: Duration::from_secs(2),
                memory_instances: [1_000, 5_000],
                log_batch: 200,
                cluster_instances: 60,
                cluster_trials: 1,
            }
        } else {
            Plan {
                quick,
                connections,
                measure: Duration::from_secs(5),
                push_trials: 200,
                fanout: 1_000,
                fanout_trials: 5,
                failure_trials: 40,
                scale_instances: 10_000,
                scale_window: Duration::from_secs(10),
                memory_instances: [100_000, 1_000_000],
                log_batch: 1_000,
                cluster_instances: 300,
                cluster_trials: 6,
            }
        }
    }
}

struct Bench {
    plan: Plan,
    bins: Binaries,
    /// The trivial server, kept running to measure the ceiling next to each
    /// figure.
    trivial: Option<Proc>,
    ceiling: f64,
    /// The trivial server's CPU time per request in the same measurement
    /// (µs): what a request costs a server that does nothing.
    ceiling_cpu_us: f64,
    client: reqwest::Client,
    idle_rss: Vec<(String, u64)>,
    loaded_rss: Vec<(String, u64)>,
}

/// A registry process and its data directory: stopped (SIGTERM) by
/// [`TempRegistry::stop`], killed if dropped, its directory removed either way.
struct TempRegistry {
    proc: Option<Proc>,
    dir: PathBuf,
}

impl TempRegistry {
    async fn stop(mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop().await;
        }
    }
}

impl std::ops::Deref for TempRegistry {
    type Target = Proc;

    fn deref(&self) -> &Proc {
        // Present until `stop`, which consumes the value.
        self.proc
            .as_ref()
            .unwrap_or_else(|| unreachable!("stopped"))
    }
}

impl Drop for TempRegistry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "rollcall-bench-{}-{}",
        std::process::id(),
        rollcall_proto::Timestamp::system_now().as_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn registration(name: &str, url: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"ServiceName":"{name}","ServiceURL":"{url}","RequiredServices":null}}"#
    ))
}

/// The value of a counter or gauge (sum over labels) in a metrics page.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Histogram buckets (upper bound, cumulative count) from a metrics page.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect()
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let plan = Plan::new(args.quick, args.connections);
    let bins = Binaries::locate(!args.no_build)?;
    let mut bench = Bench {
        plan: plan.clone(),
        bins,
        trivial: None,
        ceiling: 0.0,
        ceiling_cpu_us: 0.0,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        idle_rss: Vec::new(),
        loaded_rss: Vec::new(),
    };
    let mut sections = Vec::new();
    let selected = |name: &str| name == "ceiling" || args.only.as_deref().is_none_or(|o| o == name);
    macro_rules! section {
        ($name:literal, $call:expr) => {{
            if selected($name) {
                eprintln!("rollcall-bench: {}", $name);
                let started = Instant::now();
                let section = $call.await.with_context(|| $name)?;
                eprintln!(
                    "rollcall-bench:   done in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                sections.push(section);
            }
        }};
    }
    section!("ceiling", bench.ceiling());
    section!("registry throughput", bench.registry_throughput());
    section!("push latency", bench.push_latency());
    section!("failure detection", bench.failure_detection());
    section!("health-check scale", bench.check_scale());
    section!("logs", bench.logs());
    section!("application", bench.application());
    section!("memory", bench.memory());
    section!("cluster", bench.cluster());
    if let Some(trivial) = bench.trivial.take() {
        trivial.stop().await;
    }
    let report = Report {
        generated: rollcall_proto::Timestamp::system_now().to_rfc3339(),
        mode: if plan.quick {
            "quick".into()
        } else {
            "full".into()
        },
        profile: bench.bins.profile.clone(),
        machine: procs::machine(),
        connections: plan.connections,
        seconds_per_measurement: plan.measure.as_secs_f64(),
        sections,
    };
    let out = match args.out {
        Some(dir) => dir,
        None if args.only.is_some() => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-only")
        }
        None if plan.quick => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-quick")
        }
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("BENCHMARKS.md"), report.markdown())?;
    std::fs::write(
        out.join("BENCHMARKS.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{}", report.markdown());
    eprintln!(
        "rollcall-bench: wrote {}",
        out.join("BENCHMARKS.md").display()
    );
    let failed: Vec<&str> = report
        .sections
        .iter()
        .flat_map(|s| s.checks.iter())
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| what.as_str())
        .collect();
    for f in &failed {
        eprintln!("rollcall-bench: CHECK FAILED: {f}");
    }
    Ok(failed.is_empty())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rollcall-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if let Some(addr) = args.serve_trivial {
            return servers::serve_trivial(addr).await.map(|()| true);
        }
        if let Some(addr) = args.load {
            return load_only(&args, addr).await;
        }
        run(args).await
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rollcall-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
