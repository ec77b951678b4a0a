//! The grading service's API over HTTP, against the real binary: the classic
//! shapes, what a teacher needs beyond them, and every kind of bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

async fn standalone(extra: &[&str]) -> (tempfile::TempDir, ChildProcess) {
    let dir = tempfile::tempdir().unwrap();
    let grades = grades_service(dir.path(), "", extra).await;
    (dir, grades)
}

async fn send(
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value, headers)
}

#[tokio::test]
async fn the_classic_routes_keep_their_shapes() {
    let (_dir, g) = standalone(&[]).await;
    let (status, students, _) =
        send(reqwest::Method::GET, &format!("{}/students", g.url), None).await;
    assert_eq!(status, 200);
    let students = students.as_array().unwrap();
    assert_eq!(students.len(), 5, "demo students on first start");
    let zhang = &students[0];
    assert_eq!(
        (
            zhang["ID"].clone(),
            zhang["FirstName"].clone(),
            zhang["LastName"].clone()
        ),
        (json!(1), json!("Zhang"), json!("San"))
    );
    assert_eq!(
        zhang["Grades"][0],
        json!({"ID": 1, "Title": "Quiz 1", "Type": "Quiz", "Score": 85})
    );

    let (status, one, _) = send(reqwest::Method::GET, &format!("{}/students/1", g.url), None).await;
    assert_eq!((status, &one), (200, zhang));
    // The original answered an unknown student with 500.
    for missing in ["99", "abc", "-1"] {
        let (status, body, _) = send(
            reqwest::Method::GET,
            &format!("{}/students/{missing}", g.url),
            None,
        )
        .await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(body["error"]["code"], "no_such_student");
    }

    let grade = json!({"Title": "Quiz 3", "Type": "Quiz", "Score": 88.5}).to_string();
    let (status, stored, headers) = send(
        reqwest::Method::POST,
        &format!("{}/students/1/grades", g.url),
        Some(grade),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        (stored["Title"].clone(), stored["Score"].clone()),
        (json!("Quiz 3"), json!(88.5))
    );
    let id = stored["ID"].as_i64().unwrap();
    assert_eq!(
        headers["location"],
        format!("/students/1/grades/{id}").as_str()
    );
    let (_, one, _) = send(reqwest::Method::GET, &format!("{}/students/1", g.url), None).await;
    assert_eq!(one["Grades"].as_array().unwrap().last().unwrap(), &stored);
}

#[tokio::test]
async fn a_teacher_can_add_students_and_correct_or_delete_grades() {
    let (_dir, g) = standalone(&["--no-demo-data"]).await;
    let (_, students, _) = send(reqwest::Method::GET, &format!("{}/students", g.url), None).await;
    assert_eq!(students, json!([]), "--no-demo-data starts empty");
    let (status, ada, _) = send(
        reqwest::Method::POST,
        &format!("{}/students", g.url),
        Some(json!({"FirstName": "Ada", "LastName": "Lovelace"}).to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let sid = ada["ID"].as_i64().unwrap();
    let grades = format!("{}/students/{sid}/grades", g.url);
    let (_, grade, _) = send(
        reqwest::Method::POST,
        &grades,
        Some(json!({"Title": "Test 1", "Type": "Test", "Score": 60}).to_string()),
    )
    .await;
    let gid = grade["ID"].as_i64().unwrap();
    let (status, fixed, _) = send(
        reqwest::Method::PUT,
        &format!("{grades}/{gid}"),
        Some(json!({"Title": "Test 1", "Type": "Test", "Score": 66}).to_string()),
    )
    .await;
    assert_eq!((status, fixed["Score"].clone()), (200, json!(66)));
    let (status, _, _) = send(reqwest::Method::DELETE, &format!("{grades}/{gid}"), None).await;
    assert_eq!(status, 204);
    let (status, body, _) = send(reqwest::Method::DELETE, &format!("{grades}/{gid}"), None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("no_such_grade"))
    );
    let (_, ada, _) = send(
        reqwest::Method::GET,
        &format!("{}/students/{sid}", g.url),
        None,
    )
    .await;
    assert_eq!(ada["Grades"], json!([]));
}

#[tokio::test]
async fn every_bad_input_gets_a_json_error_naming_the_field_and_stores_nothing() {
    let (_dir, g) = standalone(&[]).await;
    let grades = format!("{}/students/2/grades", g.url);
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        (
            json!({"Title": "Q", "Type": "Quiz", "Score": 101}).to_string(),
            400,
            "invalid_field",
            Some("Score"),
        ),
        (
            json!({"Title": "Q", "Type": "Quiz", "Score": -0.5}).to_string(),
            400,
            "invalid_field",
            Some("Score"),
        ),
        (
            json!({"Title": "Q", "Type": "Quiz", "Score": "85"}).to_string(),
            400,
            "invalid_field",
            Some("Score"),
        ),
        (
            json!({"Title": "Q", "Type": "Quiz"}).to_string(),
            400,
            "missing_field",
            Some("Score"),
        ),
        (
            r#"{"Title": "Q", "Type": "Quiz", "Score": 1e999}"#.to_owned(),
            400,
            "malformed_json",
            None,
        ),
        (
            json!({"Title": "Q", "Type": "Essay", "Score": 50}).to_string(),
            400,
            "invalid_field",
            Some("Type"),
        ),
        (
            json!({"Title": "Q", "Type": 3, "Score": 50}).to_string(),
            400,
            "invalid_field",
            Some("Type"),
        ),
        (
            json!({"Title": "", "Type": "Quiz", "Score": 50}).to_string(),
            400,
            "invalid_field",
            Some("Title"),
        ),
        (
            json!({"Title": "   ", "Type": "Quiz", "Score": 50}).to_string(),
            400,
            "invalid_field",
            Some("Title"),
        ),
        (
            json!({"Title": "t".repeat(201), "Type": "Quiz", "Score": 50}).to_string(),
            400,
            "invalid_field",
            Some("Title"),
        ),
        (
            json!({"Type": "Quiz", "Score": 50}).to_string(),
            400,
            "missing_field",
            Some("Title"),
        ),
        ("{\"Title\": ".to_owned(), 400, "malformed_json", None),
        ("[1, 2]".to_owned(), 400, "invalid_field", None),
        (
            format!("{{\"Title\": \"{}\"}}", "x".repeat(100 * 1024)),
            413,
            "payload_too_large",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer, _) = send(reqwest::Method::POST, &grades, Some(body.clone())).await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!(got, status, "{shown}");
        assert_eq!(answer["error"]["code"], code, "{shown}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{shown}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Names must not be empty.
    let (status, answer, _) = send(
        reqwest::Method::POST,
        &format!("{}/students", g.url),
        Some(json!({"FirstName": "", "LastName": "X"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (400, json!("FirstName"))
    );
    // Wrong method, unknown route, unknown student.
    let (status, answer, _) = send(
        reqwest::Method::DELETE,
        &format!("{}/students", g.url),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (405, json!("method_not_allowed"))
    );
    let (status, _, _) = send(reqwest::Method::GET, &format!("{}/teachers", g.url), None).await;
    assert_eq!(status, 404);
    let (status, answer, _) = send(
        reqwest::Method::POST,
        &format!("{}/students/77/grades", g.url),
        Some(json!({"Title": "Q", "Type": "Quiz", "Score": 5}).to_string()),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("no_such_student"))
    );
    // Nothing of it was stored.
    let (_, li, _) = send(reqwest::Method::GET, &format!("{}/students/2", g.url), None).await;
    assert_eq!(li["Grades"].as_array().unwrap().len(), 4);
    let (_, all, _) = send(reqwest::Method::GET, &format!("{}/students", g.url), None).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_all_stored() {
    let (_dir, g) = standalone(&[]).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = format!("{}/students/{}/grades", g.url, 1 + i % 5);
        tasks.push(tokio::spawn(async move {
            let body = json!({"Title": format!("Pop quiz {i}"), "Type": "Quiz", "Score": i % 101})
                .to_string();
            send(reqwest::Method::POST, &url, Some(body)).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let (_, all, _) = send(reqwest::Method::GET, &format!("{}/students", g.url), None).await;
    let total: usize = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Grades"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 16 + 100);
}

#[tokio::test]
async fn a_grading_service_that_cannot_read_its_grade_book_leaves_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(FAST_CHECKS).await;
    let grading = grades_service(dir.path(), &reg.url, &[]).await;
    wait_status(&reg.url, &grading.url, "passing").await;
    // Damage the files under the running service: every page of the
    // database and of its write-ahead log overwritten.
    for name in ["grades.db", "grades.db-wal"] {
        let file = dir.path().join(name);
        if let Ok(meta) = std::fs::metadata(&file) {
            std::fs::write(&file, vec![0x5a_u8; usize::try_from(meta.len()).unwrap()]).unwrap();
        }
    }
    wait_status(&reg.url, &grading.url, "critical").await;
    let entry = instance(&reg.url, &grading.url).await.unwrap();
    assert!(
        entry["LastCheckError"].as_str().unwrap().contains("503"),
        "{entry}"
    );
}
