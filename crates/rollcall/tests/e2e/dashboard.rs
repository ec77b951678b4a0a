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
