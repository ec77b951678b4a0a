//! The dashboard's pages over HTTP, against the real binary: search, services
//! that need attention first, folding past a handful of services, the pages
//! of a service and of an instance, repeated events folded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

async fn page(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The `data-service` of every instance group on the page, in order, with
/// whether it is open.
fn groups(html: &str) -> Vec<(String, bool)> {
    html.match_indices("<details class=\"service")
        .map(|(at, _)| {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            let name = tag.split("data-service=\"").nth(1).unwrap();
            let name = name[..name.find('"').unwrap()].to_owned();
            (name, tag.ends_with(" open"))
        })
        .collect()
}

#[tokio::test]
async fn the_dashboard_puts_trouble_first_folds_the_rest_and_searches() {
    let reg = registry(FAST_CHECKS).await;
    let mut fakes = Vec::new();
    for name in [
        "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Grading",
    ] {
        let fake = FakeService::start().await;
        register_raw(&reg.url, &fake.registration(name, &["Grading"])).await;
        fakes.push(fake);
    }
    fakes[3].set_heartbeat(Mode::Status(500));
    wait_status(&reg.url, &fakes[3].url, "critical").await;
    let (status, html) = page(&format!("{}/", reg.url)).await;
    assert_eq!(status, 200);
    let shown = groups(&html);
    assert_eq!(shown.len(), 7);
    assert_eq!(shown[0], ("Delta".to_owned(), true), "trouble first, open");
    assert!(
        shown[1..].iter().all(|(_, open)| !open),
        "the rest folded: {shown:?}"
    );
    assert!(html.contains(r#"id="q""#), "a search box");
    assert!(
        html.contains("no instance of it is passing"),
        "the legend has the red dashed edge"
    );

    // Search: by name or URL, ignoring case; works without script.
    let (_, html) = page(&format!("{}/?q=foxt", reg.url)).await;
    let shown = groups(&html);
    assert_eq!(shown, [("Foxtrot".to_owned(), true)]);
    let port = port_of(&fakes[0].url);
    let (_, html) = page(&format!("{}/dashboard/live?q={port}", reg.url)).await;
    assert_eq!(groups(&html), [("Alpha".to_owned(), true)]);
    let (_, html) = page(&format!("{}/?q=nothing-like-this", reg.url)).await;
    assert!(html.contains("Nothing matches"));
    let (status, _) = page(&format!("{}/?qq=x", reg.url)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_service_and_an_instance_have_pages_of_their_own() {
    let reg = registry(FAST_CHECKS).await;
    let grading = FakeService::start().await;
    let portal = FakeService::start().await;
    register_raw(&reg.url, &grading.registration("Grading", &[])).await;
    register_raw(&reg.url, &portal.registration("Portal", &["Grading"])).await;
    // Flap a few times: failures, recoveries, repeated events.
    for _ in 0..3 {
        grading.set_heartbeat(Mode::Status(503));
        wait_status(&reg.url, &grading.url, "critical").await;
        grading.set_heartbeat(Mode::Ok);
        wait_status(&reg.url, &grading.url, "passing").await;
    }
    let (status, html) = page(&format!("{}/dashboard/service/Grading", reg.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains(&grading.url));
    let required_by = &html[html.find(r#"id="required-by""#).unwrap()..];
    assert!(required_by.contains("Portal") && required_by.contains(&portal.url));
    // The three failures are one row with a count.
    assert!(html.contains("×3"), "{html}");

    let url: String = url::form_urlencoded::byte_serialize(grading.url.as_bytes()).collect();
    let (status, html) = page(&format!("{}/dashboard/instance?url={url}", reg.url)).await;
    assert_eq!(status, 200);
    let checks = &html[html.find(r#"id="checks""#).unwrap()..];
    assert!(
        checks.contains("passed") && checks.contains("failed"),
        "history"
    );
    let error = &html[html.find(r#"id="last-error""#).unwrap()..];
    assert!(
        error.contains("HTTP 503"),
        "the last error, after recovery too"
    );

    let (status, _) = page(&format!("{}/dashboard/service/Nobody", reg.url)).await;
    assert_eq!(status, 404);
    let (status, _) = page(&format!(
        "{}/dashboard/instance?url=http%3A%2F%2Fnope",
        reg.url
    ))
    .await;
    assert_eq!(status, 404);
}

/// The messages of rows on a page, in order (the text of each
/// `class="msg"` element, or each log-panel row's message cell).
fn in_order<'a>(html: &str, texts: &[&'a str]) -> Vec<&'a str> {
    let mut found: Vec<(usize, &str)> = texts
        .iter()
        .filter_map(|t| html.find(t).map(|at| (at, *t)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, t)| t).collect()
}

#[tokio::test]
async fn log_rows_show_their_fields_inline_a_date_when_not_today_and_run_in_time_order() {
    let reg = registry(FAST_CHECKS).await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg.url, &[]).await;
    wait_status(&reg.url, &log.url, "passing").await;
    // Arrival order is not time order: the late batch holds older records.
    let now = rollcall_proto::Timestamp::system_now();
    let yesterday = now.minus(std::time::Duration::from_secs(86_400));
    let batch = serde_json::json!([
        {"service": "Grades", "message": "newest saved", "ts": now.to_rfc3339(),
         "fields": {"student": 7, "score": 85}},
        {"service": "Grades", "message": "yesterday saved", "ts": yesterday.to_rfc3339()},
        {"service": "Grades", "message": "middle saved",
         "ts": now.minus(std::time::Duration::from_secs(60)).to_rfc3339()},
    ]);
    let posted = reqwest::Client::new()
        .post(format!("{}/v1/logs", log.url))
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let day = yesterday.to_rfc3339();
    let date = &day[5..10];
    let messages = ["newest saved", "middle saved", "yesterday saved"];

    let (_, explorer) = page(&format!("{}/?service=Grades", log.url)).await;
    assert_eq!(
        in_order(&explorer, &messages),
        messages,
        "newest first by time"
    );
    assert!(explorer.contains("score=85 student=7"), "fields inline");
    assert!(
        explorer.contains(&format!(">{date} ")),
        "yesterday's date shown"
    );

    eventually(
        std::time::Duration::from_secs(20),
        "the dashboard's log panel to show them",
        || async {
            let (_, html) = page(&format!("{}/dashboard/live", reg.url)).await;
            let at = html.find(r#"id="logs""#)?;
            let panel = &html[at..];
            (in_order(panel, &messages) == messages
                && panel.contains("score=85 student=7")
                && panel.contains(&format!(">{date} ")))
            .then_some(())
        },
    )
    .await;
}
