//! The portal's pages, in process: a real registry, a real grading service and
//! the portal, each on port 0, talking over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rollcall_grades::GradesConfig;
use rollcall_portal::PortalConfig;
use rollcall_testkit::{TestRegistry, eventually};
use tokio_util::sync::CancellationToken;

const SOON: Duration = Duration::from_secs(15);

struct Running {
    url: String,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(SOON, self.done)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn grades(registry: &str, dir: &std::path::Path) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = GradesConfig {
        registry: registry.to_owned(),
        ..GradesConfig::for_tests(dir.to_owned())
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let done = tokio::spawn(async move {
        rollcall_grades::run(config, listener, token, None)
            .await
            .unwrap();
    });
    Running { url, stop, done }
}

async fn portal(registry: &str) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = PortalConfig {
        addr: listener.local_addr().unwrap(),
        registry: registry.to_owned(),
        name: "Portal".into(),
        grading_service: "GradingService".into(),
        log_service: "LogService".into(),
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let done = tokio::spawn(async move {
        rollcall_portal::run(config, listener, token, None)
            .await
            .unwrap();
    });
    Running { url, stop, done }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(url).form(form).send().await.unwrap()
}

/// A registry, a grading service with the demo students, and a portal that
/// already knows the grading service.
async fn stack() -> (TestRegistry, tempfile::TempDir, Running, Running) {
    let registry = TestRegistry::in_memory().await;
    let dir = tempfile::tempdir().unwrap();
    let g = grades(&registry.url, dir.path()).await;
    let p = portal(&registry.url).await;
    eventually(SOON, "the portal to find the grading service", || async {
        let (status, _) = get(&format!("{}/students", p.url)).await;
        (status == 200).then_some(())
    })
    .await;
    (registry, dir, g, p)
}

#[tokio::test]
async fn the_class_list_shows_each_average_and_the_class_average() {
    let (_r, _d, _g, p) = stack().await;
    let r = client().get(&p.url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/students");
    let (status, html) = get(&format!("{}/students", p.url)).await;
    assert_eq!(status, 200);
    // Zhang San: 85, 94, 82 → 87.0. Student averages: 87.0, 84.0, 73.0, 97.0, 75.3.
    assert!(html.contains(r#"<a href="/students/1">Zhang San</a>"#));
    assert!(html.contains(">87.0<"));
    assert!(html.contains(r#"<b id="class-average">83.3</b>"#), "{html}");
    assert!(html.contains(r#"href="/static/style.css""#));
    let (status, css) = get(&format!("{}/static/style.css", p.url)).await;
    assert_eq!(status, 200);
    assert!(css.contains("@media"), "the layout adapts to small screens");
}

#[tokio::test]
async fn adding_a_grade_redirects_and_shows_it_with_the_new_average() {
    let (_r, _d, _g, p) = stack().await;
    let (status, html) = get(&format!("{}/students/3", p.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Wang Wu") && html.contains("Midterm Test") && html.contains(">73.0<"));
    let r = post_form(
        &format!("{}/students/3/grades", p.url),
        &[("title", "Quiz 3"), ("type", "Exam"), ("score", "93")],
    )
    .await;
    assert_eq!(r.status(), 303, "redirect after POST");
    assert_eq!(r.headers()["location"], "/students/3");
    let (_, html) = get(&format!("{}/students/3", p.url)).await;
    assert!(html.contains("<td>Quiz 3</td>"));
    // (72 + 79 + 68 + 93) / 4 = 78.0
    assert!(html.contains(">78.0<"), "{html}");
}

#[tokio::test]
async fn an_invalid_grade_shows_the_error_inline_and_keeps_what_was_typed() {
    let (_r, _d, _g, p) = stack().await;
    let r = post_form(
        &format!("{}/students/1/grades", p.url),
        &[
            ("title", "Essay <draft>"),
            ("type", "Homework"),
            ("score", "150"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"id="score-error">Enter a score from 0 to 100."#),
        "{html}"
    );
    assert!(
        html.contains(r#"value="Essay &#60;draft&#62;""#)
            || html.contains(r#"value="Essay &lt;draft&gt;""#),
        "typed title kept, escaped: {html}"
    );
    assert!(html.contains(r#"value="150""#), "typed score kept");
    assert!(
        html.contains(r#"<option value="Homework" selected>"#),
        "chosen type kept"
    );
    assert!(
        !html.contains("id=\"title-error\""),
        "only the wrong field is marked"
    );
    // Every wrong field at once.
    let r = post_form(
        &format!("{}/students/1/grades", p.url),
        &[("title", ""), ("type", "Essay"), ("score", "abc")],
    )
    .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    for id in ["title-error", "type-error", "score-error"] {
        assert!(html.contains(id), "{id}");
    }
    // Nothing was stored.
    let (_, html) = get(&format!("{}/students/1", p.url)).await;
    assert!(!html.contains("Essay"));
}

#[tokio::test]
async fn grades_can_be_corrected_and_deleted_from_the_pages() {
    let (_r, _d, _g, p) = stack().await;
    let (status, html) = get(&format!("{}/students/1/grades/1/edit", p.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"value="Quiz 1""#) && html.contains(r#"value="85""#));
    let r = post_form(
        &format!("{}/students/1/grades/1", p.url),
        &[("title", "Quiz 1"), ("type", "Quiz"), ("score", "-3")],
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = post_form(
        &format!("{}/students/1/grades/1", p.url),
        &[
            ("title", "Quiz 1 (regraded)"),
            ("type", "Quiz"),
            ("score", "88"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let r = post_form(&format!("{}/students/1/grades/2/delete", p.url), &[]).await;
    assert_eq!(r.status(), 303);
    let (_, html) = get(&format!("{}/students/1", p.url)).await;
    assert!(html.contains("Quiz 1 (regraded)"));
    assert!(!html.contains("Final Exam"));
    // (88 + 82) / 2
    assert!(html.contains(">85.0<"));
}

#[tokio::test]
async fn names_are_escaped_and_unknown_pages_are_404() {
    let (_r, _d, g, p) = stack().await;
    let r = reqwest::Client::new()
        .post(format!("{}/students", g.url))
        .body(r#"{"FirstName": "<script>alert(1)</script>", "LastName": "O'Brien & Co"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, html) = get(&format!("{}/students", p.url)).await;
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
    for path in [
        "/students/999",
        "/students/abc",
        "/students/1/grades/999/edit",
    ] {
        let (status, html) = get(&format!("{}{path}", p.url)).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains("Not found"));
    }
    // Adding a student from the portal, with an error first.
    let r = post_form(
        &format!("{}/students", p.url),
        &[("first_name", "Grace"), ("last_name", " ")],
    )
    .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"value="Grace""#) && html.contains("Enter a last name"));
    let r = post_form(
        &format!("{}/students", p.url),
        &[("first_name", "Grace"), ("last_name", "Hopper")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, html) = get(&format!(
        "{}{}",
        p.url,
        r.headers()["location"].to_str().unwrap()
    ))
    .await;
    assert!(html.contains("Grace Hopper"));
}

#[tokio::test]
async fn without_a_grading_service_the_portal_says_503_and_recovers_by_itself() {
    let registry = TestRegistry::in_memory().await;
    let p = portal(&registry.url).await;
    let r = client()
        .get(format!("{}/students", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let html = r.text().await.unwrap();
    assert!(html.contains("The grading service is unavailable"));
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="5">"#),
        "it reloads itself"
    );
    // A grading service registers: the same page works, nothing restarted.
    let dir = tempfile::tempdir().unwrap();
    let g = grades(&registry.url, dir.path()).await;
    eventually(SOON, "the portal to recover", || async {
        let (status, _) = get(&format!("{}/students", p.url)).await;
        (status == 200).then_some(())
    })
    .await;
    // And when it stops (deregistering), the portal says so again.
    g.stop().await;
    eventually(SOON, "the portal to notice", || async {
        let (status, _) = get(&format!("{}/students", p.url)).await;
        (status == 503).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn requests_are_spread_over_two_grading_instances() {
    let registry = TestRegistry::in_memory().await;
    let dir = tempfile::tempdir().unwrap();
    let a = grades(&registry.url, dir.path()).await;
    let b = grades(&registry.url, dir.path()).await;
    let p = portal(&registry.url).await;
    eventually(SOON, "the portal to know both", || async {
        let services = registry.services().await;
        let grading = services
            .iter()
            .filter(|s| s["ServiceName"] == "GradingService")
            .count();
        (grading == 2).then_some(())
    })
    .await;
    for _ in 0..20 {
        let (status, _) = get(&format!("{}/students/1", p.url)).await;
        assert_eq!(status, 200);
    }
    let requests = |url: String| async move {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("rollcall_grades_requests_total "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let (on_a, on_b) = (requests(a.url.clone()).await, requests(b.url.clone()).await);
    assert!(on_a >= 5 && on_b >= 5, "a served {on_a}, b served {on_b}");
}
