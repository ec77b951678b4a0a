//! The registry over etcd (`--etcd`), with real etcd processes: the catalog
//! outlives the registry process and its machine (another registry on the
//! same etcd takes over with everything acknowledged), and when etcd has no
//! quorum writes answer 503 naming etcd while reads go on, until etcd is
//! back — with no restart of the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rollcall_testkit::etcd::EtcdCluster;

use crate::common::*;

const SOON: Duration = Duration::from_secs(20);

/// One cluster test at a time in this binary: each runs three etcd members
/// and up to three registries, too much to run side by side on two cores
/// next to the other end-to-end tests.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn registry_on(etcd: &EtcdCluster, prefix: &str) -> ChildProcess {
    let endpoints = etcd.endpoints_flag();
    let mut args = vec!["--etcd", &endpoints, "--etcd-prefix", prefix];
    args.extend_from_slice(FAST_CHECKS);
    let mut full = vec!["registry", "--addr", "127.0.0.1:0"];
    full.extend(args);
    ChildProcess::start(&rollcall_bin(), &full, &[]).await
}

#[tokio::test]
async fn the_catalog_lives_in_etcd_and_outlives_the_registry() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let mut first = registry_on(&etcd, "/outlive/").await;
    let fakes = [FakeService::start().await, FakeService::start().await];
    register_ok(&first.url, &fakes[0].registration("Provider", &[])).await;
    register_ok(
        &first.url,
        &fakes[1].registration("Dependent", &["Provider"]),
    )
    .await;
    wait_providers(
        &fakes[1],
        "Provider",
        &[&fakes[0].url],
        Duration::from_secs(10),
    )
    .await;

    // The registry's machine is gone: another registry on the same etcd
    // has every instance, with its health, and keeps checking them.
    first.kill();
    let second = registry_on(&etcd, "/outlive/").await;
    for fake in &fakes {
        wait_status(&second.url, &fake.url, "passing").await;
    }
    // A change through the new registry reaches the dependent.
    fakes[0].set_heartbeat(Mode::Status(500));
    wait_providers(&fakes[1], "Provider", &[], Duration::from_secs(15)).await;
}

#[tokio::test]
async fn with_every_etcd_member_stopped_writes_are_503_naming_etcd_and_reads_go_on_until_it_returns()
 {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start(3).await;
    let reg = registry_on(&etcd, "/quorum/").await;
    let fakes = [FakeService::start().await, FakeService::start().await];
    register_ok(&reg.url, &fakes[0].registration("A", &[])).await;

    // Every member stopped: one killed, two frozen (they accept
    // connections and never answer).
    let leader = etcd.leader().await.unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    etcd.kill(others[0]);
    etcd.signal(others[1], "STOP");
    etcd.signal(leader, "STOP");
    let refused = register_raw(&reg.url, &fakes[1].registration("B", &[])).await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("etcd"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    // Reads answer from the registry's own catalog, marked stale once it
    // notices etcd is gone; the refused write is not in it.
    assert!(instance(&reg.url, &fakes[0].url).await.is_some());
    assert!(instance(&reg.url, &fakes[1].url).await.is_none());
    // Checks go on: a provider that fails meanwhile goes critical here,
    // though the change cannot be stored yet.
    fakes[0].set_heartbeat(Mode::Status(500));
    wait_status(&reg.url, &fakes[0].url, "critical").await;
    let stale = || async {
        let answer = reqwest::get(format!("{}/services", reg.url)).await.ok()?;
        let marked = answer.headers().get("x-rollcall-stale").is_some();
        let health: serde_json::Value = get_json(&format!("{}/healthz", reg.url)).await;
        Some(marked && health["stale"] == true)
    };
    eventually(Duration::from_secs(15), "reads marked stale", || async {
        stale().await.filter(|s| *s)
    })
    .await;
    // Stale is visible everywhere: `ls` warns, the dashboard says so.
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg.url]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&fakes[0].url), "{out}");
    assert!(err.contains("has lost contact with etcd"), "{err}");
    let page = get_text(&format!("{}/dashboard/live", reg.url))
        .await
        .unwrap();
    assert!(
        page.contains(r#"id="stale""#),
        "the dashboard shows it is stale"
    );

    // etcd back: the same registry takes writes again by itself.
    etcd.signal(leader, "CONT");
    etcd.signal(others[1], "CONT");
    etcd.restart(others[0]);
    eventually(
        Duration::from_secs(30),
        "a registration to be taken again",
        || async {
            let answer = register_raw(&reg.url, &fakes[1].registration("B", &[])).await;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    assert!(instance(&reg.url, &fakes[1].url).await.is_some());
    eventually(Duration::from_secs(15), "reads current again", || async {
        stale().await.filter(|s| !*s).map(|_| ())
    })
    .await;
    // The status change made without etcd reaches etcd by itself.
    let key = format!("/quorum/i/{}", fakes[0].url);
    eventually(
        Duration::from_secs(15),
        "the critical status in etcd",
        || async {
            let stored = etcd_client(&etcd).get(key.as_bytes()).await.ok()??;
            let record: serde_json::Value = serde_json::from_slice(&stored.value).ok()?;
            (record["status"] == "critical").then_some(())
        },
    )
    .await;
}

/// Three registry replicas over one etcd, with fast checks and a 2 s lease.
async fn replicas(etcd: &EtcdCluster, prefix: &str) -> Vec<ChildProcess> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(replica(etcd, prefix, "127.0.0.1:0").await);
    }
    out
}

async fn replica(etcd: &EtcdCluster, prefix: &str, addr: &str) -> ChildProcess {
    replica_checking(etcd, prefix, addr, FAST_CHECKS).await
}

/// A replica with its own check flags.
async fn replica_checking(
    etcd: &EtcdCluster,
    prefix: &str,
    addr: &str,
    checks: &[&str],
) -> ChildProcess {
    let endpoints = etcd.endpoints_flag();
    let mut args = vec![
        "registry",
        "--addr",
        addr,
        "--etcd",
        &endpoints,
        "--etcd-prefix",
        prefix,
        "--lease-ttl",
        "2s",
    ];
    args.extend_from_slice(checks);
    ChildProcess::start(&rollcall_bin(), &args, &[]).await
}

/// A provider registered through `a` and a dependent through `b`, once the
/// dependent holds the provider.
async fn provider_and_dependent(a: &ChildProcess, b: &ChildProcess) -> (FakeService, FakeService) {
    let provider = FakeService::start().await;
    let dependent = FakeService::start().await;
    register_ok(&a.url, &provider.registration("Provider", &[])).await;
    register_ok(&b.url, &dependent.registration("Dependent", &["Provider"])).await;
    wait_providers(
        &dependent,
        "Provider",
        &[&provider.url],
        Duration::from_secs(10),
    )
    .await;
    (provider, dependent)
}

/// The replica that checks `url` and delivers to it, once all of `replicas`
/// are members.
fn owner_of<'a>(replicas: &'a [ChildProcess], url: &str) -> &'a ChildProcess {
    let members = replicas.iter().map(|r| r.url.clone()).collect();
    let url = rollcall_proto::ServiceUrl::parse(url).unwrap();
    let owner = rollcall_registry::catalog::replica::owner(&members, &url).unwrap();
    replicas.iter().find(|r| r.url == owner).unwrap()
}

/// Checks completed by a replica, from its `/metrics`.
async fn checks_done(registry: &str) -> f64 {
    let mut total = 0.0;
    for result in ["pass", "fail"] {
        total += metric(
            registry,
            &format!("rollcall_registry_checks_total{{result=\"{result}\"}}"),
        )
        .await
        .unwrap_or(0.0);
    }
    total
}

#[tokio::test]
async fn every_replica_serves_every_write_and_the_dependents_are_told_across_them() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let r = replicas(&etcd, "/three/").await;
    // Registered through A: read from B and C, shown on C's dashboard.
    let provider = FakeService::start().await;
    register_ok(&r[0].url, &provider.registration("Provider", &[])).await;
    for other in &r[1..] {
        wait_registered(&other.url, &provider.url).await;
    }
    eventually(
        Duration::from_secs(10),
        "C's dashboard to show it",
        || async {
            get_text(&format!("{}/", r[2].url))
                .await
                .filter(|page| page.contains(&provider.url))
        },
    )
    .await;
    // A dependent registered through B is told of a provider registered
    // through C, and of its departure through A.
    let dependent = FakeService::start().await;
    register_ok(&r[1].url, &dependent.registration("Dependent", &["Late"])).await;
    let late = FakeService::start().await;
    register_ok(&r[2].url, &late.registration("Late", &[])).await;
    wait_providers(&dependent, "Late", &[&late.url], Duration::from_secs(10)).await;
    assert_eq!(deregister_raw(&r[0].url, &late.url).await.status(), 200);
    wait_providers(&dependent, "Late", &[], Duration::from_secs(10)).await;
    // Every replica holds the same catalog.
    for replica in &r {
        wait_registered(&replica.url, &dependent.url).await;
        assert!(instance(&replica.url, &late.url).await.is_none());
    }
}

/// A client of `etcd`'s members.
fn etcd_client(etcd: &EtcdCluster) -> rollcall_registry::etcd::Etcd {
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| rollcall_proto::ServiceUrl::parse(e).unwrap())
        .collect();
    rollcall_registry::etcd::Etcd::new(endpoints, reqwest::Client::new(), Duration::from_secs(2))
        .unwrap()
}

/// etcd's revision of `key`'s last write.
async fn etcd_mod_revision(etcd: &EtcdCluster, key: &str) -> i64 {
    etcd_client(etcd)
        .get(key.as_bytes())
        .await
        .unwrap()
        .expect("the key is in etcd")
        .mod_revision
}

#[tokio::test]
async fn patches_from_every_replica_carry_etcds_revision() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let r = replicas(&etcd, "/numbered/").await;
    // A dependent delivered to by each replica.
    let mut dependents: Vec<FakeService> = Vec::new();
    for replica in &r {
        let fake = eventually(SOON, "a dependent this replica delivers to", || async {
            let fake = FakeService::start().await;
            (owner_of(&r, &fake.url).url == replica.url).then_some(fake)
        })
        .await;
        register_ok(&replica.url, &fake.registration("Dependent", &["Numbered"])).await;
        dependents.push(fake);
    }
    let provider = FakeService::start().await;
    register_ok(&r[0].url, &provider.registration("Numbered", &[])).await;
    let written_at = etcd_mod_revision(&etcd, &format!("/numbered/i/{}", provider.url)).await;
    for dependent in &dependents {
        wait_providers(
            dependent,
            "Numbered",
            &[&provider.url],
            Duration::from_secs(10),
        )
        .await;
        let told: Vec<Option<u64>> = dependent
            .patches()
            .iter()
            .filter(|(_, p)| p.added.iter().any(|e| e.url.as_str() == provider.url))
            .map(|(_, p)| p.revision)
            .collect();
        assert_eq!(
            told,
            vec![Some(u64::try_from(written_at).unwrap())],
            "{} was told at etcd's revision of the registration",
            dependent.url
        );
    }
    // Registered through a replica that does not deliver to it, a classic
    // dependent holds its providers when the registration is answered, as
    // with one registry (the answer waits for the owner's record of it).
    for replica in &r {
        let late = eventually(SOON, "a dependent another replica delivers to", || async {
            let fake = FakeService::start().await;
            (owner_of(&r, &fake.url).url != replica.url).then_some(fake)
        })
        .await;
        register_ok(&replica.url, &late.registration("Late", &["Numbered"])).await;
        assert_eq!(late.providers("Numbered"), vec![provider.url.clone()]);
    }
    // Reads say the same revision on every replica once they have followed
    // etcd to the same point.
    eventually(
        Duration::from_secs(10),
        "every replica to read at the same revision",
        || async {
            let mut revisions = Vec::new();
            for replica in &r {
                let answer = reqwest::get(format!("{}/services", replica.url))
                    .await
                    .ok()?;
                let revision: i64 = answer
                    .headers()
                    .get("x-rollcall-revision")?
                    .to_str()
                    .ok()?
                    .parse()
                    .ok()?;
                revisions.push(revision);
            }
            (revisions[0] >= written_at && revisions.iter().all(|x| *x == revisions[0]))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_killed_replicas_share_is_taken_over_and_its_provider_is_still_reported_gone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let mut r = replicas(&etcd, "/failover/").await;
    let (provider, dependent) = provider_and_dependent(&r[0], &r[0]).await;
    // SIGKILL the replica that checks the provider, then the provider.
    let owner = owner_of(&r, &provider.url).url.clone();
    let index = r.iter().position(|x| x.url == owner).unwrap();
    r[index].kill();
    provider.close();
    // Within the lease TTL and the detection time, the others notice, and
    // whoever delivers to the dependent tells it.
    wait_providers(&dependent, "Provider", &[], Duration::from_secs(20)).await;
    let survivor = &r[(index + 1) % 3];
    wait_status(&survivor.url, &provider.url, "critical").await;
}

#[tokio::test]
async fn three_replicas_share_the_checks() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let r = replicas(&etcd, "/share/").await;
    let fakes: Vec<FakeService> =
        futures_util::future::join_all((0..30).map(|_| FakeService::start())).await;
    for (i, fake) in fakes.iter().enumerate() {
        register_ok(&r[i % 3].url, &fake.registration("Many", &[])).await;
    }
    // Once the replicas together have checked every instance a few times,
    // compare their shares.
    let done = eventually(
        Duration::from_secs(30),
        "a few rounds of checks",
        || async {
            let mut done = Vec::new();
            for replica in &r {
                done.push(checks_done(&replica.url).await);
            }
            (done.iter().sum::<f64>() >= 600.0).then_some(done)
        },
    )
    .await;
    // Each replica does its share: the instances rendezvous hashing gives
    // it (about a third each; with 30 random ports one can get as few as a
    // sixth, so the share is compared with what it owns, not with 1/3).
    let total: f64 = done.iter().sum();
    for (replica, n) in r.iter().zip(&done) {
        let share = n / total;
        let owned = fakes
            .iter()
            .filter(|f| owner_of(&r, &f.url).url == replica.url)
            .count() as f64
            / fakes.len() as f64;
        assert!(
            owned > 0.0 && (share - owned).abs() < 0.12,
            "{} did {n} of {total} checks ({done:?}) and owns {owned:.2} of the instances",
            replica.url
        );
    }
    // Each instance is checked by one replica only: together they check
    // about as often as one registry would.
    let heartbeats: u64 = fakes.iter().map(FakeService::heartbeats).sum();
    assert!(
        (heartbeats as f64) < total * 1.1 + 30.0,
        "{heartbeats} heartbeats for {total} checks"
    );
}

#[tokio::test]
async fn a_frozen_replica_wakes_up_without_sending_anything_stale() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let r = replicas(&etcd, "/frozen/").await;
    let (provider, dependent) = provider_and_dependent(&r[0], &r[1]).await;
    // Freeze the replica that delivers to the dependent for twice its lease;
    // meanwhile the provider fails and the others take over.
    let frozen = owner_of(&r, &dependent.url);
    // (Read before it is stopped: a stopped process never answers.)
    let joins = metric(&frozen.url, "rollcall_registry_cluster_joins_total").await;
    assert_eq!(joins, Some(1.0), "joined once, at start");
    frozen.signal("STOP");
    provider.set_heartbeat(Mode::Status(500));
    wait_providers(&dependent, "Provider", &[], Duration::from_secs(20)).await;
    // Its lease is gone in etcd: the others count two members.
    for replica in r.iter().filter(|x| x.url != frozen.url) {
        eventually(SOON, "the frozen replica's lease expired", || async {
            let members = metric(&replica.url, "rollcall_registry_cluster_members").await;
            (members == Some(2.0)).then_some(())
        })
        .await;
    }
    let before = dependent.patches().len();
    frozen.signal("CONT");
    // Awake: it finds its lease lapsed (before acting on anything), learns
    // what happened from etcd, rejoins on a new lease and owes nobody a
    // resync. Nothing stale and nothing twice reached the dependent
    // meanwhile: no patch names the provider again, and it ends holding
    // exactly what the registry passes.
    eventually(SOON, "the frozen replica rejoined and settled", || async {
        let joins = metric(&frozen.url, "rollcall_registry_cluster_joins_total").await?;
        let members = metric(&frozen.url, "rollcall_registry_cluster_members").await?;
        let owed = metric(&frozen.url, "rollcall_registry_receivers_owed_resync").await?;
        (joins >= 2.0 && members == 3.0 && owed == 0.0).then_some(())
    })
    .await;
    wait_status(&frozen.url, &provider.url, "critical").await;
    let after = dependent.patches();
    let again: Vec<_> = after[before..]
        .iter()
        .filter(|(_, p)| {
            p.added
                .iter()
                .chain(&p.removed)
                .any(|e| e.url.as_str() == provider.url)
        })
        .collect();
    assert!(again.is_empty(), "told again after waking: {after:?}");
    assert_eq!(dependent.providers("Provider"), Vec::<String>::new());
    // No flip-flop: the provider went critical once, on every replica.
    for replica in &r {
        wait_status(&replica.url, &provider.url, "critical").await;
        let flips = events(&replica.url)
            .await
            .into_iter()
            .filter(|e| e["url"] == provider.url.as_str() && (e["kind"] == "recovered"))
            .count();
        assert_eq!(flips, 0, "{}", replica.url);
    }
}

#[tokio::test]
async fn a_hung_sdk_service_whose_stream_is_on_a_replica_that_does_not_check_it_is_removed_at_once()
{
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    // Checks every 60 s: only the beats the stream stopped sending can
    // explain a quick removal — and the stream is held by a replica that
    // does not check the instance.
    let checks = ["--check-interval", "60s", "--fast-recheck", "100ms"];
    let mut r = Vec::new();
    for _ in 0..3 {
        r.push(replica_checking(&etcd, "/beats/", "127.0.0.1:0", &checks).await);
    }
    for replica in &r {
        eventually(SOON, "every replica a member", || async {
            let members = metric(&replica.url, "rollcall_registry_cluster_members").await;
            (members == Some(3.0)).then_some(())
        })
        .await;
    }
    // An SDK service registered through (and streaming to) a replica that
    // does not own it: two in three do not; try until one does not.
    let mut found = None;
    for attempt in 0..12 {
        let through = &r[attempt % 3];
        let hello = hello(&through.url, "Hello", &[]).await;
        if owner_of(&r, &hello.url).url != through.url {
            found = Some((hello, through.url.clone()));
            break;
        }
    }
    let (hello, through) = found.expect("an SDK service owned by another replica");
    let checker = owner_of(&r, &hello.url).url.clone();
    let dependent = FakeService::start().await;
    register_ok(&checker, &dependent.registration("Portal", &["Hello"])).await;
    wait_providers(&dependent, "Hello", &[&hello.url], SOON).await;
    eventually(SOON, "the stream on its replica", || async {
        let open = metric(&through, "rollcall_registry_watch_streams").await;
        (open >= Some(1.0)).then_some(())
    })
    .await;
    let stopped = std::time::Instant::now();
    hello.signal("STOP");
    wait_providers(&dependent, "Hello", &[], Duration::from_secs(10)).await;
    let took = stopped.elapsed();
    hello.signal("CONT");
    let entry = instance(&checker, &hello.url).await.unwrap();
    assert!(
        entry["LastCheckError"]
            .as_str()
            .is_some_and(|e| e.contains("timed out after 250ms")),
        "the checker's short check of a suspect: {entry}"
    );
    assert!(
        metric(&through, "rollcall_registry_lost_contact_reported_total")
            .await
            .unwrap()
            >= 1.0
    );
    eprintln!("a stopped SDK service streaming to a non-checking replica was out after {took:?}");
}

#[tokio::test]
async fn registrations_answered_while_the_etcd_leader_is_killed_are_on_every_replica() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start(3).await;
    let r = replicas(&etcd, "/leader/").await;
    let urls: Vec<String> = r.iter().map(|x| x.url.clone()).collect();
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acknowledged = Vec::new();
        for i in 0..150u32 {
            let url = format!("http://127.0.0.1:9/load/{i}");
            let body = serde_json::json!({"ServiceName": "Load", "ServiceURL": url});
            let sent = client
                .post(format!("{}/services", urls[i as usize % 3]))
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if sent.is_ok_and(|answer| answer.status() == 200) {
                acknowledged.push(url);
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = etcd.leader().await.unwrap();
    etcd.kill(leader);
    let acknowledged = load.await.unwrap();
    assert!(
        acknowledged.len() > 50,
        "{} acknowledged",
        acknowledged.len()
    );
    for replica in &r {
        eventually(
            Duration::from_secs(20),
            &format!("{} to hold every acknowledged registration", replica.url),
            || async {
                let held: std::collections::BTreeSet<String> = catalog(&replica.url)
                    .await
                    .iter()
                    .filter_map(|i| i["ServiceURL"].as_str().map(str::to_owned))
                    .collect();
                acknowledged.iter().all(|u| held.contains(u)).then_some(())
            },
        )
        .await;
    }
}

/// Watch streams a replica holds open now.
async fn streams(registry: &str) -> f64 {
    metric(registry, "rollcall_registry_watch_streams")
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_sdk_service_given_every_replica_moves_on_when_its_replica_is_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let mut r = replicas(&etcd, "/sdk/").await;
    let all: Vec<&str> = r.iter().map(|x| x.url.as_str()).collect();
    let all = all.join(",");
    let first = FakeService::start().await;
    register_ok(&r[0].url, &first.registration("Provider", &[])).await;
    let hello = hello(&all, "Hello", &["--requires", "Provider"]).await;
    for replica in &r {
        wait_registered(&replica.url, &hello.url).await;
    }
    let held = |expected: Vec<String>| {
        let url = hello.url.clone();
        async move {
            let page = get_text(&format!("{url}/")).await?;
            let line = page.lines().find(|l| l.starts_with("Provider:"))?;
            let mut got: Vec<String> = line["Provider:".len()..]
                .split(',')
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect();
            got.sort();
            (got == expected).then_some(())
        }
    };
    eventually(Duration::from_secs(10), "the first provider", || {
        held(vec![first.url.clone()])
    })
    .await;
    // Kill the replica holding its watch stream.
    let talking = eventually(Duration::from_secs(10), "its watch stream", || async {
        for (i, replica) in r.iter().enumerate() {
            if streams(&replica.url).await >= 1.0 {
                return Some(i);
            }
        }
        None
    })
    .await;
    r[talking].kill();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != talking).collect();
    // It moves to another replica, stays registered, and keeps being told.
    eventually(
        Duration::from_secs(20),
        "a stream to another replica",
        || async {
            let mut open = 0.0;
            for i in &survivors {
                open += streams(&r[*i].url).await;
            }
            (open >= 1.0).then_some(())
        },
    )
    .await;
    let second = FakeService::start().await;
    register_ok(&r[survivors[0]].url, &second.registration("Provider", &[])).await;
    let mut both = vec![first.url.clone(), second.url.clone()];
    both.sort();
    eventually(Duration::from_secs(20), "the second provider too", || {
        held(both.clone())
    })
    .await;
    for i in &survivors {
        wait_status(&r[*i].url, &hello.url, "passing").await;
    }
}

#[tokio::test]
async fn up_runs_its_registry_over_etcd_and_another_replica_joins_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let endpoints = etcd.endpoints_flag();
    let up = Up::start(&["--etcd", &endpoints]).await;
    let registry = up.url("registry").to_owned();
    let health: serde_json::Value = get_json(&format!("{registry}/healthz")).await;
    assert!(
        health["store"].as_str().unwrap().starts_with("etcd:"),
        "{health}"
    );
    // Another replica on the same etcd serves the same catalog.
    let other = replica(&etcd, "/rollcall/", "127.0.0.1:0").await;
    for name in ["log", "grades", "portal"] {
        wait_status(&other.url, up.url(name), "passing").await;
    }
}

#[tokio::test]
async fn the_cli_given_every_replica_goes_past_a_dead_one_and_its_watch_moves_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start(3).await;
    let mut r = replicas(&etcd, "/cli/").await;
    let before = FakeService::start().await;
    register_ok(&r[0].url, &before.registration("Before", &[])).await;
    // A first URL that answers nothing: ls goes on to the next.
    let dead = "http://127.0.0.1:9";
    let through = format!("{dead},{}", r[1].url);
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &through]).await;
    assert!(ok && out.contains(&before.url), "{out}{err}");
    // watch follows the first replica, which is killed: it moves on to
    // the next, says what changed meanwhile, and goes on.
    let all = r
        .iter()
        .map(|x| x.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let (mut watch, mut out, mut err) = spawn_rollcall(&["watch", "--registry", &all]);
    crate::cli::next_with(&mut out, &before.url).await;
    eventually(Duration::from_secs(10), "the watch stream on A", || async {
        (streams(&r[0].url).await >= 1.0).then_some(())
    })
    .await;
    r[0].kill();
    let during = FakeService::start().await;
    register_ok(&r[1].url, &during.registration("During", &[])).await;
    crate::cli::next_with(&mut err, "following").await;
    let line = crate::cli::next_with(&mut out, &during.url).await;
    assert!(line.contains("registered"), "{line}");
    let after = FakeService::start().await;
    register_ok(&r[2].url, &after.registration("After", &[])).await;
    let line = crate::cli::next_with(&mut out, &after.url).await;
    assert!(line.contains("registered"), "{line}");
    let _ = watch.kill();
    let _ = watch.wait();
    // Writes too: deregister and maint go past the dead replica.
    let through = format!("{},{}", r[0].url, r[2].url);
    let (ok, _, err) = run_rollcall(&["maint", "--registry", &through, &after.url, "on"]).await;
    assert!(ok, "{err}");
    wait_status(&r[1].url, &after.url, "maintenance").await;
    let (ok, _, err) = run_rollcall(&["deregister", "--registry", &through, &during.url]).await;
    assert!(ok, "{err}");
    eventually(
        Duration::from_secs(10),
        "the deregistration on B",
        || async {
            instance(&r[1].url, &during.url)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}
