//! An SDK service that finds itself unregistered registers again, against
//! rollcall's registry (an operator's deregistration) and against a classic
//! registry (it restarted: it stops calling our heartbeat). Logs reach a
//! classic log service through `POST /log`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rollcall_sdk::Service;
use rollcall_testkit::{TestRegistry, deregister_raw, eventually};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn start(name: &str, registry: &str, requires: &[&str], classic: bool) -> Service {
    Service::builder(name)
        .registry(registry)
        .requires(requires.iter().copied())
        .watch_stream(!classic)
        .classic_silence(Duration::from_millis(1500))
        .handle_signals(false)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_deregistration_is_undone_by_a_running_sdk_service() {
    let registry = TestRegistry::in_memory().await;
    let log = start("LogService", &registry.url, &[], false).await;
    let app = start("App", &registry.url, &["LogService"], false).await;
    assert!(app.wait_registered(WAIT).await);
    let log_name = rollcall_sdk::ServiceName::parse("LogService").unwrap();
    app.wait_for(&log_name, WAIT).await.unwrap();

    // The answer tells the operator it will come back.
    let answer = deregister_raw(&registry.url, log.url().as_str()).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["live"], true, "{body}");
    assert!(body["note"].as_str().unwrap().contains("maintenance"));

    // It registers again, and its dependent is told of it again.
    eventually(WAIT, "LogService registered again", || async {
        registry.instance(log.url().as_str()).await
    })
    .await;
    eventually(WAIT, "App holds LogService again", || async {
        (app.providers().all(&log_name) == vec![log.url().clone()]).then_some(())
    })
    .await;

    // Maintenance takes it out of discovery and it stays out.
    let client = reqwest::Client::new();
    let on = client
        .put(format!("{}/v1/maintenance", registry.url))
        .json(&serde_json::json!({"ServiceURL": log.url(), "Enable": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), 200);
    eventually(WAIT, "App told LogService is gone", || async {
        app.providers().all(&log_name).is_empty().then_some(())
    })
    .await;
    let shown = registry.instance(log.url().as_str()).await.unwrap();
    assert_eq!(shown["Status"], "maintenance");
    assert_eq!(shown["InDiscovery"], false);
    log.shutdown().await;
    app.shutdown().await;
}

/// A classic registry: takes registrations, has no watch stream, and calls
/// every registrant's heartbeat while `checking` is on.
#[derive(Clone, Default)]
struct ClassicRegistry {
    registrations: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn classic_register(
    State(state): State<ClassicRegistry>,
    body: axum::body::Bytes,
) -> StatusCode {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    state.registrations.lock().unwrap().push(value);
    StatusCode::OK
}

#[tokio::test]
async fn an_sdk_service_registers_again_when_a_classic_registry_stops_checking_it() {
    let state = ClassicRegistry::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/services", post(classic_register))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let service = start("App", &url, &[], false).await;
    assert!(service.wait_registered(WAIT).await);
    // The registry checks it every 300 ms for a while: it stays registered
    // through ten answered checks.
    let checking = CancellationToken::new();
    let heartbeat = format!("{}/heartbeat", service.url().as_str());
    let stop = checking.clone();
    let answered = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = answered.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.is_cancelled() {
            if client
                .get(&heartbeat)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    eventually(WAIT, "ten checks answered", || async {
        (answered.load(std::sync::atomic::Ordering::Relaxed) >= 10).then_some(())
    })
    .await;
    assert_eq!(
        state.registrations.lock().unwrap().len(),
        1,
        "checked regularly: no second registration"
    );
    // It "restarts": forgets everyone and stops calling.
    checking.cancel();
    state.registrations.lock().unwrap().clear();
    let again = eventually(WAIT, "registered again", || async {
        state.registrations.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(again["ServiceName"], "App");
    service.shutdown().await;
}

#[derive(Clone, Default)]
struct ClassicLog {
    lines: Arc<Mutex<Vec<String>>>,
}

async fn classic_log(State(state): State<ClassicLog>, body: String) -> StatusCode {
    state.lines.lock().unwrap().push(body);
    StatusCode::OK
}

#[tokio::test]
async fn logs_reach_a_classic_log_service_one_line_per_record() {
    use tracing_subscriber::prelude::*;

    let registry = TestRegistry::in_memory().await;
    let state = ClassicLog::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log_url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/log", post(classic_log))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    // Registered the classic way: no update URL, a heartbeat that 404s is not
    // given either (not checked).
    let answer = rollcall_testkit::register_raw(
        &registry.url,
        &serde_json::json!({"ServiceName": "LogService", "ServiceURL": log_url}),
    )
    .await;
    assert_eq!(answer.status(), 200);

    let (layer, forwarder) = rollcall_sdk::logs::layer("Shipper");
    let subscriber = tracing_subscriber::registry().with(layer);
    let _guard = tracing::subscriber::set_default(subscriber);
    let service = start("Shipper", &registry.url, &["LogService"], false).await;
    forwarder.attach(&service);
    tracing::info!(order = 7, "grade saved");
    tracing::warn!("second\nline");
    let lines = eventually(WAIT, "two lines at the classic log service", || async {
        let lines = state.lines.lock().unwrap().clone();
        lines
            .iter()
            .any(|l| l.contains("second line"))
            .then_some(lines)
    })
    .await;
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(has("[Shipper] - grade saved order=7"), "{lines:?}");
    assert!(has("[Shipper] - WARN second line"), "{lines:?}");
    assert_eq!(forwarder.metrics().dropped.get(), 0);
    service.shutdown().await;
}
