//! The portal with two grading instances (one grade book on disk): one is
//! killed with SIGKILL while pages load, and no page load shows an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::common::*;

const SOON: Duration = Duration::from_secs(20);

async fn load(client: &reqwest::Client, url: String) -> (u16, String) {
    let r = client
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_grading_instance_shows_the_user_no_error_page() {
    let reg = registry(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = grades_service(dir.path(), &reg.url, &[]).await;
    let mut b = grades_service(dir.path(), &reg.url, &[]).await;
    let c = grades_service(dir.path(), &reg.url, &[]).await;
    let portal = portal_service(&reg.url).await;
    eventually(
        SOON,
        "the portal to know all three grading instances",
        || async {
            let text = reqwest::get(format!("{}/metrics", portal.url))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("rollcall_sdk_providers{service=\"GradingService\"} 3")
                .then_some(())
        },
    )
    .await;
    let client = reqwest::Client::new();

    // 1. The portal on its own: the registry is frozen (SIGSTOP), so nobody
    //    tells the portal that `a` dies; every call that picks it is refused
    //    and must go to another instance.
    reg.signal("STOP");
    a.kill();
    for i in 0..30 {
        let (status, html) = load(&client, format!("{}/students/{}", portal.url, 1 + i % 5)).await;
        assert_eq!(status, 200, "page load {i} showed an error: {html}");
    }
    // It met the dead instance, went to another, and then (reported as
    // failing) skipped it: one failover, not one per page.
    let failovers = metric(&portal.url, "rollcall_portal_grading_failovers_total")
        .await
        .unwrap();
    assert!(
        failovers >= 1.0,
        "the portal never had to fail over ({failovers})"
    );
    assert!(
        failovers <= 3.0,
        "a failing instance is skipped, not retried on every page ({failovers})"
    );
    reg.signal("CONT");

    // 2. The whole system: a user clicks around continuously while `b` is
    //    killed; the registry notices and tells the portal.
    let started = Instant::now();
    let mut loads = 0;
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(3) {
        if !killed && started.elapsed() > Duration::from_millis(500) {
            b.kill();
            killed = true;
        }
        for path in ["/students", "/students/2"] {
            let (status, html) = load(&client, format!("{}{path}", portal.url)).await;
            assert_eq!(
                status,
                200,
                "an error page after {:?}: {html}",
                started.elapsed()
            );
            assert!(html.contains("Li Si"));
            loads += 1;
        }
    }
    assert!(killed && loads > 20, "{loads} page loads");

    // The survivor serves everything, writes included.
    let r = client
        .post(format!("{}/students/2/grades", portal.url))
        .form(&[
            ("title", "After the crash"),
            ("type", "Quiz"),
            ("score", "77"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "followed the redirect to the student page");
    assert!(r.text().await.unwrap().contains("After the crash"));
    let survivor = reqwest::get(format!("{}/students/2", c.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(survivor.contains("After the crash"));
}
