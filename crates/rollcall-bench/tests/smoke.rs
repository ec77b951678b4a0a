//! The benchmark must not rot: a quick run over the debug binaries (built by
//! `cargo test --workspace`) completes, writes every section, and every
//! correctness check in it (stored equals acknowledged, every dependent told)
//! passes. No figure is asserted: speed lives in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn a_quick_run_completes_with_every_section_and_every_check_passing() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-bench"))
        .args(["--quick", "--no-build", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the quick benchmark failed (see its output above)"
    );
    let md = std::fs::read_to_string(out.path().join("BENCHMARKS.md")).unwrap();
    for section in [
        "## 1. Ceiling",
        "## 2. Registry throughput",
        "## 3. Push latency",
        "## 4. Failure detection",
        "## 5. Health-check scale",
        "## 6. Logs",
        "## 7. Application",
        "## 8. Memory",
        "## 9. Cluster",
    ] {
        assert!(md.contains(section), "{section} is missing");
    }
    assert!(md.contains("*Method:*"));
    // The cluster section ran against real etcd (it notes and measures
    // nothing when etcd is missing: that fails here).
    assert!(
        md.contains("registrations/s through 3 replicas"),
        "the cluster section measured nothing (is etcd-server installed?)"
    );
    assert!(!md.contains("✘ FAILED"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("BENCHMARKS.json")).unwrap())
            .unwrap();
    assert_eq!(json["sections"].as_array().unwrap().len(), 9);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
}
