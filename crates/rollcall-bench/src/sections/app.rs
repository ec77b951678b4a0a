//! 7. The application: the grading service and the portal.

use super::*;

impl Bench {
    pub(crate) async fn application(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "7. Application",
            "The grading service on a fresh data dir with the demo students: `GET /students/{id}` over the five \
             students. The portal, registered with a registry and finding the grading service through it: \
             `GET /students/1` (a page that calls the grading service; the student has their demo grades), with \
             4 connections. Then `POST /students/{id}/grades` (one valid grade each), and the stored grades are \
             counted.",
        );
        let reg = self.registry(&[]).await?;
        let dir = tempdir()?;
        let dir_text = dir.to_string_lossy().into_owned();
        let grades = self
            .start_rollcall("grades", &["--registry", &reg.url, "--data-dir", &dir_text])
            .await?;
        self.idle_rss.push(("grades".into(), grades.rss()));
        let addr = grades.addr();
        let r = self
            .load(addr, "GET", move |i| {
                (format!("/students/{}", 1 + i % 5), Bytes::new())
            })
            .await;
        s.row(Row::new("GET /students/{id}", r.rate(), "req/s").ratio(self.ceiling));
        self.loaded_rss
            .push(("grades (reads)".into(), grades.rss()));
        let portal = self
            .start_rollcall("portal", &["--registry", &reg.url])
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
        s.latencies("portal page", &r.latencies)
            .row(Row::new("portal pages/s", r.rate(), "req/s"));
        s.check(
            format!("{} portal pages, none failed", r.ok),
            r.errors == 0 && r.rejected == 0,
        );
        self.loaded_rss
            .push(("portal (pages)".into(), portal.rss()));
        let r = self
            .load(addr, "POST", move |i| {
                (
                    format!("/students/{}/grades", 1 + i % 5),
                    Bytes::from(format!(
                        r#"{{"Title":"Bench {i}","Type":"Quiz","Score":{}}}"#,
                        i % 101
                    )),
                )
            })
            .await;
        s.row(Row::new("POST /students/{id}/grades", r.rate(), "req/s").ratio(self.ceiling));
        let students: Vec<serde_json::Value> =
            self.get_json(&format!("{}/students", grades.url)).await?;
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
        Ok(s)
    }
}
