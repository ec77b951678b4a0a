//! The grading service's routes in process (no socket): bad input is a 4xx
//! whose JSON error names the field, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rollcall_grades::http::{AppState, router};
use rollcall_grades::store::GradeStore;
use rollcall_testkit::router::assert_refused;

/// Method, URI, body, expected status, code, and the field the error names.
type Case<'a> = (&'a str, &'a str, &'a str, u16, &'a str, Option<&'a str>);

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = GradeStore::open(dir.path(), true).unwrap();
    let router = router(AppState {
        store: store.clone(),
        metrics: Arc::default(),
    });
    let before = store.student(1).await.unwrap().grades.len();
    let cases: &[Case] = &[
        (
            "POST",
            "/students/1/grades",
            "{",
            400,
            "malformed_json",
            None,
        ),
        (
            "POST",
            "/students/1/grades",
            r#"{"Title":"Q","Type":"Quiz","Score":101}"#,
            400,
            "invalid_field",
            Some("Score"),
        ),
        (
            "POST",
            "/students/1/grades",
            r#"{"Title":"","Type":"Quiz","Score":1}"#,
            400,
            "invalid_field",
            Some("Title"),
        ),
        (
            "POST",
            "/students/1/grades",
            r#"{"Title":"Q","Type":"Lab","Score":1}"#,
            400,
            "invalid_field",
            Some("Type"),
        ),
        (
            "POST",
            "/students/1/grades",
            r#"{"Title":"Q","Type":"Quiz"}"#,
            400,
            "missing_field",
            Some("Score"),
        ),
        (
            "POST",
            "/students/99/grades",
            r#"{"Title":"Q","Type":"Quiz","Score":1}"#,
            404,
            "no_such_student",
            None,
        ),
        ("GET", "/students/abc", "", 404, "no_such_student", None),
        ("GET", "/students/1?limit=0", "", 400, "invalid_query", None),
        ("GET", "/students/1?limt=5", "", 400, "invalid_query", None),
        (
            "PUT",
            "/students/1",
            r#"{"FirstName":"A"}"#,
            400,
            "missing_field",
            Some("LastName"),
        ),
        (
            "DELETE",
            "/students/1/grades/999",
            "",
            404,
            "no_such_grade",
            None,
        ),
        ("PATCH", "/students", "", 405, "method_not_allowed", None),
    ];
    for (method, uri, body, status, code, field) in cases {
        let answer = assert_refused(&router, (method, uri, body), *status, code).await;
        if let Some(field) = field {
            assert_eq!(answer.json()["error"]["field"], *field, "{}", answer.body);
        }
    }
    assert_eq!(store.student(1).await.unwrap().grades.len(), before);
}

/// The document comes from the same list as the router: the routes read off
/// the router are exactly the documented ones, and the served document adds
/// the SDK's routes (checked against the SDK's router in its own crate).
#[tokio::test]
async fn the_served_openapi_document_covers_every_route_the_router_answers() {
    use rollcall_testkit::openapi::assert_service_documented;
    let dir = tempfile::tempdir().unwrap();
    let store = GradeStore::open(dir.path(), false).unwrap();
    let served = router(AppState {
        store,
        metrics: Arc::default(),
    });
    let served_doc = assert_service_documented(
        &served,
        rollcall_grades::http::api,
        Some(rollcall_sdk::service::openapi()),
    )
    .await;
    assert_eq!(
        served_doc["components"]["schemas"]["Grade"]["properties"]["Score"]["maximum"],
        serde_json::json!(100)
    );
}
