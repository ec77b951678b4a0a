//! What every section uses: reading a service's metrics and catalog, a
//! temporary registry, posting, the ceiling (section 1) and loading a
//! service against a ceiling measured right before.

use super::*;

impl Bench {
    pub(crate) async fn metrics(&self, base: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{base}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .text()
            .await?)
    }

    /// A registry on its own data directory, gone with it when dropped.
    pub(crate) async fn registry(&self, extra: &[&str]) -> anyhow::Result<TempRegistry> {
        let dir = tempdir()?;
        let dir_text = dir.to_string_lossy().into_owned();
        // The load generator is one client writing as fast as the registry
        // answers: the per-client write limit (a defence, 1,000/s by
        // default) would measure itself, so it is off here.
        let mut args = vec![
            "registry",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &dir_text,
            "--max-writes-per-client",
            "0",
            // The bench registers hundreds of thousands of instances; the
            // catalog's cap (10,000 by default) is a defence, not a subject.
            "--max-instances",
            "100000000",
        ];
        args.extend_from_slice(extra);
        let proc = Proc::start(&self.bins.rollcall, &args).await?;
        Ok(TempRegistry {
            proc: Some(proc),
            dir,
        })
    }

    pub(crate) async fn count(&self, registry: &str, service: &str) -> anyhow::Result<usize> {
        let list: Vec<serde_json::Value> = self
            .get_json(&format!("{registry}/services?service={service}"))
            .await?;
        Ok(list.len())
    }

    /// `GET url` as JSON (within 60 s).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> anyhow::Result<T> {
        Ok(self
            .client
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .json()
            .await?)
    }

    pub(crate) async fn post(&self, url: &str, body: String) -> anyhow::Result<()> {
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

    pub(crate) async fn ceiling(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "1. Ceiling",
            "A trivial hyper handler (answers `ok`) in its own process, loaded with the same client and \
             connection count as everything below: what this machine can do over loopback at all.",
        );
        let trivial = Proc::start(&self.bins.bench, &["--serve-trivial", "127.0.0.1:0"]).await?;
        let cpu = trivial.cpu();
        let r = self.load_trivial(&trivial).await;
        self.ceiling = r.rate();
        self.ceiling_cpu_us = cpu_per_op(trivial.cpu() - cpu, r.ok);
        s.row(Row::new("requests/s", r.rate(), "req/s"))
            .row(Row::new(
                "server CPU per request",
                self.ceiling_cpu_us,
                "µs",
            ))
            .latencies("latency", &r.latencies);
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
    pub(crate) async fn measure(
        &self,
        addr: SocketAddr,
        make: load::MakeRequest,
    ) -> load::LoadResult {
        load::run(addr, self.plan.connections, self.plan.measure, None, make).await
    }

    /// Measures the ceiling again, then loads `addr` like [`Bench::measure`]:
    /// request `i` is `method` on the path and body `target(i)` gives.
    pub(crate) async fn load(
        &mut self,
        addr: SocketAddr,
        method: &'static str,
        target: impl Fn(u64) -> (String, Bytes) + Send + Sync + 'static,
    ) -> load::LoadResult {
        self.ceiling_now().await;
        self.measure(
            addr,
            Arc::new(move |i| {
                let (path, body) = target(i);
                load::request(method, addr, &path, body)
            }),
        )
        .await
    }

    /// Starts `rollcall SUBCOMMAND --addr 127.0.0.1:0 ARGS…`.
    pub(crate) async fn start_rollcall(
        &self,
        subcommand: &str,
        args: &[&str],
    ) -> anyhow::Result<Proc> {
        let mut all = vec![subcommand, "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Proc::start(&self.bins.rollcall, &all).await
    }

    /// Loads the trivial server.
    pub(crate) async fn load_trivial(&self, trivial: &Proc) -> load::LoadResult {
        let addr = trivial.addr();
        self.measure(
            addr,
            Arc::new(move |_| load::request("GET", addr, "/", Bytes::new())),
        )
        .await
    }

    /// A row for the server's CPU per request, as a share of the ceiling's
    /// (measured right before), with a target of at most `times` that.
    pub(crate) fn cpu_row(&self, what: &str, cpu: Duration, ops: u64, times: Option<f64>) -> Row {
        let us = cpu_per_op(cpu, ops);
        let row = Row::new(format!("  {what}"), us, "µs").ratio(self.ceiling_cpu_us);
        match times {
            Some(times) => row.target(
                &format!("≤ {times}× the ceiling's CPU"),
                us <= times * self.ceiling_cpu_us,
            ),
            None => row,
        }
    }

    /// Measures the ceiling again, right now (for the next figure's ratio).
    pub(crate) async fn ceiling_now(&mut self) -> f64 {
        let Some(trivial) = &self.trivial else {
            return self.ceiling;
        };
        let cpu = trivial.cpu();
        let r = self.load_trivial(trivial).await;
        if r.ok > 0 {
            self.ceiling = r.rate();
            self.ceiling_cpu_us = cpu_per_op(trivial.cpu() - cpu, r.ok);
        }
        self.ceiling
    }
}

/// CPU time per operation, in µs.
pub(crate) fn cpu_per_op(cpu: Duration, ops: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / ops.max(1) as f64
}
