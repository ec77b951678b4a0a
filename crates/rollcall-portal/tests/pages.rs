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
        membership: rollcall_sdk::args::Membership::at(registry).unwrap(),
        ..GradesConfig::for_tests(dir.to_owned())
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let done = tokio::spawn(async move {
        rollcall_grades::run(config, listener, token, None, || {})
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
        membership: rollcall_sdk::args::Membership::at(registry).unwrap(),
        name: "Portal".parse().unwrap(),
        grading_service: "GradingService".parse().unwrap(),
        log_service: "LogService".parse().unwrap(),
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
    assert!(html.contains("<td class=\"title\">Quiz 3</td>"));
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

#[tokio::test]
async fn a_grade_typed_while_grading_is_down_comes_back_unsaved_and_is_stored_once_later() {
    let (registry, dir, g, p) = stack().await;
    let (_, before) = get(&format!("{}/students/2", g.url)).await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    g.stop().await;
    eventually(SOON, "the portal to notice", || async {
        let (status, _) = get(&format!("{}/students", p.url)).await;
        (status == 503).then_some(())
    })
    .await;
    let typed = [("title", "Pop Quiz"), ("type", "Test"), ("score", "88.5")];
    let r = post_form(&format!("{}/students/2/grades", p.url), &typed).await;
    assert_eq!(r.status(), 503);
    let html = r.text().await.unwrap();
    assert!(html.contains("Not saved"), "{html}");
    assert!(html.contains("was not stored"), "{html}");
    assert!(!html.contains("Nothing you entered was lost"));
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a POST's answer never reloads itself"
    );
    assert!(html.contains(r#"value="Pop Quiz""#) && html.contains(r#"value="88.5""#));
    assert!(html.contains(r#"<option value="Test" selected>"#), "{html}");
    assert!(html.contains(r#"action="/students/2/grades""#));

    // Back again: the same submission is stored, once.
    let g = grades(&registry.url, dir.path()).await;
    eventually(SOON, "the portal to recover", || async {
        let (status, _) = get(&format!("{}/students", p.url)).await;
        (status == 200).then_some(())
    })
    .await;
    let r = post_form(&format!("{}/students/2/grades", p.url), &typed).await;
    assert_eq!(r.status(), 303);
    let (_, after) = get(&format!("{}/students/2", g.url)).await;
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    let titles = |s: &serde_json::Value| {
        s["Grades"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["Title"] == "Pop Quiz")
            .count()
    };
    assert_eq!(titles(&before), 0);
    assert_eq!(titles(&after), 1);
}

#[tokio::test]
async fn form_field_names_match_ignoring_case_as_the_classic_api_does() {
    let (_r, _d, g, p) = stack().await;
    let r = post_form(
        &format!("{}/students/4/grades", p.url),
        &[("Title", "Capital Quiz"), ("Type", "Quiz"), ("Score", "77")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, json) = get(&format!("{}/students/4", g.url)).await;
    assert!(json.contains("Capital Quiz"), "{json}");
    let r = post_form(
        &format!("{}/students", p.url),
        &[("FirstName", "Ada"), ("LastName", "Lovelace")],
    )
    .await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn grades_page_through_newest_first_in_the_api_and_the_portal() {
    let (_r, _d, g, p) = stack().await;
    let http = client();
    for i in 0..120 {
        let r = http
            .post(format!("{}/students/5/grades", g.url))
            .json(&serde_json::json!({"Title": format!("Drill {i}"), "Type": "Quiz", "Score": 50}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // The API: a page, newest first, with the totals of all grades.
    let (status, body) = get(&format!("{}/students/5?limit=10", g.url)).await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["Grades"].as_array().unwrap().len(), 10);
    assert_eq!(page["Grades"][0]["Title"], "Drill 119");
    let total = page["GradeCount"].as_u64().unwrap();
    assert_eq!(total, 123);
    let cursor = page["NextCursor"].as_i64().unwrap();
    let (_, body) = get(&format!("{}/students/5?limit=10&cursor={cursor}", g.url)).await;
    let next: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(next["Grades"][0]["Title"], "Drill 109");
    // Without a page asked for: the classic shape, every grade, oldest first.
    let (_, body) = get(&format!("{}/students/5", g.url)).await;
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["Grades"].as_array().unwrap().len(), 123);
    assert_ne!(all["Grades"][0]["Title"], "Drill 119");
    let (status, _) = get(&format!("{}/students/5?limit=0", g.url)).await;
    assert_eq!(status, 400);
    let (status, _) = get(&format!("{}/students/5?limt=5", g.url)).await;
    assert_eq!(status, 400, "unknown parameters are refused");

    // The portal: 50 a page, newest first, with the count and average of all.
    let (status, html) = get(&format!("{}/students/5", p.url)).await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<td class=\"title\">").count(), 50);
    assert!(html.contains(r#"<b id="grade-count">123</b>"#));
    let first = html.find("Drill 119").unwrap();
    assert!(first < html.find("Drill 118").unwrap(), "newest first");
    assert!(html.len() < 64 * 1024, "a page stays small: {}", html.len());
    let mut url = format!("{}/students/5", p.url);
    let mut rows = 0;
    for _ in 0..5 {
        let (_, html) = get(&url).await;
        rows += html.matches("<td class=\"title\">").count();
        let Some(at) = html.find(r#"id="older""#) else {
            break;
        };
        let start = html[..at].rfind("href=\"").unwrap() + 6;
        let end = start + html[start..].find('"').unwrap();
        url = format!(
            "{}{}",
            p.url,
            html[start..end]
                .replace("&#x3f;", "?")
                .replace("&#x3d;", "=")
        );
    }
    assert_eq!(rows, 123, "every grade is on some page, once");
}

#[tokio::test]
async fn a_student_can_be_renamed_and_removed() {
    let (_r, _d, g, p) = stack().await;
    let r = post_form(
        &format!("{}/students/1", p.url),
        &[("first_name", "Zhang"), ("last_name", "Sanfeng")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, html) = get(&format!("{}/students/1", p.url)).await;
    assert!(html.contains("Zhang Sanfeng"));
    let r = post_form(
        &format!("{}/students/1", p.url),
        &[("first_name", ""), ("last_name", "X")],
    )
    .await;
    assert_eq!(r.status(), 422);
    let (status, html) = get(&format!("{}/students/1/remove", p.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains("cannot be undone"));
    let r = post_form(&format!("{}/students/1/remove", p.url), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/students");
    let (status, _) = get(&format!("{}/students/1", g.url)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{}/students/1", p.url)).await;
    assert_eq!(status, 404);
}

/// A classic (Go) grading service, as the original behaves: grades without
/// IDs; its handlers look at the path, not the method, so `POST /students`
/// answers the class list and any method on `/students/{id}` answers the
/// student as it is (200), changing nothing; an unknown student is a 500
/// with a text body.
async fn classic_grading(registry: &str) -> String {
    use axum::response::IntoResponse as _;
    use axum::routing::{any, get, post};
    let students = std::sync::Arc::new(std::sync::Mutex::new(serde_json::json!([
        {"ID": 1, "FirstName": "Zhang", "LastName": "San",
         "Grades": [{"Title": "Quiz 1", "Type": "Quiz", "Score": 85}]}
    ])));
    let all = students.clone();
    let one = students.clone();
    let add = students.clone();
    let app = axum::Router::new()
        .route(
            "/students",
            any(move || {
                let s = all.lock().unwrap().clone();
                async move { axum::Json(s) }
            }),
        )
        .route(
            "/students/{id}",
            any(move |axum::extract::Path(id): axum::extract::Path<i64>| {
                let s = one.lock().unwrap()[0].clone();
                async move {
                    if s["ID"] == id {
                        axum::Json(s).into_response()
                    } else {
                        (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("Student with ID {id} not found\n"),
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/students/{id}/grades",
            post(move |body: axum::body::Bytes| {
                let grade: serde_json::Value = serde_json::from_slice(&body).unwrap();
                add.lock().unwrap()[0]["Grades"]
                    .as_array_mut()
                    .unwrap()
                    .push(grade.clone());
                async move { (axum::http::StatusCode::CREATED, axum::Json(grade)) }
            }),
        )
        .route("/heartbeat", get(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = rollcall_testkit::register_raw(
        registry,
        &serde_json::json!({"ServiceName": "GradingService", "ServiceURL": url,
                             "HeartbeatURL": format!("{url}/heartbeat")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    url
}

#[tokio::test]
async fn against_a_classic_grading_service_the_portal_offers_only_what_it_can_do() {
    let registry = TestRegistry::in_memory().await;
    classic_grading(&registry.url).await;
    let p = portal(&registry.url).await;
    let html = eventually(SOON, "the portal to find it", || async {
        let (status, html) = get(&format!("{}/students/1", p.url)).await;
        (status == 200).then_some(html)
    })
    .await;
    assert!(html.contains("Quiz 1"));
    assert!(html.contains(r#"id="no-ids""#), "{html}");
    assert!(!html.contains("/edit"), "no edit for a grade without an ID");
    assert!(
        !html.contains("/delete\""),
        "no delete for a grade without an ID"
    );
    // What it can do works.
    let r = post_form(
        &format!("{}/students/1/grades", p.url),
        &[("title", "Quiz 2"), ("type", "Quiz"), ("score", "90")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, html) = get(&format!("{}/students/1", p.url)).await;
    assert!(html.contains("Quiz 2"));
    let newest = html.find("Quiz 2").unwrap();
    assert!(
        newest < html.find("Quiz 1").unwrap(),
        "newest first here too"
    );
    // What it cannot do says so, with what was typed.
    let r = post_form(
        &format!("{}/students", p.url),
        &[("first_name", "Ada"), ("last_name", "Lovelace")],
    )
    .await;
    assert_eq!(r.status(), 501);
    let html = r.text().await.unwrap();
    assert!(html.contains("cannot add students"), "{html}");
    assert!(html.contains(r#"value="Lovelace""#));
    // It answers a rename and a removal with 200 and changes nothing: the
    // portal says they were not made.
    let r = post_form(
        &format!("{}/students/1", p.url),
        &[("first_name", "Li"), ("last_name", "Si")],
    )
    .await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("cannot rename students"));
    let r = post_form(&format!("{}/students/1/remove", p.url), &[]).await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("cannot remove students"));
    let (_, html) = get(&format!("{}/students/1", p.url)).await;
    assert!(html.contains("Zhang"), "still there, as the pages say");
    // An unknown student (a 500 from it) is a 404 page, not an outage.
    let (status, html) = get(&format!("{}/students/99", p.url)).await;
    assert_eq!(status, 404, "{html}");
}
