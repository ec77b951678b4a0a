//! The teacher portal in a real browser (headless Chromium), against the real
//! binaries: registry, grading service and portal as child processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::*;
use fantoccini::Locator;

const SOON: Duration = Duration::from_secs(20);

async fn value(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn fill(b: &Browser, css: &str, with: &str) {
    let input = b.client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(with).await.unwrap();
}

/// Waits until the portal's class list answers `status`.
async fn portal_answers(portal: &str, status: u16, what: &str) {
    eventually(SOON, what, || async {
        let r = reqwest::get(format!("{portal}/students")).await.ok()?;
        (r.status() == status).then_some(())
    })
    .await;
}

/// Fills the "Add a Grade" form as a user types it, and submits it.
async fn add_grade(b: &Browser, title: &str, kind: &str, score: &str) {
    fill(b, "#title", title).await;
    b.client
        .find(Locator::Css("#type"))
        .await
        .unwrap()
        .select_by_value(kind)
        .await
        .unwrap();
    fill(b, "#score", score).await;
    b.click(Locator::Css("#save")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_reads_the_class_adds_a_grade_and_sees_a_validation_error() {
    let reg = registry(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let _grades = grades_service(dir.path(), &reg.url, &[]).await;
    let portal = portal_service(&reg.url).await;
    portal_answers(&portal.url, 200, "the portal to find the grading service").await;

    let b = Browser::start(1100, 1000).await;
    // The class list, through the redirect from /.
    b.client.goto(&portal.url).await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/students");
    let table = b.text("#students").await;
    for name in ["Zhang San", "Li Si", "Wang Wu", "Zhao Liu", "Sun Qi"] {
        assert!(table.contains(name), "{table}");
    }
    assert_eq!(b.text("#class-average").await, "83.3");
    b.screenshot("class-list.png").await;

    // A student's page.
    b.click(Locator::LinkText("Wang Wu")).await;
    b.wait_for(Locator::Css("#grades")).await;
    assert_eq!(b.text("#student-name").await, "Wang Wu");
    assert_eq!(b.text("#average").await, "73.0");
    assert!(b.text("#grades").await.contains("Midterm Test"));

    // Add a grade: it appears, with the new average.
    add_grade(&b, "Quiz 3", "Exam", "93").await;
    b.wait_for(Locator::XPath("//table[@id='grades']//td[text()='Quiz 3']"))
        .await;
    assert_eq!(
        b.client.current_url().await.unwrap().path(),
        "/students/3",
        "redirected after POST"
    );
    assert_eq!(b.text("#average").await, "78.0");
    assert_eq!(value(&b, "#title").await, "", "the form is fresh again");
    b.screenshot("student.png").await;

    // An invalid score: the error next to the field, what was typed kept.
    add_grade(&b, "Homework 2", "Homework", "150").await;
    let error = b.wait_for(Locator::Css("#score-error")).await;
    assert_eq!(error.text().await.unwrap(), "Enter a score from 0 to 100.");
    assert_eq!(value(&b, "#title").await, "Homework 2");
    assert_eq!(value(&b, "#score").await, "150");
    assert_eq!(value(&b, "#type").await, "Homework");
    assert_eq!(b.text("#average").await, "78.0", "nothing was saved");
    assert!(!b.text("#grades").await.contains("Homework 2"));
    b.client
        .execute(
            "document.getElementById('score').scrollIntoView({block: 'center'})",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("student-error.png").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grade_typed_during_an_outage_is_shown_unsaved_and_stored_once_when_sent_again() {
    let reg = registry(FAST_CHECKS).await;
    let dir = tempfile::tempdir().unwrap();
    let mut grading = grades_service(dir.path(), &reg.url, &[]).await;
    let portal = portal_service(&reg.url).await;
    portal_answers(&portal.url, 200, "the portal to find the grading service").await;
    let b = Browser::start(900, 1000).await;
    b.client
        .goto(&format!("{}/students/2", portal.url))
        .await
        .unwrap();
    assert_eq!(b.text("#student-name").await, "Li Si");

    // A long title wraps: Edit and Delete stay on the screen.
    add_grade(
        &b,
        &"Very_long_assignment_title_".repeat(7),
        "Homework",
        "70",
    )
    .await;
    b.wait_for(Locator::Css("#grades tbody tr:first-child button"))
        .await;
    let inside: bool = b
        .client
        .execute(
            "const r = document.querySelector('#grades tbody tr:first-child button').getBoundingClientRect();\
             return r.right <= document.documentElement.clientWidth && r.width > 0;",
            vec![],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap();
    assert!(
        inside,
        "the Delete button of a long-titled grade is on screen"
    );
    let grades_before = b.text("#grade-count").await;

    // The grading service dies; the portal learns it from the registry.
    grading.kill();
    portal_answers(&portal.url, 503, "the portal to notice").await;
    add_grade(&b, "Outage Quiz", "Test", "91.5").await;
    let notice = b
        .wait_for(Locator::Css("#not-saved"))
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("Not saved"), "{notice}");
    assert!(notice.contains("was not stored"), "{notice}");
    assert_eq!(
        value(&b, "#title").await,
        "Outage Quiz",
        "what was typed is kept"
    );
    assert_eq!(value(&b, "#score").await, "91.5");
    assert_eq!(value(&b, "#type").await, "Test");
    let page = b.client.source().await.unwrap();
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "nothing reloads by itself"
    );
    b.screenshot("student-not-saved.png").await;

    // It comes back; the same form, sent again, stores the grade once.
    let _grading = grades_service(dir.path(), &reg.url, &[]).await;
    portal_answers(&portal.url, 200, "the portal to recover").await;
    b.click(Locator::Css("#save")).await;
    b.wait_for(Locator::XPath(
        "//table[@id='grades']//td[text()='Outage Quiz']",
    ))
    .await;
    assert_eq!(b.client.current_url().await.unwrap().path(), "/students/2");
    let count: u32 = b.text("#grade-count").await.parse().unwrap();
    assert_eq!(
        count,
        grades_before.parse::<u32>().unwrap() + 1,
        "stored once"
    );
    let rows = b.text("#grades").await;
    assert_eq!(rows.matches("Outage Quiz").count(), 1);
    b.close().await;
}
