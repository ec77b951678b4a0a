//! Browsers cannot be turned against rollcall: a web page's cross-site
//! request (a CORS "simple" `text/plain` POST needs no preflight) is refused
//! with 403 by the registry, the log service, the grading service and the
//! portal, and changes nothing; a request naming a foreign `Host` (DNS
//! rebinding) is refused with 421. Clients that are not browsers send
//! neither header and are not affected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

async fn post(url: &str, body: String, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/plain")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn cross_site_writes_are_refused_by_every_service_and_change_nothing() {
    let logs_dir = tempfile::tempdir().unwrap();
    let grades_dir = tempfile::tempdir().unwrap();
    let reg = registry(&[]).await;
    let log = log_service(logs_dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    let grading = grades_service(grades_dir.path(), &reg.url, &["--no-demo-data"]).await;
    let portal = portal_service(&reg.url).await;
    let fake = FakeService::start().await;
    let writes = [
        (
            format!("{}/services", reg.url),
            fake.registration("Evil", &[]).to_string(),
        ),
        (format!("{}/log", log.url), "[Evil] - forged".to_owned()),
        (
            format!("{}/v1/logs", log.url),
            r#"[{"service":"Evil","message":"forged"}]"#.to_owned(),
        ),
        (
            format!("{}/students", grading.url),
            r#"{"FirstName":"Evil","LastName":"Page"}"#.to_owned(),
        ),
        (
            format!("{}/students", portal.url),
            "FirstName=Evil&LastName=Page".to_owned(),
        ),
    ];
    for (url, body) in &writes {
        for headers in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "null")][..],
            &[("sec-fetch-site", "cross-site")][..],
        ] {
            let (status, answer) = post(url, body.clone(), headers).await;
            assert_eq!(status, 403, "{url} with {headers:?}: {answer}");
            assert_eq!(answer["error"]["code"], "cross_site", "{url}");
        }
    }
    assert!(instance(&reg.url, &fake.url).await.is_none());
    assert!(all_logs(&log.url, "service=Evil").await.is_empty());
    let students: Vec<serde_json::Value> = get_json(&format!("{}/students", grading.url)).await;
    assert!(students.is_empty(), "{students:?}");

    // The registry's own pages, and clients that are not browsers, still work.
    let own = reg.url.clone();
    let (status, _) = post(
        &format!("{}/services", reg.url),
        fake.registration("Evil", &[]).to_string(),
        &[("origin", own.as_str())],
    )
    .await;
    assert_eq!(status, 200, "a same-origin write");
}

#[tokio::test]
async fn a_foreign_host_name_is_refused_and_localhost_is_not() {
    let reg = registry(&[]).await;
    let named = registry(&["--allowed-hosts", "registry.internal"]).await;
    let port = port_of(&reg.url).to_owned();
    for (registry, host, status) in [
        (&reg, format!("rebind.evil.example:{port}"), 421),
        (&reg, format!("localhost:{port}"), 200),
        (&named, "registry.internal:3000".to_owned(), 200),
    ] {
        let answer = reqwest::Client::new()
            .get(format!("{}/services", registry.url))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "Host: {host}");
    }
}
