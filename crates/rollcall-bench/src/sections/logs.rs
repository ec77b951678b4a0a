//! 6. Log ingestion under each fsync policy.

use super::*;

impl Bench {
    pub(crate) async fn logs(&mut self) -> anyhow::Result<Section> {
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
            let log = self
                .start_rollcall(
                    "log",
                    // One load generator is one client: the per-client
                    // write limit is off, as for the registry.
                    &[
                        "--registry",
                        "",
                        "--data-dir",
                        &dir_text,
                        "--fsync",
                        fsync,
                        "--max-writes-per-client",
                        "0",
                    ],
                )
                .await?;
            if k == 0 {
                self.idle_rss.push(("log".into(), log.rss()));
            }
            let addr = log.addr();
            let (r, per_request) = if k == 0 {
                let r = self
                    .load(addr, "POST", move |i| {
                        (
                            "/log".to_owned(),
                            Bytes::from(format!("[Bench] - classic message {i}")),
                        )
                    })
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
                .get_json(&format!("{}/v1/logs?limit=1", log.url))
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
}
