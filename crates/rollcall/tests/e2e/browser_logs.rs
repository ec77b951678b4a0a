//! The log explorer in a real browser (headless Chromium) against a real
//! log service: filter by service and level, search a field's value, open
//! a record, and see a new record arrive on the live tail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::Locator;

use crate::common::browser::Browser;
use crate::common::*;

const SOON: Duration = Duration::from_secs(20);

async fn post_batch(base: &str, records: serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/logs"))
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// The messages of the records the page shows, top to bottom — read in one
/// script, so a record the live tail adds (or a page that is replaced)
/// meanwhile cannot leave a stale element behind.
async fn messages(b: &Browser) -> Vec<String> {
    let found = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('details.rec .msg'), e => e.innerText.trim());",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

async fn fill(b: &Browser, css: &str, with: &str) {
    let input = b.client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(with).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_filters_searches_opens_a_record_and_tails_live() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let base = log.url.clone();
    post_batch(
        &base,
        serde_json::json!([
            {"service": "Checkout", "level": "info", "message": "order placed", "fields": {"order.id": 1001}},
            {"service": "Checkout", "level": "error", "message": "payment declined", "fields": {"order.id": 1002, "card": "visa"}},
            {"service": "Checkout", "level": "warn", "message": "slow payment provider", "fields": {"order.id": 1003, "ms": 812}},
            {"service": "Grading", "level": "error", "message": "student 7 not found", "fields": {"student": 7}},
            {"service": "Grading", "level": "info", "message": "grade added"},
        ]),
    )
    .await;
    let b = Browser::start(1280, 800).await;
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.wait_for(Locator::Css("details.rec")).await;
    assert_eq!(messages(&b).await.len(), 5);

    // Service and level pickers: Checkout, warn and above.
    b.client
        .find(Locator::Css("#service"))
        .await
        .unwrap()
        .select_by_value("Checkout")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#level"))
        .await
        .unwrap()
        .select_by_value("warn")
        .await
        .unwrap();
    b.click(Locator::Css("#search")).await;
    eventually(SOON, "the filtered page", || async {
        let m = messages(&b).await;
        (m == ["slow payment provider", "payment declined"]).then_some(())
    })
    .await;
    // The query is the page's address: shareable.
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.query(),
        Some("service=Checkout&level=warn&since=&until=&contains="),
        "{url}"
    );
    let shared = reqwest::get(url.as_str())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shared.contains("slow payment provider") && !shared.contains("order placed"));

    // Search a field's value; open the record to see its fields.
    fill(&b, "#contains", "order.id=1002").await;
    b.click(Locator::Css("#search")).await;
    eventually(SOON, "the search result", || async {
        (messages(&b).await == ["payment declined"]).then_some(())
    })
    .await;
    b.click(Locator::Css("details.rec summary")).await;
    let fields = b.text("details.rec[open] dl.fields").await;
    assert!(
        fields.contains("card") && fields.contains("visa"),
        "{fields}"
    );
    assert!(fields.contains("1002"), "{fields}");
    b.screenshot("log-explorer.png").await;

    // Live tail: all Checkout records; a new one arrives without a reload.
    b.client
        .goto(&format!("{base}/?service=Checkout"))
        .await
        .unwrap();
    b.wait_for(Locator::Css("details.rec")).await;
    b.click(Locator::Css("#tail")).await;
    eventually(SOON, "the tail to connect", || async {
        (b.text("#tail-state").await == "live").then_some(())
    })
    .await;
    post_batch(
        &base,
        serde_json::json!([
            {"service": "Grading", "message": "not for this view"},
            {"service": "Checkout", "level": "error", "message": "refund failed", "fields": {"order.id": 1004}},
        ]),
    )
    .await;
    eventually(SOON, "the new record on the tail", || async {
        let m = messages(&b).await;
        (m.first().map(String::as_str) == Some("refund failed")).then_some(m)
    })
    .await;
    let m = messages(&b).await;
    assert!(!m.iter().any(|x| x == "not for this view"), "{m:?}");
    assert_eq!(m.len(), 4, "{m:?}");
    b.click(Locator::Css("details.rec summary")).await;
    let fields = b.text("details.rec[open] dl.fields").await;
    assert!(fields.contains("1004"), "{fields}");
    b.screenshot("log-explorer-tail.png").await;
    b.close().await;

    // Without JavaScript the page is whole; a bad query says what is wrong.
    let bad = reqwest::get(format!("{base}/?level=loud")).await.unwrap();
    assert_eq!(bad.status(), 400);
    let page = bad.text().await.unwrap();
    assert!(
        page.contains("id=\"error\"") && page.contains("loud"),
        "{page}"
    );
}

#[tokio::test]
async fn a_tail_that_reconnects_with_last_event_id_goes_on_after_it() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let records: Vec<serde_json::Value> = (1..=5)
        .map(|i| serde_json::json!({"service": "Tail", "message": format!("line {i}")}))
        .collect();
    post_batch(&log.url, serde_json::Value::Array(records)).await;
    // As an EventSource reconnects after getting seq 3 (the page's cursor
    // was 1): records 4 and 5 come first, nothing before.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/logs/tail?service=Tail&cursor=1", log.url))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let ids = tokio::time::timeout(SOON, async {
        loop {
            let chunk = stream.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            let ids: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("id:"))
                .map(|id| id.trim().to_owned())
                .collect();
            if ids.len() >= 2 {
                return ids;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ids, ["4", "5"], "{text}");
}
