//! 3. Push latency: one dependent, and a fan-out.

use super::*;

impl Bench {
    pub(crate) async fn push_latency(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "3. Push latency",
            "A provider registers (`POST /services`); measured from just before the request to the moment a \
             dependent's update endpoint (a hyper server in the bench process) receives the patch holding it. \
             One dependent: a fresh dependent and provider name per trial. Fan-out: one provider name required \
             by many dependents; measured until the last one holds it; the provider is deregistered between trials.",
        );
        let reg = self.registry(&[]).await?;
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
        Ok(s)
    }
}
