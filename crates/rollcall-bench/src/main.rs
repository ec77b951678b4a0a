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

mod load;
mod procs;
mod report;
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
                memory_instances: [10_000, 100_000],
                log_batch: 1_000,
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
    client: reqwest::Client,
    idle_rss: Vec<(String, u64)>,
    loaded_rss: Vec<(String, u64)>,
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

impl Bench {
    async fn metrics(&self, base: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{base}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .text()
            .await?)
    }

    async fn registry(&self, extra: &[&str]) -> anyhow::Result<(Proc, PathBuf)> {
        let dir = tempdir()?;
        let dir_text = dir.to_string_lossy().into_owned();
        let mut args = vec!["registry", "--addr", "127.0.0.1:0", "--data-dir", &dir_text];
        args.extend_from_slice(extra);
        let p = Proc::start(&self.bins.rollcall, &args).await?;
        Ok((p, dir))
    }

    async fn count(&self, registry: &str, service: &str) -> anyhow::Result<usize> {
        let list: Vec<serde_json::Value> = self
            .client
            .get(format!("{registry}/services"))
            .query(&[("service", service)])
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .json()
            .await?;
        Ok(list.len())
    }

    async fn post(&self, url: &str, body: String) -> anyhow::Result<()> {
        let r = self
            .client
            .post(url)
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("POST {url}: HTTP {}", r.status());
        }
        Ok(())
    }

    // ----- 1 ----------------------------------------------------------------

    async fn ceiling(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "1. Ceiling",
            "A trivial hyper handler (answers `ok`) in its own process, loaded with the same client and \
             connection count as everything below: what this machine can do over loopback at all.",
        );
        let trivial = Proc::start(&self.bins.bench, &["--serve-trivial", "127.0.0.1:0"]).await?;
        let addr = trivial.addr();
        let r = self
            .measure(
                addr,
                Arc::new(move |_| load::request("GET", addr, "/", Bytes::new())),
            )
            .await;
        self.ceiling = r.rate();
        s.row(Row::new("requests/s", r.rate(), "req/s"))
            .row(Row::new(
                "latency p50",
                ms(r.latencies.percentile(50.0)),
                "ms",
            ))
            .row(Row::new(
                "latency p99",
                ms(r.latencies.percentile(99.0)),
                "ms",
            ));
        s.check(
            format!("{} requests, no errors", r.ok),
            r.errors == 0 && r.rejected == 0,
        );
        s.note(
            "The machine's speed drifts during a run, so every ratio below is against a ceiling measured again \
             right before that figure (same client, same connections); this table shows the first.",
        );
        self.trivial = Some(trivial);
        Ok(s)
    }

    /// Load with the plan's connections for the plan's measuring time.
    async fn measure(&self, addr: SocketAddr, make: load::MakeRequest) -> load::LoadResult {
        load::run(addr, self.plan.connections, self.plan.measure, None, make).await
    }

    /// Measures the ceiling again, right now (for the next figure's ratio).
    async fn ceiling_now(&mut self) -> f64 {
        let Some(trivial) = &self.trivial else {
            return self.ceiling;
        };
        let addr = trivial.addr();
        let r = self
            .measure(
                addr,
                Arc::new(move |_| load::request("GET", addr, "/", Bytes::new())),
            )
            .await;
        if r.ok > 0 {
            self.ceiling = r.rate();
        }
        self.ceiling
    }

    // ----- 2 ----------------------------------------------------------------

    async fn registry_throughput(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "2. Registry throughput",
            "One registry on a fresh SQLite data dir (defaults: WAL, group commit). Classic `POST /services` \
             bodies, each with a unique `ServiceURL` and no heartbeat or update URL; \"with dependents\": the \
             registered name is required by 10 receivers, so every registration queues 10 patches. Reads are \
             `GET /services?service=` of a 10-instance service. Deregistrations delete what was registered. \
             After each run the catalog is counted.",
        );
        let (reg, dir) = self.registry(&[]).await?;
        let addr = reg.addr();
        let base = reg.url.clone();
        self.idle_rss.push(("registry".into(), reg.rss()));
        self.ceiling_now().await;
        let r = self
            .measure(
                addr,
                Arc::new(move |i| {
                    load::request(
                        "POST",
                        addr,
                        "/services",
                        registration("Bench", &format!("http://127.0.0.1:9/bench/{i}")),
                    )
                }),
            )
            .await;
        let acked = r.ok;
        s.row(
            Row::new("registrations/s (no dependents)", r.rate(), "reg/s")
                .ratio(self.ceiling)
                .target("≥ 40 % of ceiling", r.rate() >= 0.4 * self.ceiling),
        )
        .row(Row::new(
            "registration latency p99",
            ms(r.latencies.percentile(99.0)),
            "ms",
        ));
        self.loaded_rss
            .push(("registry (registering)".into(), reg.rss()));
        let listed = self.count(&base, "Bench").await? as u64;
        s.check(
            format!("catalog holds {listed} instances, {acked} registrations acknowledged"),
            listed == acked && r.errors == 0 && r.rejected == 0,
        );

        // With dependents.
        let receivers = Receivers::start(4).await?;
        for id in 0..10 {
            self.post(
                &format!("{base}/services"),
                receivers.registration(id, "Watcher", "Notified"),
            )
            .await?;
        }
        self.ceiling_now().await;
        let before = self.metrics(&base).await?;
        let r = self
            .measure(
                addr,
                Arc::new(move |i| {
                    load::request(
                        "POST",
                        addr,
                        "/services",
                        registration("Notified", &format!("http://127.0.0.1:9/notified/{i}")),
                    )
                }),
            )
            .await;
        let after = self.metrics(&base).await?;
        let delta = |name: &str| metric_sum(&after, name) - metric_sum(&before, name);
        s.row(
            Row::new("registrations/s (10 dependents each)", r.rate(), "reg/s").ratio(self.ceiling),
        )
        .row(Row::new(
            "  patches delivered/s meanwhile",
            delta("rollcall_registry_patches_delivered_total") / r.elapsed.as_secs_f64(),
            "patches/s",
        ))
        .row(Row::new(
            "  patches merged in full queues",
            delta("rollcall_registry_patches_coalesced_total"),
            "",
        ));
        let listed = self.count(&base, "Notified").await? as u64;
        s.check(
            format!(
                "catalog holds {listed} notified instances, {} acknowledged",
                r.ok
            ),
            listed == r.ok && r.errors == 0,
        );

        // Reads of a small service.
        for i in 0..10 {
            self.post(
                &format!("{base}/services"),
                String::from_utf8_lossy(&registration(
                    "Small",
                    &format!("http://127.0.0.1:9/small/{i}"),
                ))
                .into_owned(),
            )
            .await?;
        }
        let r = self
            .measure(
                addr,
                Arc::new(move |_| {
                    load::request("GET", addr, "/services?service=Small", Bytes::new())
                }),
            )
            .await;
        s.row(
            Row::new("catalog reads/s", r.rate(), "req/s")
                .ratio(self.ceiling)
                .target("≥ 60 % of ceiling", r.rate() >= 0.6 * self.ceiling),
        )
        .row(Row::new(
            "catalog read latency p99",
            ms(r.latencies.percentile(99.0)),
            "ms",
        ));

        // Deregistrations of the first run's instances.
        self.ceiling_now().await;
        let r = load::run(
            addr,
            self.plan.connections,
            self.plan.measure.max(Duration::from_secs(1)) * 4,
            Some(acked),
            Arc::new(move |i| {
                load::request(
                    "DELETE",
                    addr,
                    "/services",
                    format!("http://127.0.0.1:9/bench/{i}"),
                )
            }),
        )
        .await;
        s.row(Row::new("deregistrations/s", r.rate(), "req/s").ratio(self.ceiling));
        let left = self.count(&base, "Bench").await? as u64;
        s.check(
            format!(
                "{} deregistrations acknowledged, {left} of {acked} instances left",
                r.ok
            ),
            left == acked - r.ok && r.errors == 0 && r.rejected == 0,
        );
        s.note(
            "Where a registration's time goes (perf, cpu-clock sampling of the registry under this load): it is \
             committed to SQLite before it is answered, and the writer thread (WAL frames, checkpoints) takes about \
             a third of the registry's CPU; the catalog grows by every unique instance, and zeroing fresh pages \
             takes about a tenth; handing requests to the writer and back costs context switches. The ceiling's \
             handler does none of this. A registration with dependents also makes outbound HTTP calls (one per \
             dependent, fewer when a slow receiver's queue merges), so it is not held to the same target.",
        );
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(s)
    }

    // ----- 3 ----------------------------------------------------------------

    async fn push_latency(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "3. Push latency",
            "A provider registers (`POST /services`); measured from just before the request to the moment a \
             dependent's update endpoint (a hyper server in the bench process) receives the patch holding it. \
             One dependent: a fresh dependent and provider name per trial. Fan-out: one provider name required \
             by many dependents; measured until the last one holds it; the provider is deregistered between trials.",
        );
        let (reg, dir) = self.registry(&[]).await?;
        let base = reg.url.clone();
        let receivers = Receivers::start(8).await?;
        let mut one = Samples::default();
        for t in 0..self.plan.push_trials as u64 {
            let name = format!("Push{t}");
            self.post(
                &format!("{base}/services"),
                receivers.registration(t, "PushDependent", &name),
            )
            .await?;
            let provider = format!("http://127.0.0.1:9/push/{t}");
            let started = Instant::now();
            self.post(
                &format!("{base}/services"),
                String::from_utf8_lossy(&registration(&name, &provider)).into_owned(),
            )
            .await?;
            let held = receivers
                .wait_until(Duration::from_secs(5), |r| {
                    r.added_at(t, &provider).is_some()
                })
                .await;
            if let (true, Some(at)) = (held, receivers.added_at(t, &provider)) {
                one.push(at.duration_since(started));
            }
        }
        s.row(Row::new(
            "one dependent p50",
            ms(one.percentile(50.0)),
            "ms",
        ))
        .row(
            Row::new("one dependent p99", ms(one.percentile(99.0)), "ms")
                .target("≤ 5 ms", one.percentile(99.0) <= Duration::from_millis(5)),
        );
        s.check(
            format!(
                "{} of {} trials delivered",
                one.len(),
                self.plan.push_trials
            ),
            one.len() == self.plan.push_trials,
        );

        // Fan-out.
        let fan = self.plan.fanout;
        let first = 1_000_000;
        let regs: Vec<_> = (first..first + fan)
            .map(|id| {
                let url = format!("{base}/services");
                let body = receivers.registration(id, "FanDependent", "Fan");
                let client = self.client.clone();
                tokio::spawn(async move {
                    client
                        .post(url)
                        .body(body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                })
            })
            .collect();
        for r in regs {
            r.await?.context("registering a fan-out dependent")?;
        }
        let mut fanout = Samples::default();
        for t in 0..self.plan.fanout_trials {
            let provider = format!("http://127.0.0.1:9/fan/{t}");
            let started = Instant::now();
            self.post(
                &format!("{base}/services"),
                String::from_utf8_lossy(&registration("Fan", &provider)).into_owned(),
            )
            .await?;
            let all = receivers
                .wait_until(Duration::from_secs(30), |r| {
                    (first..first + fan).all(|id| r.added_at(id, &provider).is_some())
                })
                .await;
            if all {
                let last = (first..first + fan)
                    .filter_map(|id| receivers.added_at(id, &provider))
                    .max();
                if let Some(last) = last {
                    fanout.push(last.duration_since(started));
                }
            }
            // Take it away again, and let that fan out too.
            let _ = self
                .client
                .delete(format!("{base}/services"))
                .body(provider.clone())
                .send()
                .await;
            receivers
                .wait_until(Duration::from_secs(30), |r| {
                    (first..first + fan).all(|id| r.removed_at(id, &provider).is_some())
                })
                .await;
        }
        s.row(Row::new(
            format!("fan-out to {fan}: p50 until the last holds it"),
            ms(fanout.percentile(50.0)),
            "ms",
        ))
        .row(
            Row::new(
                format!("fan-out to {fan}: p99 until the last holds it"),
                ms(fanout.percentile(99.0)),
                "ms",
            )
            .target(
                if fan >= 1000 {
                    "≤ 250 ms (to 1,000)"
                } else {
                    "(the target is for 1,000)"
                },
                fanout.percentile(99.0) <= Duration::from_millis(250),
            ),
        );
        s.check(
            format!(
                "{} of {} fan-out trials reached every dependent",
                fanout.len(),
                self.plan.fanout_trials
            ),
            fanout.len() == self.plan.fanout_trials,
        );
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(s)
    }

    // ----- 4 ----------------------------------------------------------------

    async fn failure_detection(&mut self) -> anyhow::Result<Section> {
        let trials = self.plan.failure_trials;
        let mut s = Section::new(
            "4. Failure detection",
            &format!(
                "{trials} trials per kind, run side by side: each trial is one `hello` example process (the SDK; \
                 \"classic\" runs it with `--classic`: webhook and heartbeat only, no watch stream) and one \
                 dependent that requires it. The process gets SIGKILL (crash) or SIGSTOP (hung: the socket \
                 accepts, nothing answers); measured from the signal to the dependent holding `Removed`. Registry \
                 defaults: checks every 1 s ±10 %, 500 ms timeout, 2 failures, 250 ms recheck."
            ),
        );
        let (reg, dir) = self.registry(&[]).await?;
        let base = reg.url.clone();
        let receivers = Receivers::start(4).await?;
        let kinds = [
            (
                "SDK service, SIGKILL",
                false,
                "KILL",
                Duration::from_millis(100),
            ),
            (
                "classic service, SIGKILL",
                true,
                "KILL",
                // The next check comes within the interval (+10 % jitter), the
                // recheck 250 ms after the first refusal: 1.1 s + 0.25 s, plus
                // the patch's delivery.
                Duration::from_millis(1400),
            ),
            (
                "SDK service, SIGSTOP",
                false,
                "STOP",
                Duration::from_secs(3),
            ),
            (
                "classic service, SIGSTOP",
                true,
                "STOP",
                Duration::from_secs(3),
            ),
        ];
        for (k, (label, classic, signal, target)) in kinds.iter().enumerate() {
            let mut victims = Vec::new();
            for t in 0..trials {
                let name = format!("Victim{k}x{t}");
                let mut args = vec!["--name", &name, "--registry", &base];
                if *classic {
                    args.push("--classic");
                }
                victims.push(Proc::start(&self.bins.hello, &args).await?);
            }
            let ids: Vec<u64> = (0..trials as u64)
                .map(|t| 2_000_000 + (k as u64) * 1000 + t)
                .collect();
            for (t, id) in ids.iter().enumerate() {
                self.post(
                    &format!("{base}/services"),
                    receivers.registration(*id, "Watcher", &format!("Victim{k}x{t}")),
                )
                .await?;
            }
            let ready = receivers
                .wait_until(Duration::from_secs(30), |r| {
                    ids.iter()
                        .zip(&victims)
                        .all(|(id, v)| r.added_at(*id, &v.url).is_some())
                })
                .await;
            if !ready {
                bail!("{label}: the dependents never learned of their providers");
            }
            let mut signalled = Vec::new();
            for v in &victims {
                signalled.push(Instant::now());
                v.signal(signal);
            }
            receivers
                .wait_until(Duration::from_secs(15), |r| {
                    ids.iter()
                        .zip(&victims)
                        .all(|(id, v)| r.removed_at(*id, &v.url).is_some())
                })
                .await;
            let mut samples = Samples::default();
            for ((id, v), at) in ids.iter().zip(&victims).zip(&signalled) {
                if let Some(removed) = receivers.removed_at(*id, &v.url) {
                    samples.push(removed.duration_since(*at));
                }
            }
            s.row(Row::new(
                format!("{label}: p50"),
                ms(samples.percentile(50.0)),
                "ms",
            ))
            .row(
                Row::new(format!("{label}: p99"), ms(samples.percentile(99.0)), "ms").target(
                    &format!("≤ {} ms", target.as_millis()),
                    samples.percentile(99.0) <= *target,
                ),
            );
            s.check(
                format!("{label}: {} of {trials} dependents told", samples.len()),
                samples.len() == trials,
            );
            for v in victims {
                v.signal("KILL");
            }
        }
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(s)
    }

    // ----- 5 ----------------------------------------------------------------

    async fn check_scale(&mut self) -> anyhow::Result<Section> {
        let n = self.plan.scale_instances;
        let window = self.plan.scale_window;
        let mut s = Section::new(
            "5. Health-check scale",
            &format!(
                "{n} instances registered with heartbeat URLs served by the bench process (on 50 ports, like \
                 separate hosts), default 1 s interval. After a 2 s warm-up, over {} s: checks completed vs due \
                 (n / interval), the p99 of how late checks started (registry histogram; bucket upper bound), \
                 the registry's CPU (from /proc) and RSS.",
                window.as_secs()
            ),
        );
        let (reg, dir) = self.registry(&[]).await?;
        let addr = reg.addr();
        let receivers = Arc::new(Receivers::start(50).await?);
        let rec = receivers.clone();
        let r = load::run(
            addr,
            self.plan.connections,
            Duration::from_secs(120),
            Some(n),
            Arc::new(move |i| {
                let base = rec.base(i);
                load::request(
                    "POST",
                    addr,
                    "/services",
                    format!(
                        r#"{{"ServiceName":"Checked","ServiceURL":"{base}/i/{i}","HeartbeatURL":"{base}/hb/{i}"}}"#
                    ),
                )
            }),
        )
        .await;
        if r.ok != n {
            bail!("only {} of {n} instances registered", r.ok);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = self.metrics(&reg.url).await?;
        let cpu_before = reg.cpu();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after = self.metrics(&reg.url).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (reg.cpu().saturating_sub(cpu_before)).as_secs_f64() / elapsed * 100.0;
        let done = (metric_sum(&after, "rollcall_registry_checks_total")
            - metric_sum(&before, "rollcall_registry_checks_total"))
            / elapsed;
        let failed = metric_sum(&after, "rollcall_registry_checks_total{result=\"fail\"}");
        let due = n as f64 / 1.0;
        let lag_before = buckets(&before, "rollcall_registry_check_lag_seconds");
        let lag_after = buckets(&after, "rollcall_registry_check_lag_seconds");
        let lag: Vec<(f64, f64)> = lag_after
            .iter()
            .zip(&lag_before)
            .map(|((le, a), (_, b))| (*le, a - b))
            .collect();
        let lag_p99 = stats::histogram_percentile(&lag, 99.0).unwrap_or(f64::NAN) * 1000.0;
        let rss = reg.rss();
        s.row(Row::new("checks done per second", done, "checks/s"))
            .row(Row::new("checks due per second", due, "checks/s"))
            .row(Row::new("done / due", done / due * 100.0, "%"))
            .row(
                Row::new("check lag p99 (≤ bucket bound)", lag_p99, "ms")
                    .target("≤ 200 ms", lag_p99 <= 200.0),
            )
            .row(Row::new("registry CPU", cpu, "% of a core").target("≤ 50 %", cpu <= 50.0))
            .row(
                Row::new(
                    format!("registry RSS at {n} instances (checked)"),
                    mb(rss),
                    "MB",
                )
                .target("≤ 50 MB", mb(rss) <= 50.0),
            );
        s.check(
            format!("no check failed ({failed} failures)"),
            failed == 0.0,
        );
        self.loaded_rss
            .push((format!("registry ({n} instances checked)"), rss));
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(s)
    }

    // ----- 6 ----------------------------------------------------------------

    async fn logs(&mut self) -> anyhow::Result<Section> {
        let batch = self.plan.log_batch;
        let mut s = Section::new(
            "6. Logs",
            &format!(
                "A fresh standalone log service per measurement. Classic: `POST /log`, one text message per \
                 request. Batched: `POST /v1/logs` with {batch} records per request (each with a unique `id`, as \
                 the SDK sends them), under each `--fsync` policy. Afterwards the newest stored `seq` (records \
                 stored, since the store started empty) is compared with the records acknowledged."
            ),
        );
        let kinds: [(&str, &str); 4] = [
            ("classic POST /log", "interval"),
            ("batched, --fsync always", "always"),
            ("batched, --fsync interval", "interval"),
            ("batched, --fsync never", "never"),
        ];
        for (k, (label, fsync)) in kinds.iter().enumerate() {
            let dir = tempdir()?;
            let dir_text = dir.to_string_lossy().into_owned();
            let log = Proc::start(
                &self.bins.rollcall,
                &[
                    "log",
                    "--addr",
                    "127.0.0.1:0",
                    "--registry",
                    "",
                    "--data-dir",
                    &dir_text,
                    "--fsync",
                    fsync,
                ],
            )
            .await?;
            if k == 0 {
                self.idle_rss.push(("log".into(), log.rss()));
            }
            let addr = log.addr();
            let (r, per_request) = if k == 0 {
                self.ceiling_now().await;
                let r = self
                    .measure(
                        addr,
                        Arc::new(move |i| {
                            load::request(
                                "POST",
                                addr,
                                "/log",
                                format!("[Bench] - classic message {i}"),
                            )
                        }),
                    )
                    .await;
                (r, 1u64)
            } else {
                let r = self.measure(
            addr,
            Arc::new(move |i| {
                        let mut body = String::with_capacity(batch * 110);
                        body.push('[');
                        for j in 0..batch {
                            if j > 0 {
                                body.push(',');
                            }
                            body.push_str(&format!(
                                r#"{{"service":"Bench","level":"info","message":"batched record {j} of request {i}","id":"{i}-{j}"}}"#
                            ));
                        }
                        body.push(']');
                        load::request("POST", addr, "/v1/logs", body)
                    }),
                )
                .await;
                (r, batch as u64)
            };
            if k == 2 {
                self.loaded_rss
                    .push(("log (batched ingestion)".into(), log.rss()));
            }
            let acknowledged = r.ok * per_request;
            let rate = acknowledged as f64 / r.elapsed.as_secs_f64();
            let mut row = Row::new(format!("{label}: records/s"), rate, "rec/s");
            if k == 0 {
                row = row.ratio(self.ceiling);
            }
            if *fsync == "interval" && k == 2 {
                row = row.target("≥ 300,000 rec/s", rate >= 300_000.0);
            }
            s.row(row);
            let page: serde_json::Value = self
                .client
                .get(format!("{}/v1/logs?limit=1", log.url))
                .send()
                .await?
                .json()
                .await?;
            let stored = page["records"][0]["seq"].as_u64().unwrap_or(0);
            s.check(
                format!("{label}: {stored} records stored, {acknowledged} acknowledged"),
                stored == acknowledged && r.errors == 0 && r.rejected == 0,
            );
            log.stop().await;
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(s)
    }

    // ----- 7 ----------------------------------------------------------------

    async fn application(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "7. Application",
            "The grading service on a fresh data dir with the demo students: `GET /students/{id}` over the five \
             students. The portal, registered with a registry and finding the grading service through it: \
             `GET /students/1` (a page that calls the grading service; the student has their demo grades), with \
             4 connections. Then `POST /students/{id}/grades` (one valid grade each), and the stored grades are \
             counted.",
        );
        let (reg, reg_dir) = self.registry(&[]).await?;
        let dir = tempdir()?;
        let dir_text = dir.to_string_lossy().into_owned();
        let grades = Proc::start(
            &self.bins.rollcall,
            &[
                "grades",
                "--addr",
                "127.0.0.1:0",
                "--registry",
                &reg.url,
                "--data-dir",
                &dir_text,
            ],
        )
        .await?;
        self.idle_rss.push(("grades".into(), grades.rss()));
        let addr = grades.addr();
        self.ceiling_now().await;
        let r = self
            .measure(
                addr,
                Arc::new(move |i| {
                    load::request(
                        "GET",
                        addr,
                        &format!("/students/{}", 1 + i % 5),
                        Bytes::new(),
                    )
                }),
            )
            .await;
        s.row(Row::new("GET /students/{id}", r.rate(), "req/s").ratio(self.ceiling));
        self.loaded_rss
            .push(("grades (reads)".into(), grades.rss()));
        let portal = Proc::start(
            &self.bins.rollcall,
            &["portal", "--addr", "127.0.0.1:0", "--registry", &reg.url],
        )
        .await?;
        self.idle_rss.push(("portal".into(), portal.rss()));
        let paddr = portal.addr();
        let client = self.client.clone();
        let purl = portal.url.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = client
                .get(format!("{purl}/students/1"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = load::run(
            paddr,
            4,
            self.plan.measure,
            None,
            Arc::new(move |_| load::request("GET", paddr, "/students/1", Bytes::new())),
        )
        .await;
        s.row(Row::new(
            "portal page p50",
            ms(r.latencies.percentile(50.0)),
            "ms",
        ))
        .row(Row::new(
            "portal page p99",
            ms(r.latencies.percentile(99.0)),
            "ms",
        ))
        .row(Row::new("portal pages/s", r.rate(), "req/s"));
        s.check(
            format!("{} portal pages, none failed", r.ok),
            r.errors == 0 && r.rejected == 0,
        );
        self.loaded_rss
            .push(("portal (pages)".into(), portal.rss()));
        self.ceiling_now().await;
        let r = self
            .measure(
                addr,
                Arc::new(move |i| {
                    load::request(
                        "POST",
                        addr,
                        &format!("/students/{}/grades", 1 + i % 5),
                        format!(
                            r#"{{"Title":"Bench {i}","Type":"Quiz","Score":{}}}"#,
                            i % 101
                        ),
                    )
                }),
            )
            .await;
        s.row(Row::new("POST /students/{id}/grades", r.rate(), "req/s").ratio(self.ceiling));
        let students: Vec<serde_json::Value> = self
            .client
            .get(format!("{}/students", grades.url))
            .send()
            .await?
            .json()
            .await?;
        let stored: usize = students
            .iter()
            .map(|st| st["Grades"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            - 16;
        s.check(
            format!("{stored} grades stored, {} acknowledged", r.ok),
            stored as u64 == r.ok && r.errors == 0 && r.rejected == 0,
        );
        portal.stop().await;
        grades.stop().await;
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(reg_dir);
        Ok(s)
    }

    // ----- 8 ----------------------------------------------------------------

    async fn memory(&mut self) -> anyhow::Result<Section> {
        let [small, large] = self.plan.memory_instances;
        let mut s = Section::new(
            "8. Memory",
            &format!(
                "Resident set size (VmRSS from /proc). Idle: right after the service answered `/healthz`. Under \
                 load: at the end of its load above. Registry at {small} and {large} instances: a fresh registry, \
                 instances registered without heartbeat URLs (the figure with checks running is in section 5)."
            ),
        );
        for (name, bytes) in &self.idle_rss {
            s.row(Row::new(format!("{name}, idle"), mb(*bytes), "MB"));
        }
        for (name, bytes) in &self.loaded_rss {
            s.row(Row::new(format!("{name}, under load"), mb(*bytes), "MB"));
        }
        let (reg, dir) = self.registry(&[]).await?;
        let addr = reg.addr();
        let mut registered = 0;
        for target in [small, large] {
            let from = registered;
            let r = load::run(
                addr,
                self.plan.connections,
                Duration::from_secs(300),
                Some(target - from),
                Arc::new(move |i| {
                    load::request(
                        "POST",
                        addr,
                        "/services",
                        registration("Many", &format!("http://127.0.0.1:9/many/{}", from + i)),
                    )
                }),
            )
            .await;
            registered += r.ok;
            let rss = reg.rss();
            let mut row = Row::new(format!("registry at {target} instances"), mb(rss), "MB");
            if target == 10_000 {
                row = row.target("≤ 50 MB", mb(rss) <= 50.0);
            }
            s.row(row);
        }
        s.check(
            format!("{registered} of {large} instances registered"),
            registered == large,
        );
        reg.stop().await;
        let _ = std::fs::remove_dir_all(dir);
        Ok(s)
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let plan = Plan::new(args.quick, args.connections);
    let bins = Binaries::locate(!args.no_build)?;
    let mut bench = Bench {
        plan: plan.clone(),
        bins,
        trivial: None,
        ceiling: 0.0,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        idle_rss: Vec::new(),
        loaded_rss: Vec::new(),
    };
    let mut sections = Vec::new();
    macro_rules! section {
        ($name:literal, $call:expr) => {{
            eprintln!("rollcall-bench: {}", $name);
            let started = Instant::now();
            let section = $call.await.with_context(|| $name)?;
            eprintln!(
                "rollcall-bench:   done in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            sections.push(section);
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
