//! 5. Health-check scale.

use super::*;

impl Bench {
    pub(crate) async fn check_scale(&mut self) -> anyhow::Result<Section> {
        let n = self.plan.scale_instances;
        let window = self.plan.scale_window;
        let mut s = Section::new(
            "5. Health-check scale",
            &format!(
                "{n} instances registered with heartbeat URLs served by the bench process (on 50 ports, like \
                 separate hosts), default 1 s interval. After a 2 s warm-up, over {} s: checks completed vs due \
                 (n / interval), the p99 of how late checks started (registry histogram; bucket upper bound), \
                 the registry's CPU (from /proc) and RSS. Then the same on a fresh registry without held \
                 connections (`--max-held-connections 0`), as the baseline of what holding them costs.",
                window.as_secs()
            ),
        );
        let held = self.run_checks(n, window, &[]).await?;
        let (done, due, lag_p99, cpu, rss, failed) = (
            held.done,
            held.due,
            held.lag_p99,
            held.cpu,
            held.rss,
            held.failed,
        );
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
        // The baseline: the same without held connections (no
        // millisecond crash detection for classic services).
        let bare = self
            .run_checks(n, window, &["--max-held-connections", "0"])
            .await?;
        s.row(Row::new(
            "without held connections (`--max-held-connections 0`): done / due",
            bare.done / bare.due * 100.0,
            "%",
        ))
        .row(Row::new("  registry CPU", bare.cpu, "% of a core"))
        .row(Row::new(
            format!("  registry RSS at {n} instances (checked)"),
            mb(bare.rss),
            "MB",
        ));
        s.check(
            format!(
                "no check failed without held connections ({} failures)",
                bare.failed
            ),
            bare.failed == 0.0,
        );
        s.note(
            "Where the checks' CPU goes (perf, cpu-clock sampling of the registry, 2026-12-02): half is the \
             kernel's, sending and receiving on loopback (a check is a request and an answer, and the bench's \
             heartbeat servers share the two cores); connect, shutdown and close are about a fifth: checks past \
             the held-connection cap (1,024 by default) share a pool of 4 idle connections per host, and the \
             bench's 10,000 instances live on 50 hosts, so many checks open a connection. 32 per host was tried: \
             60 to 78 % of a core in four runs against 59 to 84 % with 4 (this run's row above), and 63 to 112 MB, so it was not kept. The rest \
             is hyper and tokio per request (task spawn, timers, buffers). Memory: every held connection keeps \
             a hyper connection task with its 4 KiB read buffer and 8 KiB header buffer, and every checked \
             instance its recent-check log. The rows without held connections are the price of holding 1,024 \
             of them (in runs of this section on 2026-12-02, this one included: 51 to 56 % of a core and 39 to \
             40 MB without, 68 to 81 % and 63 to 79 MB with), and section 4 what it buys: a classic service killed is out in \
             milliseconds instead of at its next check. What stands between the figures and the targets is \
             per-check work in the kernel and per-connection state, not the catalog; a cheaper check would \
             reuse a connection per host for many instances, and a held connection could be a bare socket \
             watched for its closing rather than a whole HTTP client connection.",
        );
        Ok(s)
    }

    /// Registers `n` checked instances on a fresh registry started with
    /// `flags`, and measures its checks over `window`.
    async fn run_checks(
        &mut self,
        n: u64,
        window: Duration,
        flags: &[&str],
    ) -> anyhow::Result<Checked> {
        let reg = self.registry(flags).await?;
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
        reg.stop().await;
        Ok(Checked {
            done,
            due,
            lag_p99,
            cpu,
            rss,
            failed,
        })
    }
}

/// What one health-check run measured.
struct Checked {
    done: f64,
    due: f64,
    lag_p99: f64,
    cpu: f64,
    rss: u64,
    failed: f64,
}
