//! Health checking with real faults: processes killed with SIGKILL, stopped with
//! SIGSTOP (hung: the socket accepts, nothing answers) and continued, and
//! receivers whose heartbeat hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;

const SOON: Duration = Duration::from_secs(15);

/// Starts the `hello` example as a provider named `Hello`.
async fn provider(registry: &str, classic: bool) -> ChildProcess {
    hello(
        registry,
        "Hello",
        if classic { &["--classic"] } else { &[] },
    )
    .await
}

/// A dependent of `Hello` that holds exactly `provider`.
async fn dependent_holding(registry: &str, provider: &str) -> FakeService {
    let dependent = FakeService::start().await;
    let response = register_raw(registry, &dependent.registration("Portal", &["Hello"])).await;
    assert_eq!(response.status(), 200);
    wait_providers(&dependent, "Hello", &[provider], SOON).await;
    dependent
}

/// Starts a provider (`classic` or SDK) and a dependent holding it, kills
/// the provider with SIGKILL, waits until the dependent is told, and returns
/// the registry's entry for the dead provider and the dependent's last patch.
async fn kill_a_provider(
    reg: &ChildProcess,
    classic: bool,
) -> (serde_json::Value, rollcall_proto::Patch, String) {
    let mut provider = provider(&reg.url, classic).await;
    wait_registered(&reg.url, &provider.url).await;
    let dependent = dependent_holding(&reg.url, &provider.url).await;
    provider.kill();
    wait_providers(&dependent, "Hello", &[], SOON).await;
    let entry = instance(&reg.url, &provider.url).await.unwrap();
    assert_eq!(entry["Status"], "critical");
    let last = dependent.patches().last().unwrap().1.clone();
    (entry, last, provider.url.clone())
}

#[tokio::test]
async fn sigkill_of_an_sdk_service_is_noticed_through_its_watch_stream() {
    // Checks every 60 s: only the closed watch stream can explain a quick
    // removal.
    let reg = registry(&["--check-interval", "60s"]).await;
    let (_, last, url) = kill_a_provider(&reg, false).await;
    assert_eq!(last.removed[0].url.as_str(), url);
}

#[tokio::test]
async fn sigkill_of_a_classic_service_is_noticed_by_its_health_checks() {
    let reg = registry(FAST_CHECKS).await;
    let (entry, _, _) = kill_a_provider(&reg, true).await;
    assert!(
        entry["LastCheckError"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{entry}"
    );
}

#[tokio::test]
async fn a_stopped_process_is_removed_and_put_back_when_it_continues() {
    let reg = registry(FAST_CHECKS).await;
    let provider = provider(&reg.url, false).await;
    wait_registered(&reg.url, &provider.url).await;
    let dependent = dependent_holding(&reg.url, &provider.url).await;
    // SIGSTOP: the kernel still accepts connections, nothing answers.
    provider.signal("STOP");
    wait_providers(&dependent, "Hello", &[], SOON).await;
    let entry = instance(&reg.url, &provider.url).await.unwrap();
    assert!(
        entry["LastCheckError"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{entry}"
    );
    // SIGCONT: it answers again and is put back.
    provider.signal("CONT");
    wait_providers(&dependent, "Hello", &[&provider.url], SOON).await;
    let last = dependent.patches().last().unwrap().1.clone();
    assert_eq!(last.added[0].url.as_str(), provider.url);
    assert_eq!(
        instance(&reg.url, &provider.url).await.unwrap()["Status"],
        "passing"
    );
}

#[tokio::test]
async fn a_hung_heartbeat_goes_critical_and_recovers_with_added() {
    let reg = registry(FAST_CHECKS).await;
    let provider = FakeService::start().await;
    register_raw(&reg.url, &provider.registration("Hello", &[])).await;
    let dependent = dependent_holding(&reg.url, &provider.url).await;
    provider.set_heartbeat(Mode::Hang);
    wait_providers(&dependent, "Hello", &[], SOON).await;
    provider.set_heartbeat(Mode::Status(500));
    eventually(SOON, "a check that answered 500", || async {
        let e = instance(&reg.url, &provider.url).await?;
        (e["LastCheckError"] == "HTTP 500").then_some(())
    })
    .await;
    provider.set_heartbeat(Mode::Ok);
    wait_providers(&dependent, "Hello", &[&provider.url], SOON).await;
}

#[tokio::test]
async fn a_hung_instance_does_not_stop_the_checks_of_any_other() {
    let reg = registry(FAST_CHECKS).await;
    let hung = FakeService::start().await;
    let healthy = FakeService::start().await;
    register_raw(&reg.url, &hung.registration("A", &[])).await;
    register_raw(&reg.url, &healthy.registration("B", &[])).await;
    hung.set_heartbeat(Mode::Hang);
    wait_status(&reg.url, &hung.url, "critical").await;
    // While it hangs, the other keeps being checked...
    let before = healthy.heartbeats();
    eventually(SOON, "more checks of the healthy instance", || {
        let more = healthy.heartbeats() >= before + 5;
        async move { more.then_some(()) }
    })
    .await;
    // ...and its failure is still noticed.
    healthy.close();
    wait_status(&reg.url, &healthy.url, "critical").await;
    assert_eq!(
        instance(&reg.url, &hung.url).await.unwrap()["Status"],
        "critical"
    );
}

#[tokio::test]
async fn an_instance_critical_for_too_long_leaves_the_catalog() {
    let mut flags = FAST_CHECKS.to_vec();
    flags.extend(["--deregister-after", "1s"]);
    let reg = registry(&flags).await;
    let provider = FakeService::start().await;
    register_raw(&reg.url, &provider.registration("Hello", &[])).await;
    provider.close();
    eventually(SOON, "the dead instance to expire", || async {
        instance(&reg.url, &provider.url)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let events = events(&reg.url).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["registered", "critical", "expired"]);
}

/// A raw HTTP/1.1 server, written out here byte by byte: it answers every
/// request `200 ok` and keeps the connection open for the next (as Go's
/// server does, forever), or closes it after each answer (`close`).
struct RawServer {
    url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    async fn start(close: bool) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the server drops them
            // all, closing every socket the way a process's death does.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let counted = counted.clone();
                connections.spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            counted.fetch_add(1, Ordering::SeqCst);
                            let answer: &[u8] = if close {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                            } else {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                            };
                            if socket.write_all(answer).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every socket closes at once, and the port refuses from now on.
    fn kill(&self) {
        self.task.abort();
    }

    fn registration(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "ServiceName": name,
            "ServiceURL": self.url,
            "RequiredServices": null,
            "ServiceUpdateURL": "",
            "HeartbeatURL": format!("{}/heartbeat", self.url),
        })
    }
}

#[tokio::test]
async fn a_killed_classic_keep_alive_server_is_noticed_through_the_held_connection() {
    // Checks every 30 s: only the connection held since the first check
    // can explain a removal within seconds.
    let reg = registry(&["--check-interval", "30s"]).await;
    let provider = RawServer::start(false).await;
    let response = register_raw(&reg.url, &provider.registration("Hello")).await;
    assert_eq!(response.status(), 200);
    let dependent = dependent_holding(&reg.url, &provider.url).await;
    // The provider's connection and the dependent's (a keep-alive server
    // too), each held since its first check.
    eventually(SOON, "both connections held", || async {
        let held = metric(&reg.url, "rollcall_registry_held_connections").await;
        (held == Some(2.0)).then_some(())
    })
    .await;
    assert_eq!(provider.requests(), 1, "one check so far");
    let killed = std::time::Instant::now();
    provider.kill();
    wait_providers(&dependent, "Hello", &[], Duration::from_secs(10)).await;
    let took = killed.elapsed();
    let entry = instance(&reg.url, &provider.url).await.unwrap();
    assert_eq!(entry["Status"], "critical", "{entry}");
    assert!(
        entry["LastCheckError"]
            .as_str()
            .unwrap()
            .contains("connection failed"),
        "{entry}"
    );
    assert_eq!(
        metric(&reg.url, "rollcall_registry_held_connections_lost_total").await,
        Some(1.0)
    );
    eprintln!("a killed keep-alive server was out of discovery after {took:?}");
}

#[tokio::test]
async fn a_server_that_closes_every_connection_is_checked_as_before() {
    let reg = registry(FAST_CHECKS).await;
    let provider = RawServer::start(true).await;
    register_raw(&reg.url, &provider.registration("Hello")).await;
    eventually(SOON, "five checks", || {
        let checked = provider.requests() >= 5;
        async move { checked.then_some(()) }
    })
    .await;
    // Each check on a connection of its own; none held, none lost, and the
    // server's closing after each answer never made it suspect.
    assert_eq!(
        metric(&reg.url, "rollcall_registry_held_connections").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&reg.url, "rollcall_registry_held_connections_lost_total").await,
        Some(0.0)
    );
    assert_eq!(
        instance(&reg.url, &provider.url).await.unwrap()["Status"],
        "passing"
    );
    provider.kill();
    wait_status(&reg.url, &provider.url, "critical").await;
}

#[tokio::test]
async fn a_hung_sdk_service_is_noticed_through_its_streams_missing_beats() {
    // Checks every 60 s, and a stopped process's sockets stay open: only the
    // beats its watch stream stopped sending can explain a quick removal.
    let reg = registry(&["--check-interval", "60s"]).await;
    let provider = provider(&reg.url, false).await;
    wait_registered(&reg.url, &provider.url).await;
    let dependent = dependent_holding(&reg.url, &provider.url).await;
    let stopped = std::time::Instant::now();
    provider.signal("STOP");
    wait_providers(&dependent, "Hello", &[], Duration::from_secs(10)).await;
    let took = stopped.elapsed();
    provider.signal("CONT");
    let entry = instance(&reg.url, &provider.url).await.unwrap();
    assert_eq!(entry["Status"], "critical", "{entry}");
    assert!(
        entry["LastCheckError"]
            .as_str()
            .unwrap()
            .contains("timed out after 250ms"),
        "a suspect's short check: {entry}"
    );
    assert!(
        metric(&reg.url, "rollcall_registry_watch_streams_silent_total")
            .await
            .unwrap()
            >= 1.0
    );
    eprintln!("a stopped SDK service was out of discovery after {took:?}");
}

#[tokio::test]
async fn past_the_cap_instances_are_checked_without_a_held_connection() {
    let mut flags = FAST_CHECKS.to_vec();
    flags.extend(["--max-held-connections", "1"]);
    let reg = registry(&flags).await;
    let first = RawServer::start(false).await;
    let second = RawServer::start(false).await;
    register_raw(&reg.url, &first.registration("A")).await;
    register_raw(&reg.url, &second.registration("B")).await;
    eventually(SOON, "five checks of each", || {
        let checked = first.requests() >= 5 && second.requests() >= 5;
        async move { checked.then_some(()) }
    })
    .await;
    // One held, the other checked through the pooled client all along.
    assert_eq!(
        metric(&reg.url, "rollcall_registry_held_connections").await,
        Some(1.0)
    );
    assert!(
        metric(
            &reg.url,
            "rollcall_registry_held_connections_over_cap_total"
        )
        .await
        .unwrap()
            >= 1.0
    );
    for server in [&first, &second] {
        assert_eq!(
            instance(&reg.url, &server.url).await.unwrap()["Status"],
            "passing"
        );
    }
}
