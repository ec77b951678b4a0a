//! The classic protocol (docs/PROTOCOL.md §1) against the real `rollcall registry`
//! process, driven as raw HTTP + JSON the way the original Go clients do it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn classic_registration_answers_200_and_the_catalog_shows_health() {
    let reg = registry(FAST_CHECKS).await;
    let fake = FakeService::start().await;
    // Go field casing and `null` for RequiredServices, exactly as the original
    // client sends it.
    let response = register_raw(&reg.url, &fake.registration("LogService", &[])).await;
    assert_eq!(response.status(), 200);
    let entry = instance(&reg.url, &fake.url).await.expect("listed");
    assert_eq!(entry["ServiceName"], "LogService");
    // In discovery at once; `unchecked` until its first check (run at once)
    // has finished, then `passing`.
    assert_eq!(entry["InDiscovery"], true);
    assert!(
        entry["Status"] == "unchecked" || entry["Status"] == "passing",
        "{entry}"
    );
    // It is being checked: a last check time and latency appear.
    let checked = eventually(SOON, "a completed check", || async {
        let e = instance(&reg.url, &fake.url).await?;
        (!e["LastCheck"].is_null()).then_some(e)
    })
    .await;
    assert_eq!(checked["Status"], "passing");
    assert!(checked["LastCheckLatencyMs"].as_f64().is_some());
    assert!(fake.heartbeats() >= 1);
}

#[tokio::test]
async fn field_names_match_case_insensitively_with_the_updated_alias() {
    let reg = registry(&[]).await;
    let fake = FakeService::start().await;
    let body = json!({
        "servicename": "Grading_Service",
        "serviceUrl": fake.url,
        "requiredservices": ["Log_Service"],
        "ServiceUpdatedURL": format!("{}/services", fake.url),
        "somethingElse": {"ignored": true},
    });
    assert_eq!(register_raw(&reg.url, &body).await.status(), 200);
    let entry = instance(&reg.url, &fake.url).await.unwrap();
    assert_eq!(entry["RequiredServices"], json!(["Log_Service"]));
    assert_eq!(entry["ServiceUpdateURL"], format!("{}/services", fake.url));
    // The update URL was understood: the initial patch arrived.
    assert_eq!(fake.patches().len(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_leaves_nothing_behind() {
    let reg = registry(&[]).await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("{}/services", reg.url))
            .body(body)
            .timeout(SOON)
            .send()
    };
    let cases = [
        (
            r#"{"ServiceName": "A", "ServiceURL": "#.to_owned(),
            "malformed_json",
        ),
        ("not json at all".to_owned(), "malformed_json"),
        (
            r#"{"ServiceURL": "http://127.0.0.1:1"}"#.to_owned(),
            "missing_field",
        ),
        (r#"{"ServiceName": "A"}"#.to_owned(), "missing_field"),
        (
            r#"{"ServiceName": "", "ServiceURL": "http://127.0.0.1:1"}"#.to_owned(),
            "missing_field",
        ),
        (
            r#"{"ServiceName": "A", "ServiceURL": "127.0.0.1:1"}"#.to_owned(),
            "invalid_url",
        ),
        (
            r#"{"ServiceName": "A", "ServiceURL": "ftp://h/x"}"#.to_owned(),
            "invalid_url",
        ),
        (
            r#"{"ServiceName": "A", "ServiceURL": "http://127.0.0.1:1", "HeartbeatURL": "::nope"}"#
                .to_owned(),
            "invalid_url",
        ),
        (
            r#"{"ServiceName": "A", "ServiceURL": "http://127.0.0.1:1", "RequiredServices": "B"}"#
                .to_owned(),
            "invalid_registration",
        ),
        ("[]".to_owned(), "invalid_registration"),
    ];
    for (body, code) in cases {
        let (status, got) = error_code(post(body.clone()).await.unwrap()).await;
        assert_eq!((status, got.as_str()), (400, code), "for {body}");
    }
    // A 10 MB body is refused with 413 before it is parsed.
    let huge = format!(
        r#"{{"ServiceName": "A", "ServiceURL": "http://127.0.0.1:1", "Pad": "{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let (status, code) = error_code(post(huge).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Wrong methods: 405 with a JSON body and an Allow header; unknown
    // routes: 404 with a JSON body.
    for (method, path, expected) in [
        (
            reqwest::Method::PUT,
            "/services",
            (405, "method_not_allowed"),
        ),
        (
            reqwest::Method::PATCH,
            "/services",
            (405, "method_not_allowed"),
        ),
        (reqwest::Method::GET, "/nope", (404, "not_found")),
    ] {
        let response = client
            .request(method, format!("{}{path}", reg.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers().contains_key("allow"), expected.0 == 405);
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), expected);
    }
    // Nothing was registered by any of it, the registry still answers, and it
    // counted every rejection (10 bodies, one 413, two 405s, one 404).
    assert!(catalog(&reg.url).await.is_empty());
    let metrics = get_text(&format!("{}/metrics", reg.url)).await.unwrap();
    assert!(
        metrics.contains("rollcall_registry_rejected_requests_total 14"),
        "{metrics}"
    );
}

#[tokio::test]
async fn deregistration_is_200_then_404_and_dependents_get_removed() {
    let reg = registry(&[]).await;
    let log = FakeService::start().await;
    let grading = FakeService::start().await;
    register_ok(&reg.url, &log.registration("LogService", &[])).await;
    assert_eq!(
        register_raw(
            &reg.url,
            &grading.registration("GradingService", &["LogService"])
        )
        .await
        .status(),
        200
    );
    assert_eq!(grading.providers("LogService"), vec![log.url.clone()]);
    // The body is the URL as text; surrounding white space is trimmed.
    let response = deregister_raw(&reg.url, &format!("  {}\n", log.url)).await;
    assert_eq!(response.status(), 200);
    wait_providers(&grading, "LogService", &[], SOON).await;
    let last = grading.patches().last().unwrap().1.clone();
    assert_eq!(last.removed.len(), 1);
    assert_eq!(last.removed[0].url.as_str(), log.url);
    assert!(instance(&reg.url, &log.url).await.is_none());
    // Again: it is gone, so 404 with a JSON error (the original said 500).
    let (status, code) = error_code(deregister_raw(&reg.url, &log.url).await).await;
    assert_eq!((status, code.as_str()), (404, "not_registered"));
    let (status, code) = error_code(deregister_raw(&reg.url, "not a url").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_url"));
}

#[tokio::test]
async fn a_dependent_registered_before_its_provider_is_told_when_it_arrives() {
    let reg = registry(&[]).await;
    let (grading, log) = dependent_first(&reg.url).await;
    // Its initial patch said: nothing yet.
    let first = grading.patches();
    assert_eq!(first.len(), 1);
    assert!(first[0].1.added.is_empty());
    register_raw(&reg.url, &log.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&log.url], SOON).await;
}

#[tokio::test]
async fn a_classic_client_knows_its_providers_the_moment_registration_answers() {
    let reg = registry(&[]).await;
    let log1 = FakeService::start().await;
    let log2 = FakeService::start().await;
    register_raw(&reg.url, &log1.registration("LogService", &[])).await;
    register_raw(&reg.url, &log2.registration("LogService", &[])).await;
    let grading = FakeService::start().await;
    let response = register_raw(
        &reg.url,
        &grading.registration("GradingService", &["LogService"]),
    )
    .await;
    assert_eq!(response.status(), 200);
    // No waiting: a classic client looks its providers up right away.
    let mut held = grading.providers("LogService");
    held.sort();
    let mut expected = vec![log1.url.clone(), log2.url.clone()];
    expected.sort();
    assert_eq!(held, expected);
}

#[tokio::test]
async fn registering_one_url_twice_keeps_one_instance_and_notifies_once() {
    let reg = registry(&[]).await;
    let (grading, log) = dependent_first(&reg.url).await;
    register_ok(&reg.url, &log.registration("LogService", &[])).await;
    register_ok(&reg.url, &log.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&log.url], SOON).await;
    let entries: Vec<_> = catalog(&reg.url)
        .await
        .into_iter()
        .filter(|i| i["ServiceURL"] == log.url.as_str())
        .collect();
    assert_eq!(entries.len(), 1);
    // A third registration, then a marker change, so that any stray duplicate
    // would have arrived before the marker.
    register_raw(&reg.url, &log.registration("LogService", &[])).await;
    let marker = FakeService::start().await;
    register_raw(&reg.url, &marker.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&log.url, &marker.url], SOON).await;
    let adds_of_log = grading
        .patches()
        .iter()
        .flat_map(|(_, p)| p.added.clone())
        .filter(|e| e.url.as_str() == log.url)
        .count();
    assert_eq!(adds_of_log, 1, "one notification for one instance");
}

#[tokio::test]
async fn a_rejected_registration_leaves_nothing_behind() {
    let reg = registry(&[]).await;
    let grading = FakeService::start().await;
    register_raw(
        &reg.url,
        &grading.registration("GradingService", &["LogService"]),
    )
    .await;
    // The original stored a registration before failing on it; here a 400
    // changes nothing: no instance, no patch to dependents.
    let bad = json!({"ServiceName": "LogService", "ServiceURL": "http://127.0.0.1:9", "HeartbeatURL": "gopher://x"});
    assert_eq!(register_raw(&reg.url, &bad).await.status(), 400);
    let good = FakeService::start().await;
    register_raw(&reg.url, &good.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&good.url], SOON).await;
    assert_eq!(catalog(&reg.url).await.len(), 2);
    assert!(grading.patches().iter().all(|(_, p)| {
        p.added
            .iter()
            .all(|e| e.url.as_str() != "http://127.0.0.1:9")
    }));
}

#[tokio::test]
async fn patches_carry_the_catalog_revision_and_events_are_listed() {
    let reg = registry(&[]).await;
    let (grading, log) = dependent_first(&reg.url).await;
    register_raw(&reg.url, &log.registration("LogService", &[])).await;
    wait_providers(&grading, "LogService", &[&log.url], SOON).await;
    let revisions: Vec<u64> = grading
        .patches()
        .iter()
        .map(|(_, p)| p.revision.unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    let events = events(&reg.url).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["registered", "registered"]);
    let openapi: serde_json::Value = reqwest::get(format!("{}/openapi.json", reg.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/services",
        "/healthz",
        "/metrics",
        "/v1/events",
        "/v1/watch",
        "/v1/maintenance",
        "/dashboard/service/{name}",
        "/dashboard/instance",
        "/openapi.json",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
}
