//! A real Prometheus (Debian's `prometheus`) for tests, configured with one
//! `http_sd_configs` job pointed at a registry, scraping every second. A
//! missing binary fails the test with the package to install; it never
//! skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `prometheus` binary on `PATH`; panics naming the package when missing.
pub fn prometheus_bin() -> PathBuf {
    crate::bin_on_path("prometheus", "prometheus")
}

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus discovering targets at `sd_url` (HTTP SD, refreshed
    /// every second) and waits until it is ready.
    pub async fn start(sd_url: &str) -> Prometheus {
        // A chosen port can be taken before Prometheus binds it: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: rollcall\n    http_sd_configs:\n      - url: {sd_url}\n        refresh_interval: 1s\n"
                ),
            )
            .unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(prometheus_bin())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus");
            let mut prometheus = Prometheus {
                url: format!("http://127.0.0.1:{port}"),
                child,
                _dir: dir,
            };
            if crate::child::wait_answering(
                &mut prometheus.child,
                &format!("{}/-/ready", prometheus.url),
                Duration::from_secs(30),
            )
            .await
            {
                return prometheus;
            }
            let _ = prometheus.child.kill();
            let _ = prometheus.child.wait();
        }
        panic!("prometheus did not start three times running");
    }

    /// Prometheus' active targets (`/api/v1/targets`).
    pub async fn active_targets(&self) -> Vec<serde_json::Value> {
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/targets?state=active", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
