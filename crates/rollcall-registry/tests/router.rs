//! The registry's routes in process (no socket): every kind of bad input gets
//! a 4xx with a JSON error body, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollcall_registry::{Registry, RegistryConfig, api as http};
use rollcall_testkit::router::{assert_refused, call};
use tokio_util::sync::CancellationToken;

fn router() -> (axum::Router, Registry, CancellationToken) {
    rollcall_testkit::router::registry(RegistryConfig::for_tests())
}

#[tokio::test]
async fn bad_registrations_are_4xx_json_errors_and_store_nothing() {
    let (router, registry, _stop) = router();
    let cases: &[(&str, &str)] = &[
        ("{", "malformed_json"),
        ("[]", "invalid_registration"),
        (r#"{"ServiceURL":"http://127.0.0.1:1"}"#, "missing_field"),
        (r#"{"ServiceName":"A"}"#, "missing_field"),
        (
            r#"{"ServiceName":"Bad Name!","ServiceURL":"http://127.0.0.1:1"}"#,
            "invalid_name",
        ),
        (
            r#"{"ServiceName":"A","ServiceURL":"gopher://x"}"#,
            "invalid_url",
        ),
        (
            r#"{"ServiceName":"A","ServiceURL":"http://127.0.0.1:1","RequiredServices":["A,B"]}"#,
            "invalid_name",
        ),
    ];
    for (body, code) in cases {
        assert_refused(&router, ("POST", "/services", body), 400, code).await;
    }
    let big = format!(
        r#"{{"ServiceName":"A","ServiceURL":"http://127.0.0.1:1","X":"{}"}}"#,
        "x".repeat(http::MAX_BODY)
    );
    let answer = call(&router, "POST", "/services", big).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(registry.read(|c| c.len()), 0, "nothing was stored");
}

#[tokio::test]
async fn bad_queries_unknown_routes_and_wrong_methods_are_json_errors() {
    let (router, _registry, _stop) = router();
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("GET", "/services?status=bogus", "", 400, "invalid_query"),
        ("GET", "/services?servce=A", "", 400, "invalid_query"),
        (
            "GET",
            "/services?service=Bad%20Name",
            "",
            400,
            "invalid_name",
        ),
        ("GET", "/v1/events?limit=many", "", 400, "invalid_query"),
        ("GET", "/v1/watch?requires=A,B%20C", "", 400, "invalid_name"),
        ("DELETE", "/services", "not a url", 400, "invalid_url"),
        (
            "DELETE",
            "/services",
            "http://127.0.0.1:9",
            404,
            "not_registered",
        ),
        ("PUT", "/v1/maintenance", "{}", 400, "invalid_body"),
        (
            "PUT",
            "/v1/maintenance",
            r#"{"ServiceURL":"http://127.0.0.1:9","Enable":true}"#,
            404,
            "not_registered",
        ),
        ("GET", "/nowhere", "", 404, "not_found"),
        ("PATCH", "/services", "", 405, "method_not_allowed"),
        (
            "GET",
            "/dashboard/instance?nope=1",
            "",
            400,
            "invalid_query",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        assert_refused(&router, (method, uri, body), *status, code).await;
    }
}

/// The OpenAPI document is generated from the same list as the router: this
/// reads the routes off the router and the served document and compares.
#[tokio::test]
async fn the_served_openapi_document_covers_every_route_the_router_answers() {
    let (served, _registry, _stop) = router();
    let json = rollcall_testkit::openapi::assert_service_documented(&served, http::api, None).await;
    assert!(json["paths"]["/services"]["post"]["requestBody"].is_object());
    assert_eq!(
        json["components"]["schemas"]["Registration"]["required"],
        serde_json::json!(["ServiceName", "ServiceURL"])
    );
}
