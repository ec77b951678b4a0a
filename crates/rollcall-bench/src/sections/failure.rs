//! 4. Failure detection: SIGKILL and SIGSTOP of SDK and classic services.

use super::*;

impl Bench {
    pub(crate) async fn failure_detection(&mut self) -> anyhow::Result<Section> {
        let trials = self.plan.failure_trials;
        let mut s = Section::new(
            "4. Failure detection",
            &format!(
                "{trials} trials per kind, run side by side: each trial is one `hello` example process (the SDK; \
                 \"classic\" runs it with `--classic`: webhook and heartbeat only, no watch stream) and one \
                 dependent that requires it. The process gets SIGKILL (crash) or SIGSTOP (hung: the socket \
                 accepts, nothing answers); measured from the signal to the dependent holding `Removed`. Registry \
                 defaults: checks every 1 s ±10 %, 500 ms timeout (250 ms for a suspect), 2 failures, 250 ms \
                 recheck. An SDK service's watch stream closes with it, or stops beating (every 200 ms) when it \
                 hangs; a classic service's keep-alive connection, held by the checker, closes with it. \
                 \"without a held connection\" runs the registry with `--max-held-connections 0`: what a server \
                 that closes every connection gets."
            ),
        );
        let held = self.registry(&[]).await?;
        let unheld = self.registry(&["--max-held-connections", "0"]).await?;
        let receivers = Receivers::start(4).await?;
        // Targets in ms (the where it sets one). A classic SIGKILL
        // without a held connection: the next check comes within the
        // interval (+10 % jitter), the recheck 250 ms after the first
        // refusal: 1.1 s + 0.25 s. A hung classic service: that, plus a
        // timeout for each of its 2 failures.
        let kinds: [(&str, bool, &str, u64, bool); 5] = [
            ("SDK service, SIGKILL", false, "KILL", 100, true),
            ("classic service, SIGKILL", true, "KILL", 50, true),
            (
                "classic service without a held connection, SIGKILL",
                true,
                "KILL",
                1350,
                false,
            ),
            ("SDK service, SIGSTOP", false, "STOP", 1000, true),
            ("classic service, SIGSTOP", true, "STOP", 3000, true),
        ];
        for (k, (label, classic, signal, target_ms, holds)) in kinds.iter().enumerate() {
            let base = if *holds { &held.url } else { &unheld.url };
            let target = &Duration::from_millis(*target_ms);
            let mut victims = Vec::new();
            for t in 0..trials {
                let name = format!("Victim{k}x{t}");
                let mut args = vec!["--name", &name, "--registry", base];
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
        held.stop().await;
        unheld.stop().await;
        Ok(s)
    }
}
