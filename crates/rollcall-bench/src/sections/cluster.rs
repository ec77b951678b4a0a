//! Section 9, the cluster: three registry replicas over a three-member
//! etcd, next to etcd's own puts and ranges with the same load generator,
//! and how long a killed replica's share of the checks goes unchecked.

use rollcall_testkit::etcd::EtcdCluster;

use super::*;

/// Whether an `etcd` binary is on `PATH` (Debian's `etcd-server`).
fn etcd_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()))
}

/// `addr` of an `http://host:port` URL.
fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    url.trim_start_matches("http://")
        .parse()
        .with_context(|| format!("not an address: {url}"))
}

/// Load spread evenly over `addrs` (the plan's connections divided among
/// them), all at once; request `i` to member `k` is `make(k, i)`.
async fn spread(
    plan: &Plan,
    addrs: &[SocketAddr],
    make: impl Fn(usize, SocketAddr, u64) -> hyper::Request<http_body_util::Full<Bytes>>
    + Send
    + Sync
    + Clone
    + 'static,
) -> load::LoadResult {
    let per = (plan.connections / addrs.len()).max(1);
    let runs = addrs.iter().enumerate().map(|(k, addr)| {
        let make = make.clone();
        let addr = *addr;
        load::run(
            addr,
            per,
            plan.measure,
            None,
            Arc::new(move |i| make(k, addr, i)),
        )
    });
    let mut total = load::LoadResult::default();
    for r in futures_join(runs).await {
        total.ok += r.ok;
        total.rejected += r.rejected;
        total.errors += r.errors;
        total.latencies.0.extend(r.latencies.0);
        total.elapsed = total.elapsed.max(r.elapsed);
    }
    total
}

/// Runs every future at once, in order of the results.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// CPU time of processes, summed.
fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|pid| procs::cpu(*pid)).sum()
}

impl Bench {
    /// A replica over `etcd` under `prefix`.
    async fn replica(&self, etcd: &EtcdCluster, prefix: &str) -> anyhow::Result<Proc> {
        let endpoints = etcd.endpoints_flag();
        self.start_rollcall(
            "registry",
            &[
                "--etcd",
                &endpoints,
                "--etcd-prefix",
                prefix,
                "--max-writes-per-client",
                "0",
                "--max-instances",
                "100000000",
            ],
        )
        .await
    }

    pub(crate) async fn cluster(&mut self) -> anyhow::Result<Section> {
        let mut s = Section::new(
            "9. Cluster",
            "Three `rollcall registry --etcd` replicas (default lease TTL 3 s, 1 s checks) over a three-member \
             etcd (Debian's etcd-server, its default timing) on this machine. The load generator's connections \
             are divided evenly over the three replicas; \"etcd put/range\" sends etcd's own JSON-gateway \
             requests (`/v3/kv/put` of a unique key, `/v3/kv/range` of one key) from the same load generator, \
             spread the same way over the three members, in the same run. CPU is the user+system time of the \
             processes named, per acknowledged request. Failover: instances with heartbeat URLs served by \
             the bench, spread over the replicas; one replica is SIGKILLed, and for each instance it checked, \
             the time until another replica asks for its heartbeat.",
        );
        if !etcd_installed() {
            s.note("etcd is not installed (`apt-get install etcd-server`): nothing measured.");
            return Ok(s);
        }
        let etcd = EtcdCluster::start(3).await;
        let etcd_pids: Vec<u32> = (0..3).filter_map(|i| etcd.pid(i)).collect();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(self.replica(&etcd, "/bench/").await?);
        }
        let addrs: Vec<SocketAddr> = replicas.iter().map(Proc::addr).collect();
        let replica_pids: Vec<u32> = replicas.iter().map(|p| p.pid).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Registrations through the three.
        self.ceiling_now().await;
        let (rollcall_cpu, etcd_cpu) = (cpu_of(&replica_pids), cpu_of(&etcd_pids));
        let r = spread(&self.plan, &addrs, |k, addr, i| {
            load::request(
                "POST",
                addr,
                "/services",
                registration("Bench", &format!("http://127.0.0.1:9/r{k}/{i}")),
            )
        })
        .await;
        let per_op = |cpu: Duration, ops: u64| cpu.as_secs_f64() * 1e6 / ops.max(1) as f64;
        let registrations = r.clone();
        s.row(
            Row::new("registrations/s through 3 replicas", r.rate(), "reg/s").ratio(self.ceiling),
        )
        .row(Row::p99("registration latency", &r.latencies))
        .row(Row::new(
            "  replicas' CPU per registration",
            per_op(cpu_of(&replica_pids) - rollcall_cpu, r.ok),
            "µs",
        ))
        .row(Row::new(
            "  etcd's CPU per registration",
            per_op(cpu_of(&etcd_pids) - etcd_cpu, r.ok),
            "µs",
        ));
        // Every acknowledged registration is on every replica.
        let mut held = Vec::new();
        for replica in &replicas {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut n = 0;
            while Instant::now() < deadline {
                n = self.count(&replica.url, "Bench").await?;
                if n as u64 >= registrations.ok {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            held.push(n);
        }
        s.check(
            format!(
                "{} registrations acknowledged; the replicas hold {held:?}",
                registrations.ok
            ),
            held.iter().all(|n| *n as u64 == registrations.ok) && registrations.errors == 0,
        );

        // Reads of a 10-instance service through the three.
        for i in 0..10 {
            self.post(
                &format!("{}/services", replicas[i % 3].url),
                String::from_utf8_lossy(&registration(
                    "Small",
                    &format!("http://127.0.0.1:9/small/{i}"),
                ))
                .into_owned(),
            )
            .await?;
        }
        for replica in &replicas {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.count(&replica.url, "Small").await? < 10 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.ceiling_now().await;
        let rollcall_cpu = cpu_of(&replica_pids);
        let r = spread(&self.plan, &addrs, |_, addr, _| {
            load::request("GET", addr, "/services?service=Small", Bytes::new())
        })
        .await;
        s.row(
            Row::new("catalog reads/s through 3 replicas", r.rate(), "req/s").ratio(self.ceiling),
        )
        .row(Row::p99("catalog read latency", &r.latencies))
        .row(Row::new(
            "  replicas' CPU per read",
            per_op(cpu_of(&replica_pids) - rollcall_cpu, r.ok),
            "µs",
        ));

        // etcd's own rate, same client.
        let members: Vec<SocketAddr> = etcd
            .endpoints()
            .iter()
            .map(|e| addr_of(e))
            .collect::<anyhow::Result<_>>()?;
        self.ceiling_now().await;
        let etcd_cpu = cpu_of(&etcd_pids);
        let r = spread(&self.plan, &members, |k, addr, i| {
            let body = format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                b64(&format!("/peer/m{k}/{i}")),
                b64("v")
            );
            load::request("POST", addr, "/v3/kv/put", body)
        })
        .await;
        s.row(
            Row::new("etcd puts/s (JSON gateway, 3 members)", r.rate(), "req/s")
                .ratio(self.ceiling),
        )
        .row(Row::p99("etcd put latency", &r.latencies))
        .row(Row::new(
            "  etcd's CPU per put",
            per_op(cpu_of(&etcd_pids) - etcd_cpu, r.ok),
            "µs",
        ));
        s.check(
            format!("etcd took {} puts, refused {}", r.ok, r.rejected),
            r.ok > 0 && r.errors == 0,
        );
        self.ceiling_now().await;
        let etcd_cpu = cpu_of(&etcd_pids);
        let key = b64("/peer/m0/1");
        let r = spread(&self.plan, &members, move |_, addr, _| {
            load::request(
                "POST",
                addr,
                "/v3/kv/range",
                format!(r#"{{"key":"{key}"}}"#),
            )
        })
        .await;
        s.row(Row::new("etcd ranges/s (one key)", r.rate(), "req/s").ratio(self.ceiling))
            .row(Row::p99("etcd range latency", &r.latencies))
            .row(Row::new(
                "  etcd's CPU per range",
                per_op(cpu_of(&etcd_pids) - etcd_cpu, r.ok),
                "µs",
            ));

        // Failover: a replica is killed; how long until its share is
        // checked again.
        let heartbeats = Receivers::start(4).await?;
        let n = self.plan.cluster_instances;
        for i in 0..n {
            let base = heartbeats.base(i);
            let body = serde_json::json!({
                "ServiceName": "Checked",
                "ServiceURL": format!("{base}/i/{i}"),
                "HeartbeatURL": format!("{base}/hb/{i}"),
            })
            .to_string();
            self.post(&format!("{}/services", replicas[i as usize % 3].url), body)
                .await?;
        }
        let mut failover = Samples::default();
        let mut unchecked = 0;
        for trial in 0..self.plan.cluster_trials {
            // Every instance checked at least once since the last change
            // (the registrations, or the replacement replica's joining).
            let since = Instant::now();
            heartbeats
                .wait_until(Duration::from_secs(20), |h| {
                    (0..n).all(|i| h.heartbeat_after(i, since).is_some())
                })
                .await;
            let members: std::collections::BTreeSet<String> =
                replicas.iter().map(|r| r.url.clone()).collect();
            let victim = trial % replicas.len();
            let victim_url = replicas[victim].url.clone();
            let owned: Vec<u64> = (0..n)
                .filter(|i| {
                    let url = format!("{}/i/{i}", heartbeats.base(*i));
                    rollcall_proto::ServiceUrl::parse(&url).is_ok_and(|u| {
                        rollcall_registry::catalog::replica::owner(&members, &u)
                            == Some(victim_url.as_str())
                    })
                })
                .collect();
            replicas[victim].signal("KILL");
            let killed = Instant::now();
            let all_checked = heartbeats
                .wait_until(Duration::from_secs(20), |h| {
                    owned
                        .iter()
                        .all(|i| h.heartbeat_after(*i, killed).is_some())
                })
                .await;
            for i in &owned {
                match heartbeats.heartbeat_after(*i, killed) {
                    Some(at) => failover.push(at - killed),
                    None => unchecked += 1,
                }
            }
            if !all_checked {
                break;
            }
            // A new replica in its place (the next trial kills another).
            let replacement = self.replica(&etcd, "/bench/").await?;
            let old = std::mem::replace(&mut replicas[victim], replacement);
            drop(old);
        }
        s.row(Row::new(
            "failover: killed replica's share checked again, p50",
            ms(failover.percentile(50.0)),
            "ms",
        ))
        .row(Row::new(
            "failover: killed replica's share checked again, p99",
            ms(failover.percentile(99.0)),
            "ms",
        ));
        s.check(
            format!(
                "{} of the killed replicas' instances checked again, {unchecked} not within 20 s",
                failover.len()
            ),
            unchecked == 0 && failover.len() > 0,
        );
        s.note(
            "A registration is answered once etcd has committed it: one read of its keys and one transaction \
             through etcd's JSON gateway, so its cost is etcd's more than the replica's. Reads are served from \
             each replica's own catalog and do not touch etcd. Failover is bounded by the lease: the killed \
             replica's membership key lives until etcd expires its lease (the TTL after its last renewal), \
             then the others take its share and check it at once.",
        );
        for replica in replicas {
            replica.stop().await;
        }
        Ok(s)
    }
}
