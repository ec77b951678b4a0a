//! The teacher portal in a real browser (headless Chromium), against the real
//! binaries: registry, grading service and portal as child processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::*;
use fantoccini::Locator;

const SOON: Duration = Duration::from_secs(20);

async fn text(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

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
    b.client
        .find(Locator::Css("#save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_reads_the_class_adds_a_grade_and_sees_a_validation_error() {
    let reg = registry(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let _grades = grades_service(dir.path(), &reg.url, &[]).await;
    let portal = portal_service(&reg.url).await;
    eventually(SOON, "the portal to find the grading service", || async {
        let r = reqwest::get(format!("{}/students", portal.url))
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    let b = Browser::start(1100, 1000).await;
    // The class list, through the redirect from /.
    b.client.goto(&portal.url).await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/students");
    let table = text(&b, "#students").await;
    for name in ["Zhang San", "Li Si", "Wang Wu", "Zhao Liu", "Sun Qi"] {
        assert!(table.contains(name), "{table}");
    }
    assert_eq!(text(&b, "#class-average").await, "83.3");
    b.screenshot("class-list.png").await;

    // A student's page.
    b.client
        .find(Locator::LinkText("Wang Wu"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("#grades"))
        .await
        .unwrap();
    assert_eq!(text(&b, "#student-name").await, "Wang Wu");
    assert_eq!(text(&b, "#average").await, "73.0");
    assert!(text(&b, "#grades").await.contains("Midterm Test"));

    // Add a grade: it appears, with the new average.
    add_grade(&b, "Quiz 3", "Exam", "93").await;
    b.client
        .wait()
        .at_most(SOON)
        .for_element(Locator::XPath("//table[@id='grades']//td[text()='Quiz 3']"))
        .await
        .unwrap();
    assert_eq!(
        b.client.current_url().await.unwrap().path(),
        "/students/3",
        "redirected after POST"
    );
    assert_eq!(text(&b, "#average").await, "78.0");
    assert_eq!(value(&b, "#title").await, "", "the form is fresh again");
    b.screenshot("student.png").await;

    // An invalid score: the error next to the field, what was typed kept.
    add_grade(&b, "Homework 2", "Homework", "150").await;
    let error = b
        .client
        .wait()
        .at_most(SOON)
        .for_element(Locator::Css("#score-error"))
        .await
        .unwrap();
    assert_eq!(error.text().await.unwrap(), "Enter a score from 0 to 100.");
    assert_eq!(value(&b, "#title").await, "Homework 2");
    assert_eq!(value(&b, "#score").await, "150");
    assert_eq!(value(&b, "#type").await, "Homework");
    assert_eq!(text(&b, "#average").await, "78.0", "nothing was saved");
    assert!(!text(&b, "#grades").await.contains("Homework 2"));
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
