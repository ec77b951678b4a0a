//! The log service's routes in process (no socket): bad input is a 4xx with
//! a JSON error, and a batch with one bad record stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rollcall_logs::LogConfig;
use rollcall_logs::http::{AppState, router};
use rollcall_logs::store::{LogStore, StoreThreads};
use rollcall_testkit::router::assert_refused;
use tokio_util::sync::CancellationToken;

/// The log service's router over a store in `dir`.
fn app(dir: &std::path::Path) -> (axum::Router, LogStore, StoreThreads) {
    let config = LogConfig::for_tests(dir.to_owned());
    let (store, threads) = LogStore::open(config.store()).unwrap();
    let router = router(AppState {
        store: store.clone(),
        config: Arc::new(config),
        metrics: Arc::default(),
        shutdown: CancellationToken::new(),
    });
    (router, store, threads)
}

#[tokio::test]
async fn bad_input_is_refused_whole_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let (router, store, threads) = app(dir.path());
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "/log", "", 400, "empty_message"),
        ("GET", "/log", "", 405, "method_not_allowed"),
        ("POST", "/v1/logs", "{", 400, "malformed_json"),
        (
            "POST",
            "/v1/logs",
            r#"[{"service":"A","message":"ok"},{"service":"A"}]"#,
            400,
            "invalid_records",
        ),
        (
            "POST",
            "/v1/logs",
            r#"[{"service":"A","message":"x","level":"loud"}]"#,
            400,
            "invalid_records",
        ),
        ("GET", "/v1/logs?level=loud", "", 400, "invalid_query"),
        ("GET", "/v1/logs?servce=A", "", 400, "invalid_query"),
        ("GET", "/v1/logs?limit=0", "", 400, "invalid_query"),
        ("GET", "/v1/logs?since=yesterday", "", 400, "invalid_query"),
        ("GET", "/nowhere", "", 404, "not_found"),
    ];
    for (method, uri, body, status, code) in cases {
        assert_refused(&router, (method, uri, body), *status, code).await;
    }
    assert_eq!(store.last_seq(), None, "nothing was stored");
    store.close(threads).await;
}

/// The document comes from the same list as the router: the routes read off
/// the router are exactly the documented ones, and the served document adds
/// the SDK's routes (checked against the SDK's router in its own crate).
#[tokio::test]
async fn the_served_openapi_document_covers_every_route_the_router_answers() {
    use rollcall_testkit::openapi::assert_service_documented;
    let dir = tempfile::tempdir().unwrap();
    let (served, _store, _threads) = app(dir.path());
    assert_service_documented(
        &served,
        rollcall_logs::http::api,
        Some(rollcall_sdk::service::openapi()),
    )
    .await;
}

/// A store that fails a query is the service's fault, not the client's: the
/// API and the explorer answer 503 alike (the explorer said 400 before).
#[tokio::test]
async fn a_store_that_fails_a_query_is_a_503_in_the_api_and_the_explorer() {
    let dir = tempfile::tempdir().unwrap();
    let (router, store, threads) = app(dir.path());
    let batch = r#"[{"service":"A","message":"kept"}]"#;
    let stored = rollcall_testkit::router::call(&router, "POST", "/v1/logs", batch).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    // The segment becomes unreadable under the store (a directory where the
    // file was: opening works, reading fails).
    for entry in std::fs::read_dir(dir.path().join("logs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            std::fs::remove_file(&path).unwrap();
            std::fs::create_dir(&path).unwrap();
        }
    }
    assert_refused(&router, ("GET", "/v1/logs", ""), 503, "store_unavailable").await;
    let page = rollcall_testkit::router::call(&router, "GET", "/?service=A", "").await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        page.body.contains("log storage is unavailable"),
        "{}",
        page.body
    );
    store.close(threads).await;
}
