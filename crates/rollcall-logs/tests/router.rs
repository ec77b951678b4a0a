//! The log service's routes in process (no socket): bad input is a 4xx with
//! a JSON error, and a batch with one bad record stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rollcall_logs::LogConfig;
use rollcall_logs::http::{AppState, router};
use rollcall_logs::store::LogStore;
use rollcall_testkit::router::call;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn bad_input_is_refused_whole_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::for_tests(dir.path().to_owned());
    let (store, threads) = LogStore::open(config.store()).unwrap();
    let router = router(AppState {
        store: store.clone(),
        config: Arc::new(config),
        metrics: Arc::default(),
        shutdown: CancellationToken::new(),
    });
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
        let answer = call(&router, method, uri, *body).await;
        assert_eq!(
            answer.status, *status,
            "{method} {uri} {body}: {}",
            answer.body
        );
        assert_eq!(
            answer.error_code(),
            *code,
            "{method} {uri} {body}: {}",
            answer.body
        );
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
    let config = LogConfig::for_tests(dir.path().to_owned());
    let (store, _threads) = LogStore::open(config.store()).unwrap();
    let served = router(AppState {
        store,
        config: Arc::new(config),
        metrics: Arc::default(),
        shutdown: CancellationToken::new(),
    });
    let (own, _) = rollcall_logs::http::api().split_for_parts();
    let own_doc = rollcall_http::openapi::whole(rollcall_logs::http::api(), None);
    let sdk = rollcall_sdk::service::openapi();
    let whole = rollcall_logs::http::openapi_document();
    let served_doc = assert_service_documented(&served, &own, &own_doc, &whole, Some(&sdk)).await;
    assert!(served_doc["paths"]["/heartbeat"]["get"].is_object());
}
