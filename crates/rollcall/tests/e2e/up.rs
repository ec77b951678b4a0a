//! `rollcall up` run as a user runs it: the whole system comes up healthy, a
//! crashed child is restarted, Ctrl-C stops everything within the deadline,
//! and a taken port is explained.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::common::*;

const SOON: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_everything_restarts_a_crash_and_stops_cleanly() {
    // Run from a link of its own, so the test can rebuild it (below).
    let bin_dir = tempfile::tempdir_in(rollcall_bin().parent().unwrap()).unwrap();
    let program = bin_dir.path().join("rollcall");
    std::fs::hard_link(rollcall_bin(), &program).unwrap();
    let mut up = Up::start_from(
        &program,
        &["--stop-timeout", "10s", "--dns-addr", "127.0.0.1:0"],
    )
    .await;
    let names: Vec<&String> = up.services.keys().collect();
    assert_eq!(names, vec!["grades", "log", "portal", "registry"]);
    // All four healthy: the three services registered and passing.
    let registry = up.url("registry").to_owned();
    eventually(SOON, "all services passing", || async {
        let c = catalog(&registry).await;
        let passing: Vec<&str> = c
            .iter()
            .filter(|i| i["Status"] == "passing")
            .map(|i| i["ServiceName"].as_str().unwrap())
            .collect();
        (passing.len() == 3).then_some(())
    })
    .await;
    // The registry answers DNS where `up` says, for what it registered.
    let dns = up.wait_line("DNS on 127.0.0.1:", SOON).await;
    let dns_port: u16 = dns
        .split("DNS on 127.0.0.1:")
        .nth(1)
        .and_then(|p| p.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no DNS port in {dns:?}"));
    let (status, answers) =
        crate::ecosystem::dig(dns_port, "gradingservice.service.rollcall", "A", &[]).await;
    assert_eq!(
        (status.as_str(), answers.len()),
        ("NOERROR", 1),
        "{answers:?}"
    );
    for name in ["registry", "log", "grades", "portal"] {
        let r = reqwest::get(format!("{}/healthz", up.url(name)))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    let page = reqwest::get(format!("{}/students", up.url("portal")))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Zhang San"));
    // The log service collects the others' logs.
    let log = up.url("log").to_owned();
    eventually(SOON, "the grading service's logs to arrive", || async {
        let records = query_logs(&log, "service=GradingService").await;
        (!records.is_empty()).then_some(())
    })
    .await;

    // The binary is rebuilt meanwhile (as `cargo build` does: a new file
    // takes the old one's name), then a child is SIGKILLed: reported,
    // restarted from the new file, registered again.
    // (A copy: rename does nothing between two links of one file.)
    let rebuilt = bin_dir.path().join("rollcall.new");
    std::fs::copy(rollcall_bin(), &rebuilt).unwrap();
    std::fs::rename(&rebuilt, &program).unwrap();
    let grades_pid = up.pid("grades");
    signal_pid(grades_pid, "KILL");
    up.wait_line("grades exited unexpectedly (killed by signal 9)", SOON)
        .await;
    let restarted = up.wait_line("grades restarted", SOON).await;
    let new_pid: u32 = restarted
        .rsplit("pid ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert_ne!(new_pid, grades_pid);
    let grades_url = up.url("grades").to_owned();
    eventually(
        SOON,
        "the restarted grading service to be registered and passing",
        || async {
            let entry = instance(&registry, &grades_url).await?;
            (entry["Status"] == "passing").then_some(())
        },
    )
    .await;
    let page = reqwest::get(format!("{}/students/1", up.url("portal")))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // Ctrl-C: every child stops, in reverse order, within the deadline.
    let mut pids: Vec<u32> = up.services.values().map(|(_, pid)| *pid).collect();
    pids.retain(|p| *p != grades_pid);
    pids.push(new_pid);
    let urls: Vec<String> = up.services.values().map(|(url, _)| url.clone()).collect();
    let stopping = Instant::now();
    up.signal("INT");
    let order = [
        up.wait_line("portal stopped", SOON).await,
        up.wait_line("grades stopped", SOON).await,
        up.wait_line("log stopped", SOON).await,
        up.wait_line("registry stopped", SOON).await,
    ];
    assert!(order.iter().all(|l| l.contains("exit code 0")), "{order:?}");
    let status = tokio::task::spawn_blocking(move || up.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        stopping.elapsed() < Duration::from_secs(12),
        "stopped within the deadline"
    );
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running");
    }
    for url in urls {
        assert!(!listening(&url), "{url} still accepts connections");
    }
}

#[tokio::test]
async fn a_taken_port_is_named_with_the_flag_that_changes_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap().to_owned();
    let log_addr = format!("127.0.0.1:{port}");
    let (ok, _, stderr) = run_rollcall(&[
        "up",
        "--data-dir",
        &dir_text,
        "--registry-addr",
        "127.0.0.1:0",
        "--log-addr",
        &log_addr,
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("port {port} (log) is already in use")),
        "{stderr}"
    );
    assert!(stderr.contains("--log-addr"), "{stderr}");
    // A DNS port taken for TCP (DNS needs UDP and TCP) is named too.
    let (ok, _, stderr) = run_rollcall(&[
        "up",
        "--data-dir",
        &dir_text,
        "--registry-addr",
        "127.0.0.1:0",
        "--log-addr",
        "127.0.0.1:0",
        "--dns-addr",
        &log_addr,
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("port {port} (registry DNS) is already in use"))
            && stderr.contains("--dns-addr"),
        "{stderr}"
    );
    // And for a single service, its own flag.
    let (ok, _, stderr) = run_rollcall(&["registry", "--in-memory", "--addr", &log_addr]).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("port {port} is already in use")) && stderr.contains("--addr"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_service_that_cannot_open_its_store_says_so_and_never_claims_to_listen() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory under a regular file cannot be created.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("data");
    let data_dir = data_dir.to_str().unwrap();
    for args in [
        &["registry"][..],
        &["log", "--registry", ""][..],
        &["grades", "--registry", ""][..],
    ] {
        let service = args[0];
        let mut all = args.to_vec();
        all.extend_from_slice(&["--addr", "127.0.0.1:0", "--data-dir", data_dir]);
        let (ok, out, err) = run_rollcall(&all).await;
        assert!(!ok, "{service} started: {out}");
        assert!(
            !out.contains("listening"),
            "{service} claimed to listen: {out}"
        );
        assert!(err.contains("a-file"), "{service} names the path: {err}");
    }
}
