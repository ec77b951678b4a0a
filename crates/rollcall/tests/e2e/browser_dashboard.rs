//! The registry's dashboard in a real browser, over `rollcall up`: all four
//! services and the edges between them, and a service turning critical when
//! it is stopped — on the open page, without reloading it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::*;
use fantoccini::Locator;

const SOON: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_system_and_a_stopped_service_turning_critical() {
    let up = Up::start(&[]).await;
    let registry = up.url("registry").to_owned();
    eventually(SOON, "all services passing", || async {
        let c = catalog(&registry).await;
        (c.iter().filter(|i| i["Status"] == "passing").count() == 3).then_some(())
    })
    .await;
    // Let the services' start-up logs reach the log service.
    let log = up.url("log").to_owned();
    eventually(SOON, "logs to arrive", || async {
        (!query_logs(&log, "service=Portal").await.is_empty()).then_some(())
    })
    .await;

    let b = Browser::start(1280, 1100).await;
    b.client.goto(&format!("{registry}/")).await.unwrap();
    let header = b.text("header").await;
    assert!(header.contains("rollcall registry"), "{header}");
    for service in ["LogService", "GradingService", "Portal"] {
        let node = b
            .client
            .find(Locator::Css(&format!("g.node[data-service='{service}']")))
            .await
            .unwrap();
        assert_eq!(
            node.attr("data-health").await.unwrap().as_deref(),
            Some("healthy"),
            "{service}"
        );
    }
    for (from, to) in [
        ("Portal", "GradingService"),
        ("Portal", "LogService"),
        ("GradingService", "LogService"),
    ] {
        b.client
            .find(Locator::Css(&format!(
                "g.edge[data-from='{from}'][data-to='{to}']"
            )))
            .await
            .unwrap_or_else(|_| panic!("an edge {from} → {to}"));
    }
    let logs = b.text("#logs").await;
    assert!(
        logs.contains("Portal") || logs.contains("GradingService"),
        "{logs}"
    );
    // The live connection is up.
    b.wait_for(Locator::XPath("//span[@id='conn' and text()='live']"))
        .await;
    b.screenshot("dashboard.png").await;

    // Mark the page: a reload would lose the mark.
    b.client
        .execute("window.rollcallMark = 42;", vec![])
        .await
        .unwrap();
    let grades = up.pid("grades");
    signal_pid(grades, "STOP");
    b.wait_for(Locator::Css(
        "g.node[data-service='GradingService'][data-health='down']",
    ))
    .await;
    let badge = b
        .client
        .find(Locator::Css(&format!(
            "tr[data-url='{}'] .badge",
            up.url("grades")
        )))
        .await
        .unwrap();
    assert_eq!(badge.text().await.unwrap(), "critical");
    let edge = b
        .client
        .find(Locator::Css(
            "g.edge[data-from='Portal'][data-to='GradingService']",
        ))
        .await
        .unwrap();
    assert!(
        edge.attr("class")
            .await
            .unwrap()
            .unwrap()
            .contains("broken")
    );
    let events = b.text("#events").await;
    assert!(events.contains("critical"), "{events}");
    let mark = b
        .client
        .execute("return window.rollcallMark;", vec![])
        .await
        .unwrap();
    assert_eq!(
        mark,
        serde_json::json!(42),
        "the page updated without reloading"
    );
    b.screenshot("dashboard-critical.png").await;
    signal_pid(grades, "CONT");

    // The registry gone: stale data does not look healthy — a banner, the
    // page greyed out, the pill says so.
    let lost = b.client.find(Locator::Id("lost")).await.unwrap();
    assert!(!lost.is_displayed().await.unwrap(), "no banner while live");
    signal_pid(up.pid("registry"), "STOP");
    b.wait_for(Locator::XPath(
        "//span[@id='conn' and text()='reconnecting…']",
    ))
    .await;
    assert!(lost.is_displayed().await.unwrap(), "the banner shows");
    let greyed = b
        .client
        .execute("return document.body.classList.contains('lost');", vec![])
        .await
        .unwrap();
    assert_eq!(greyed, serde_json::json!(true));
    signal_pid(up.pid("registry"), "CONT");
    b.wait_for(Locator::XPath("//span[@id='conn' and text()='live']"))
        .await;
    assert!(!lost.is_displayed().await.unwrap(), "gone once it is back");
    b.close().await;
}
