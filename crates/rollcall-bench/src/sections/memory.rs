//! 8. Memory.

use super::*;

impl Bench {
    pub(crate) async fn memory(&mut self) -> anyhow::Result<Section> {
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
        let reg = self.registry(&[]).await?;
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
        Ok(s)
    }
}
