//! `rollcall ls`, `rollcall watch` and `rollcall deregister`, run as a user
//! runs them (output piped, so plain text).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

const SOON: Duration = Duration::from_secs(20);

async fn rollcall(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(rollcall_bin())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Starts a long-running command and hands its stdout lines over a channel.
fn stream(
    args: &[&str],
) -> (
    std::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = std::process::Command::new(rollcall_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rx = read_lines(child.stdout.take().unwrap());
    (child, rx)
}

async fn next_with(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {text:?}"))
            .unwrap();
        if line.contains(text) {
            return line;
        }
    }
}

#[tokio::test]
async fn ls_lists_instances_with_their_health_as_a_table_or_json() {
    let reg = registry(FAST_CHECKS).await;
    let log = FakeService::start().await;
    let grading = FakeService::start().await;
    register_raw(&reg.url, &log.registration("LogService", &[])).await;
    register_raw(
        &reg.url,
        &grading.registration("GradingService", &["LogService"]),
    )
    .await;
    eventually(SOON, "both to be checked", || async {
        let c = catalog(&reg.url).await;
        c.iter().all(|i| !i["LastCheck"].is_null()).then_some(())
    })
    .await;
    let (ok, out, _) = rollcall(&["ls", "--registry", &reg.url]).await;
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("SERVICE")
            && lines[0].contains("STATUS")
            && lines[0].contains("LAST CHECK")
    );
    assert!(
        lines[1].starts_with("GradingService")
            && lines[1].contains(&grading.url)
            && lines[1].contains("passing")
    );
    assert!(
        lines[1].ends_with("LogService"),
        "requires column: {}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("LogService") && lines[2].contains("ago") && lines[2].contains("ms")
    );
    assert!(!out.contains('\x1b'), "plain when piped");
    let (ok, out, _) = rollcall(&[
        "ls",
        "--registry",
        &reg.url,
        "--json",
        "--service",
        "LogService",
    ])
    .await;
    assert!(ok);
    let json: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["ServiceURL"], log.url.as_str());
    // A registry that is not there: a clear message, exit status 1.
    let (ok, _, err) = rollcall(&["ls", "--registry", "http://127.0.0.1:9"]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot reach the registry at http://127.0.0.1:9"),
        "{err}"
    );
}

#[tokio::test]
async fn watch_streams_changes_and_deregister_removes_an_instance() {
    let reg = registry(FAST_CHECKS).await;
    let (mut all, mut all_lines) = stream(&["watch", "--registry", &reg.url]);
    let (mut only_log, mut log_lines) = stream(&["watch", "LogService", "--registry", &reg.url]);
    // Give both streams time to connect: a change they both must see.
    let warmup = FakeService::start().await;
    eventually(SOON, "the watchers to connect", || async {
        let text = reqwest::get(format!("{}/metrics", reg.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("rollcall_registry_watch_streams 2")
            .then_some(())
    })
    .await;
    register_raw(&reg.url, &warmup.registration("Other", &[])).await;
    let line = next_with(&mut all_lines, "registered").await;
    assert!(
        line.contains("Other") && line.contains(&warmup.url),
        "{line}"
    );

    let log = FakeService::start().await;
    register_raw(&reg.url, &log.registration("LogService", &[])).await;
    let line = next_with(&mut log_lines, "registered").await;
    assert!(
        line.contains("LogService") && line.contains(&log.url),
        "{line}"
    );
    log.set_heartbeat(Mode::Status(500));
    let line = next_with(&mut log_lines, "critical").await;
    assert!(line.contains("HTTP 500"), "{line}");
    let (ok, out, _) = rollcall(&["deregister", "--registry", &reg.url, &log.url]).await;
    assert!(ok);
    assert_eq!(out.trim(), format!("deregistered {}", log.url));
    next_with(&mut log_lines, "deregistered").await;
    next_with(&mut all_lines, "deregistered").await;
    assert!(instance(&reg.url, &log.url).await.is_none());
    // The filtered watcher saw only LogService.
    let _ = only_log.kill();
    let _ = only_log.wait();
    while let Ok(line) = log_lines.try_recv() {
        assert!(!line.contains("Other"), "{line}");
    }
    let _ = all.kill();
    let _ = all.wait();
    // Deregistering what is not registered says so.
    let (ok, _, err) = rollcall(&["deregister", "--registry", &reg.url, &log.url]).await;
    assert!(!ok);
    assert!(err.contains("no instance is registered at"), "{err}");
}
