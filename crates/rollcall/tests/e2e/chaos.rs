//! The chaos run: every process — the registry, the log service and three
//! SDK services (one of them classic: no watch stream) — is SIGKILLed or
//! SIGSTOPped at random while the services log a numbered stream and the
//! test writes numbered records of its own, retrying each until the log
//! service acknowledges it. Killed processes come back (the registry and the
//! log service on their addresses, a service on a new one, leaving its old
//! instance dead). Once the faults stop, the system must converge:
//!
//! - every live service's providers equal the registry's passing set, for
//!   every name it requires;
//! - no dead instance is offered, by the registry or by any service;
//! - every acknowledged log record is stored exactly once (the test's own,
//!   and as many of each live service's as it counted as forwarded), and no
//!   record is stored twice.
//!
//! The short form runs in every test run (`ROLLCALL_CHAOS_SECONDS`, default
//! 20). The long form is the same test for longer:
//! `ROLLCALL_CHAOS_SECONDS=600 cargo test -p rollcall --test e2e chaos -- --nocapture`;
//! `ROLLCALL_CHAOS_SEED` replays a run's faults (each run prints its seed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// Time to converge once the faults stop.
const CONVERGE: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*): a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// One role in the run and the process playing it now.
struct Role {
    what: &'static str,
    process: ChildProcess,
    /// SIGSTOPped until then.
    stopped_until: Option<Instant>,
}

/// Starts one SDK service (`Worker`): numbered ticks every 20 ms, forwarded
/// to the log service; it requires `Worker` (its peers) and `LogService`.
async fn worker(registry: &str, classic: bool) -> ChildProcess {
    let mut args = vec![
        "--name",
        "Worker",
        "--registry",
        registry,
        "--requires",
        "Worker",
        "--forward-logs",
        "--log-every",
        "20ms",
    ];
    if classic {
        args.push("--classic");
    }
    ChildProcess::start(&example_bin("hello"), &args, &[]).await
}

/// The providers a service holds, by name (from the `hello` page:
/// `Name: url, url` lines).
async fn providers_of(url: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let page = fetch(&reqwest::Client::new(), &format!("{url}/"))
        .await?
        .text()
        .await
        .ok()?;
    let mut held = BTreeMap::new();
    for line in page.lines().skip(1) {
        if line.starts_with(' ') {
            continue;
        }
        let (name, urls) = line.split_once(": ")?;
        let urls = urls
            .split(", ")
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        held.insert(name.to_owned(), urls);
    }
    Some(held)
}

/// The registry's passing (in discovery) instances, by name.
async fn passing(registry: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let catalog: Vec<serde_json::Value> =
        fetch(&reqwest::Client::new(), &format!("{registry}/services"))
            .await?
            .json()
            .await
            .ok()?;
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in catalog.iter().filter(|i| i["InDiscovery"] == true) {
        sets.entry(i["ServiceName"].as_str()?.to_owned())
            .or_default()
            .insert(i["ServiceURL"].as_str()?.to_owned());
    }
    Some(sets)
}

/// What differs from the invariants now, or nothing.
async fn divergence(
    registry: &str,
    log: &str,
    workers: &[String],
    dead: &BTreeSet<String>,
) -> Option<String> {
    let Some(passing) = passing(registry).await else {
        return Some("the registry does not answer".into());
    };
    let live: BTreeSet<String> = workers.iter().cloned().collect();
    let want_log = BTreeSet::from([log.to_owned()]);
    let empty = BTreeSet::new();
    let registry_workers = passing.get("Worker").unwrap_or(&empty);
    if registry_workers != &live {
        return Some(format!(
            "the registry passes Worker {registry_workers:?}, the live ones are {live:?}"
        ));
    }
    let registry_log = passing.get("LogService").unwrap_or(&empty);
    if registry_log != &want_log {
        return Some(format!("the registry passes LogService {registry_log:?}"));
    }
    for url in workers {
        let Some(held) = providers_of(url).await else {
            return Some(format!("{url} does not answer"));
        };
        for (name, want) in [("Worker", &live), ("LogService", &want_log)] {
            let got = held.get(name).unwrap_or(&empty);
            if got != want {
                return Some(format!("{url} holds {name} {got:?}, the registry {want:?}"));
            }
            if let Some(d) = got.intersection(dead).next() {
                return Some(format!("{url} is offered the dead instance {d}"));
            }
        }
    }
    None
}

/// Writes numbered records straight to the log service, one at a time, each
/// retried until acknowledged; returns the acknowledged ids.
fn start_writer(log: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acknowledged = BTreeSet::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let id = format!("chaos-{n}");
            let body = serde_json::json!([{
                "service": "ChaosWriter",
                "message": format!("record {n}"),
                "id": id,
                "fields": {"n": n},
            }]);
            // Retry until acknowledged (the log service may be dead or
            // stopped for a while), even after the faults stop.
            post_until_acknowledged(&client, &log, &body).await;
            acknowledged.insert(id);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acknowledged
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_converges_and_loses_no_acknowledged_record() {
    let seconds = env_u64("ROLLCALL_CHAOS_SECONDS").unwrap_or(20);
    let seed = env_u64("ROLLCALL_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("chaos: {seconds} s, ROLLCALL_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (reg_dir, log_dir) = (dir.path().join("registry"), dir.path().join("log"));
    std::fs::create_dir_all(&reg_dir).unwrap();
    std::fs::create_dir_all(&log_dir).unwrap();

    let registry = registry_on_disk(&reg_dir, "127.0.0.1:0", FAST_CHECKS).await;
    let reg_url = registry.url.clone();
    let reg_addr = reg_url.trim_start_matches("http://").to_owned();
    let log = log_service(&log_dir, "127.0.0.1:0", &reg_url, &[]).await;
    let log_url = log.url.clone();
    let log_addr = log_url.trim_start_matches("http://").to_owned();
    let mut roles = vec![
        Role {
            what: "registry",
            process: registry,
            stopped_until: None,
        },
        Role {
            what: "log",
            process: log,
            stopped_until: None,
        },
    ];
    for classic in [false, false, true] {
        roles.push(Role {
            what: if classic { "classic" } else { "worker" },
            process: worker(&reg_url, classic).await,
            stopped_until: None,
        });
    }
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = start_writer(log_url.clone(), stop_writing.clone());
    // The URLs of killed services: never to be offered again.
    let dead = Arc::new(Mutex::new(BTreeSet::new()));

    let (mut kills, mut stops) = (0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(300, 1200)).await;
        let now = Instant::now();
        for role in &mut roles {
            if role.stopped_until.is_some_and(|t| t <= now) {
                role.process.signal("CONT");
                role.stopped_until = None;
            }
        }
        let i = rng.below(roles.len() as u64) as usize;
        if rng.below(2) == 0 {
            kills += 1;
            let role = &mut roles[i];
            role.process.kill();
            role.stopped_until = None;
            tokio::time::sleep(rng.millis(0, 500)).await;
            role.process = match role.what {
                "registry" => registry_on_disk(&reg_dir, &reg_addr, FAST_CHECKS).await,
                "log" => log_service(&log_dir, &log_addr, &reg_url, &[]).await,
                what => {
                    dead.lock().unwrap().insert(role.process.url.clone());
                    worker(&reg_url, what == "classic").await
                }
            };
        } else if roles[i].stopped_until.is_none() {
            stops += 1;
            roles[i].process.signal("STOP");
            roles[i].stopped_until = Some(now + rng.millis(200, 2500));
        }
    }
    for role in &mut roles {
        if role.stopped_until.take().is_some() {
            role.process.signal("CONT");
        }
    }
    eprintln!("chaos: {kills} SIGKILLs, {stops} SIGSTOPs; converging");

    let workers: Vec<String> = roles[2..].iter().map(|r| r.process.url.clone()).collect();
    // (A new service may have been given a dead one's port.)
    let mut dead = dead.lock().unwrap().clone();
    dead.retain(|u| !workers.contains(u));
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < CONVERGE {
        last = divergence(&reg_url, &log_url, &workers, &dead).await;
        if last.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        last.is_none(),
        "not converged {CONVERGE:?} after the faults stopped (seed {seed}): {}",
        last.unwrap_or_default()
    );
    eprintln!("chaos: converged in {:?}", started.elapsed());

    // Every acknowledged record is stored, exactly once.
    stop_writing.store(true, Ordering::Relaxed);
    let acknowledged = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer finishes its last record")
        .unwrap();
    let forwarded: Vec<(String, f64)> = {
        let mut out = Vec::new();
        for url in &workers {
            let n = metric(url, "rollcall_sdk_log_records_forwarded_total")
                .await
                .unwrap_or(0.0);
            out.push((url.clone(), n));
        }
        out
    };
    let stored = all_logs(&log_url, "").await;
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    for r in &stored {
        if let Some(id) = r["id"].as_str() {
            *ids.entry(id.to_owned()).or_default() += 1;
        }
        if let Some(instance) = r["instance"].as_str() {
            *per_instance.entry(instance.to_owned()).or_default() += 1;
        }
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored (of {}): {missing:?}",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty());
    for (url, forwarded) in forwarded {
        let kept = per_instance.get(&url).copied().unwrap_or(0);
        assert!(
            kept as f64 >= forwarded,
            "{url}: {forwarded} records acknowledged to it, {kept} stored"
        );
    }
    eprintln!(
        "chaos: {} acknowledged writes and {} records stored, none twice",
        acknowledged.len(),
        stored.len()
    );
}
