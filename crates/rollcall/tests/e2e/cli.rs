//! `rollcall ls`, `rollcall watch` and `rollcall deregister`, run as a user
//! runs them (output piped, so plain text).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;

const SOON: Duration = Duration::from_secs(20);

/// Waits until `registry` has `n` watch streams open.
async fn watchers(registry: &str, n: u32, what: &str) {
    let line = format!("rollcall_registry_watch_streams {n}");
    eventually(SOON, what, || async {
        let text = reqwest::get(format!("{registry}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().any(|l| l == line).then_some(())
    })
    .await;
}

pub(crate) async fn next_with(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    text: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {text:?}"))
            .unwrap_or_else(|| panic!("the output ended before a line with {text:?}"));
        if line.contains(text) {
            return line;
        }
        eprintln!("skipped: {line}");
    }
}

#[tokio::test]
async fn ls_lists_instances_with_their_health_as_a_table_or_json() {
    let reg = registry(FAST_CHECKS).await;
    let (log, grading) = log_and_grading(&reg.url).await;
    eventually(SOON, "both to be checked", || async {
        let c = catalog(&reg.url).await;
        c.iter().all(|i| !i["LastCheck"].is_null()).then_some(())
    })
    .await;
    let (ok, out, _) = run_rollcall(&["ls", "--registry", &reg.url]).await;
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
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells[cells.len() - 2..],
        ["LogService", "-"],
        "requires and meta columns: {}",
        lines[1]
    );
    assert!(lines[0].ends_with("META"), "{}", lines[0]);
    assert!(
        lines[2].starts_with("LogService") && lines[2].contains("ago") && lines[2].contains("ms")
    );
    assert!(!out.contains('\x1b'), "plain when piped");
    let (ok, out, _) = run_rollcall(&[
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
    let (ok, _, err) = run_rollcall(&["ls", "--registry", "http://127.0.0.1:9"]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot reach the registry at http://127.0.0.1:9"),
        "{err}"
    );
    assert!(
        err.contains("connection refused") && err.contains("rollcall up"),
        "the cause and the next step: {err}"
    );
    // A URL without its scheme: told how to write it.
    let (ok, _, err) = run_rollcall(&["ls", "--registry", "localhost:3000"]).await;
    assert!(!ok);
    assert!(err.contains("write http://localhost:3000"), "{err}");
}

#[tokio::test]
async fn watch_streams_changes_and_deregister_removes_an_instance() {
    let reg = registry(FAST_CHECKS).await;
    let (mut all, mut all_lines, _) = spawn_rollcall(&["watch", "--registry", &reg.url]);
    let (mut only_log, mut log_lines, _) =
        spawn_rollcall(&["watch", "LogService", "--registry", &reg.url]);
    // Give both streams time to connect: a change they both must see.
    let warmup = FakeService::start().await;
    watchers(&reg.url, 2, "the watchers to connect").await;
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
    let (ok, out, _) = run_rollcall(&["deregister", "--registry", &reg.url, &log.url]).await;
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
    let (ok, _, err) = run_rollcall(&["deregister", "--registry", &reg.url, &log.url]).await;
    assert!(!ok);
    assert!(err.contains("no instance is registered at"), "{err}");
}

#[tokio::test]
async fn watch_shows_the_current_state_then_survives_a_registry_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = registry_on_disk(dir.path(), "127.0.0.1:0", FAST_CHECKS).await;
    let addr = reg.url.trim_start_matches("http://").to_owned();
    let before = FakeService::start().await;
    register_raw(&reg.url, &before.registration("Before", &[])).await;
    let (mut watch, mut out, mut err) = spawn_rollcall(&["watch", "--registry", &reg.url]);
    // What is registered already is printed first.
    let line = next_with(&mut out, &before.url).await;
    assert!(line.contains("Before"), "{line}");
    watchers(&reg.url, 1, "the watcher to connect").await;

    // The registry dies and comes back on its port; meanwhile one instance
    // arrives. watch says it lost the stream, reconnects, and prints it.
    reg.kill();
    next_with(&mut err, "reconnecting").await;
    let mut reg = registry_on_disk(dir.path(), &addr, FAST_CHECKS).await;
    let during = FakeService::start().await;
    register_raw(&reg.url, &during.registration("During", &[])).await;
    next_with(&mut err, "reconnected").await;
    let line = next_with(&mut out, &during.url).await;
    assert!(
        line.contains("registered") && line.contains("During"),
        "{line}"
    );
    // And it goes on following changes.
    deregister_raw(&reg.url, &before.url).await;
    let line = next_with(&mut out, "deregistered").await;
    assert!(line.contains(&before.url), "{line}");
    let _ = watch.kill();
    let _ = watch.wait();
    reg.kill();
}

#[tokio::test]
async fn deregistering_a_running_sdk_service_points_at_maintenance() {
    let reg = registry(FAST_CHECKS).await;
    let app = hello(&reg.url, "App", &[]).await;
    wait_registered(&reg.url, &app.url).await;
    let (ok, out, err) = run_rollcall(&["deregister", "--registry", &reg.url, &app.url]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("deregistered {}", app.url));
    assert!(
        err.contains("register again") && err.contains(&format!("rollcall maint {} on", app.url)),
        "{err}"
    );
    // It does come back.
    wait_registered(&reg.url, &app.url).await;
    let (ok, out, err) = run_rollcall(&["maint", "--registry", &reg.url, &app.url, "on"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("maintenance on"), "{out}");
    let shown = instance(&reg.url, &app.url).await.unwrap();
    assert_eq!(shown["Status"], "maintenance");
    let (ok, out, _) = run_rollcall(&["ls", "--registry", &reg.url]).await;
    assert!(ok && out.contains("maintenance"), "{out}");
    let (ok, _, _) = run_rollcall(&["maint", "--registry", &reg.url, &app.url, "off"]).await;
    assert!(ok);
    eventually(SOON, "back in discovery", || async {
        let shown = instance(&reg.url, &app.url).await?;
        (shown["InDiscovery"] == true).then_some(())
    })
    .await;
    let (ok, _, err) =
        run_rollcall(&["maint", "--registry", &reg.url, "http://127.0.0.1:9", "on"]).await;
    assert!(!ok && err.contains("no instance is registered"), "{err}");
}

#[tokio::test]
async fn names_are_validated_and_requires_takes_a_comma_list() {
    let reg = registry(FAST_CHECKS).await;
    let fake = FakeService::start().await;
    let answer = register_raw(&reg.url, &fake.registration("Bad Name!", &[])).await;
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_name");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("ServiceName"), "{message}");
    // `--requires A,B` is two services.
    let app = hello(&reg.url, "App", &["--requires", "Alpha,Beta"]).await;
    wait_registered(&reg.url, &app.url).await;
    let shown = instance(&reg.url, &app.url).await.unwrap();
    assert_eq!(
        shown["RequiredServices"],
        serde_json::json!(["Alpha", "Beta"])
    );
    // Unknown query parameters are refused, naming the known ones.
    let answer = reqwest::get(format!("{}/services?servce=App", reg.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("servce") && text.contains("service"),
        "{text}"
    );
}

/// Runs `rollcall ARGS…` with its stdout a pipe nobody reads any more (as
/// `| head -1` leaves it): (exit code, stderr).
async fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = tokio::process::Command::new(rollcall_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = tokio::time::timeout(SOON, child.wait_with_output())
        .await
        .expect("the command ended")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_closed_pipe_ends_every_command_quietly() {
    let reg = registry(FAST_CHECKS).await;
    let (log, _grading) = log_and_grading(&reg.url).await;
    let dir = tempfile::tempdir().unwrap();
    let logs = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let batch: Vec<_> = (0..60)
        .map(|i| serde_json::json!({"service": "A", "message": format!("record {i}")}))
        .collect();
    let posted = reqwest::Client::new()
        .post(format!("{}/v1/logs", logs.url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let cases: [&[&str]; 5] = [
        &["ls", "--registry", &reg.url],
        &["ls", "--registry", &reg.url, "--json"],
        &["watch", "--registry", &reg.url],
        &["logs", "--log-url", &logs.url, "-n", "50"],
        &["logs", "--log-url", &logs.url, "-n", "50", "-f"],
    ];
    for args in cases {
        let (code, stderr) = with_closed_stdout(args).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    drop(log);
}

#[tokio::test]
async fn service_filters_ignore_case_match_parts_and_say_so_and_meta_is_key_equals_value() {
    let reg = registry(FAST_CHECKS).await;
    let (_log, grading) = log_and_grading(&reg.url).await;
    let tagged = FakeService::start().await;
    let mut body = tagged.registration("Tagged", &[]);
    body["Meta"] = serde_json::json!({"version": "2"});
    register_ok(&reg.url, &body).await;

    let (ok, out, err) =
        run_rollcall(&["ls", "--registry", &reg.url, "--service", "gradingservice"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&grading.url) && !out.contains("LogService\n"),
        "{out}"
    );
    assert_eq!(err, "");
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg.url, "--service", "grad"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "a header and GradingService: {out}");
    assert!(out.contains(&grading.url), "{out}");
    assert!(
        err.contains("showing those whose names contain it: GradingService"),
        "{err}"
    );
    let (ok, out, err) =
        run_rollcall(&["ls", "--registry", &reg.url, "--service", "billing"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "", "never 'no instances are registered' when some are");
    assert!(
        err.contains("3 instance(s) of other services are registered"),
        "{err}"
    );
    // Metadata as the SDK's `--meta` writes it; the older form still reads.
    for pair in ["version=2", "version:2"] {
        let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg.url, "--meta", pair]).await;
        assert!(ok, "{err}");
        assert!(
            out.contains(&tagged.url) && !out.contains(&grading.url),
            "{pair}: {out}"
        );
    }
    // `watch` takes the same rule.
    let (mut watch, _out, mut err) = spawn_rollcall(&["watch", "grad", "--registry", &reg.url]);
    next_with(&mut err, "watching GradingService (for `grad`)").await;
    let _ = watch.kill();
    let _ = watch.wait();
}
