//! Fitting the ecosystem with real counterparts: metadata through
//! registration, reads, filters and Prometheus discovery; a real Prometheus
//! discovering and scraping an SDK service through the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rollcall_testkit::prometheus::Prometheus;

use crate::common::*;

/// The URL of a port nothing listens on (its heartbeat is refused).
fn refused_url() -> String {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", dead.local_addr().unwrap())
}

async fn services(registry: &str, query: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{registry}/services{query}")).await
}

fn urls(instances: &[serde_json::Value]) -> Vec<&str> {
    instances
        .iter()
        .map(|i| i["ServiceURL"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn metadata_round_trips_through_registration_reads_filters_and_discovery() {
    let registry = registry(FAST_CHECKS).await;
    let reg = registry.url.clone();
    // An SDK service with metadata, a classic one without, and one whose
    // heartbeat is refused (critical: never a target).
    let hello = hello(
        &reg,
        "Meta",
        &["--meta", "version=2", "--meta", "zone=eu-1"],
    )
    .await;
    wait_registered(&reg, &hello.url).await;
    register_ok(
        &reg,
        &serde_json::json!({"ServiceName": "Meta", "ServiceURL": "http://127.0.0.1:9/classic"}),
    )
    .await;
    let dead_url = refused_url();
    register_ok(
        &reg,
        &serde_json::json!({"ServiceName": "Meta", "ServiceURL": dead_url,
            "HeartbeatURL": format!("{dead_url}/heartbeat"), "Meta": {"version": "1"}}),
    )
    .await;
    wait_status(&reg, &dead_url, "critical").await;

    let all = services(&reg, "?service=Meta").await;
    let sdk = all
        .iter()
        .find(|i| i["ServiceURL"] == hello.url.as_str())
        .unwrap();
    assert_eq!(sdk["Meta"]["version"], "2");
    assert_eq!(sdk["Meta"]["zone"], "eu-1");
    assert_eq!(sdk["Meta"]["rollcall.metrics_path"], "/metrics");
    let classic = all
        .iter()
        .find(|i| i["ServiceURL"] == "http://127.0.0.1:9/classic")
        .unwrap();
    assert!(classic.get("Meta").is_none(), "{classic}");

    assert_eq!(
        urls(&services(&reg, "?meta=version:2").await),
        [hello.url.as_str()]
    );
    assert_eq!(
        urls(&services(&reg, "?meta=version:1").await),
        [dead_url.as_str()]
    );
    assert!(services(&reg, "?meta=version:3").await.is_empty());
    let bad = reqwest::get(format!("{reg}/services?meta=version"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Invalid metadata is refused, with the field named.
    let refused = reqwest::Client::new()
        .post(format!("{reg}/services"))
        .json(
            &serde_json::json!({"ServiceName": "Meta", "ServiceURL": "http://127.0.0.1:9/bad",
            "Meta": {"not a key": "x"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_meta", "{body}");

    // Prometheus HTTP SD: the two instances in discovery, not the critical one.
    let groups: Vec<serde_json::Value> = get_json(&format!("{reg}/v1/prometheus/targets")).await;
    let targets: Vec<&str> = groups
        .iter()
        .map(|g| g["targets"][0].as_str().unwrap())
        .collect();
    let hello_target = hello.url.trim_start_matches("http://");
    assert_eq!(targets.len(), 2, "{groups:?}");
    assert!(targets.contains(&hello_target), "{targets:?}");
    assert!(targets.contains(&"127.0.0.1:9"), "{targets:?}");
    let group = groups
        .iter()
        .find(|g| g["targets"][0] == hello_target)
        .unwrap();
    let labels = &group["labels"];
    assert_eq!(labels["service"], "Meta");
    assert_eq!(labels["__meta_rollcall_service"], "Meta");
    assert_eq!(labels["__meta_rollcall_url"], hello.url.as_str());
    assert_eq!(labels["__meta_rollcall_meta_version"], "2");
    assert_eq!(labels["__meta_rollcall_meta_zone"], "eu-1");
    assert_eq!(labels["__metrics_path__"], "/metrics");

    // The dashboard's instance page shows it.
    let page = reqwest::Client::new()
        .get(format!("{reg}/dashboard/instance"))
        .query(&[("url", hello.url.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("version=2") && page.contains("zone=eu-1"),
        "{page}"
    );

    // `rollcall ls` shows the metadata and filters by it.
    let (ok, out, err) = run_rollcall(&["ls", "--registry", &reg, "--meta", "zone:eu-1"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("META"), "{out}");
    assert!(out.contains("version=2,zone=eu-1"), "{out}");
    assert!(!out.contains("classic"), "{out}");
    assert!(!out.contains("rollcall.metrics_path"), "{out}");
}

#[tokio::test]
async fn a_real_prometheus_discovers_and_scrapes_an_sdk_service_through_the_registry() {
    let registry = registry(&[]).await;
    let reg = registry.url.clone();
    let hello = hello(&reg, "Scraped", &["--meta", "version=7"]).await;
    wait_registered(&reg, &hello.url).await;
    let prometheus = Prometheus::start(&format!("{reg}/v1/prometheus/targets")).await;
    let target = hello.url.trim_start_matches("http://").to_owned();
    let found = eventually(
        Duration::from_secs(30),
        "Prometheus to scrape the SDK service it discovered",
        || {
            let (prometheus, target) = (&prometheus, target.clone());
            async move {
                prometheus
                    .active_targets()
                    .await
                    .into_iter()
                    .find(|t| t["labels"]["instance"] == target.as_str() && t["health"] == "up")
            }
        },
    )
    .await;
    assert_eq!(found["labels"]["service"], "Scraped", "{found}");
    assert_eq!(found["labels"]["job"], "rollcall");
    assert_eq!(
        found["discoveredLabels"]["__meta_rollcall_meta_version"], "7",
        "{found}"
    );
    assert_eq!(
        found["scrapeUrl"],
        format!("{}/metrics", hello.url).as_str(),
        "{found}"
    );
    // The service leaves: Prometheus drops it at its next refresh.
    drop(hello);
    eventually(Duration::from_secs(30), "the target to go", || {
        let (prometheus, target) = (&prometheus, target.clone());
        async move {
            let gone = !prometheus
                .active_targets()
                .await
                .iter()
                .any(|t| t["labels"]["instance"] == target.as_str());
            gone.then_some(())
        }
    })
    .await;
}

/// `dig @127.0.0.1 -p PORT NAME TYPE`: the response status and the answer
/// section's records (`name ttl class type data`).
pub async fn dig(port: u16, name: &str, kind: &str, extra: &[&str]) -> (String, Vec<String>) {
    let mut args = vec![
        "@127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "+time=2".to_owned(),
        "+tries=2".to_owned(),
        "+noall".to_owned(),
        "+comments".to_owned(),
        "+answer".to_owned(),
        name.to_owned(),
        kind.to_owned(),
    ];
    args.extend(extra.iter().map(|e| (*e).to_owned()));
    let out = tokio::process::Command::new("dig")
        .args(&args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("dig did not run ({e}): `apt-get install bind9-dnsutils` (./scripts/test.sh installs it)")
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's answer: {text}"))
        .to_owned();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

/// A registry with fast checks answering DNS, and its DNS port. Port 0: the
/// registry picks one free for UDP and TCP alike and says which before it
/// announces itself (a port picked here could be taken by another test
/// before the registry binds it).
async fn registry_with_dns() -> (ChildProcess, u16) {
    let mut args = FAST_CHECKS.to_vec();
    args.extend(["--dns-addr", "127.0.0.1:0"]);
    let registry = registry(&args).await;
    let port: u16 = registry
        .before
        .iter()
        .find_map(|l| l.strip_prefix("answering DNS on 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no DNS address announced: {:?}", registry.before));
    (registry, port)
}

#[tokio::test]
async fn dig_gets_a_and_srv_answers_for_a_passing_service_and_none_for_the_rest() {
    let (registry, port) = registry_with_dns().await;
    let reg = registry.url.clone();
    let hello = hello(&reg, "Dns_Svc", &[]).await;
    wait_registered(&reg, &hello.url).await;
    wait_status(&reg, &hello.url, "passing").await;
    let hello_port = port_of(&hello.url).to_owned();
    let dead_url = refused_url();
    register_ok(
        &reg,
        &serde_json::json!({"ServiceName": "Sick", "ServiceURL": dead_url,
            "HeartbeatURL": format!("{dead_url}/heartbeat")}),
    )
    .await;
    wait_status(&reg, &dead_url, "critical").await;

    // A: the passing instance's address; names are case-insensitive.
    let (status, answers) = dig(port, "dns_svc.service.rollcall", "A", &[]).await;
    assert_eq!(status, "NOERROR");
    assert_eq!(
        answers,
        ["dns_svc.service.rollcall. 0 IN A 127.0.0.1"],
        "{answers:?}"
    );
    let (_, upper) = dig(port, "DNS_SVC.Service.Rollcall", "A", &[]).await;
    assert_eq!(upper.len(), 1, "{upper:?}");
    // SRV: its port, and a target whose address comes along.
    let (status, answers) = dig(port, "Dns_Svc.service.rollcall", "SRV", &[]).await;
    assert_eq!(status, "NOERROR");
    assert_eq!(
        answers,
        [format!(
            "dns_svc.service.rollcall. 0 IN SRV 1 1 {hello_port} 7f000001.addr.rollcall."
        )],
        "{answers:?}"
    );
    let (_, target) = dig(port, "7f000001.addr.rollcall", "A", &[]).await;
    assert_eq!(target, ["7f000001.addr.rollcall. 0 IN A 127.0.0.1"]);
    // The same over TCP, and the RFC 2782 form.
    let (_, tcp) = dig(port, "_dns_svc._tcp.service.rollcall", "SRV", &["+tcp"]).await;
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    // A critical service: registered, so no NXDOMAIN, but no records.
    let (status, answers) = dig(port, "sick.service.rollcall", "A", &[]).await;
    assert_eq!(
        (status.as_str(), answers.len()),
        ("NOERROR", 0),
        "{answers:?}"
    );
    let (_, answers) = dig(port, "sick.service.rollcall", "SRV", &[]).await;
    assert!(answers.is_empty(), "{answers:?}");
    // Unknown services, and names outside the zone.
    let (status, _) = dig(port, "nobody.service.rollcall", "A", &[]).await;
    assert_eq!(status, "NXDOMAIN");
    let (status, _) = dig(port, "example.com", "A", &[]).await;
    assert_eq!(status, "REFUSED");
    // A large answer: over UDP at most 1,232 bytes whatever the query asks
    // (truncated, `tc`), whole over TCP.
    for i in 0..60 {
        register_ok(
            &reg,
            &serde_json::json!({"ServiceName": "Many", "ServiceURL": format!("http://127.0.0.1:{}", 20_000 + i)}),
        )
        .await;
    }
    let (_, udp) = dig(
        port,
        "many.service.rollcall",
        "SRV",
        &["+bufsize=65000", "+ignore"],
    )
    .await;
    assert!(udp.len() < 60, "{} records over UDP", udp.len());
    let full = tokio::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+bufsize=65000",
            "+ignore",
        ])
        .args(["many.service.rollcall", "SRV"])
        .output()
        .await
        .unwrap();
    let full = String::from_utf8_lossy(&full.stdout);
    assert!(full.contains("udp: 1232") && full.contains(" tc"), "{full}");
    let size: usize = full
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(size <= 1232, "{size} bytes over UDP");
    let (_, tcp) = dig(port, "many.service.rollcall", "SRV", &["+tcp"]).await;
    assert_eq!(tcp.len(), 60);
    // The instance goes: the next answer has no record (TTL 0).
    drop(hello);
    eventually(Duration::from_secs(10), "the A record to go", || async {
        let (status, answers) = dig(port, "dns_svc.service.rollcall", "A", &[]).await;
        answers.is_empty().then_some(status)
    })
    .await;
}

/// Sends two records through the real OpenTelemetry SDK and its OTLP/HTTP
/// exporter (batching, blocking reqwest client) in `protocol`.
fn export_with_the_otel_sdk(
    endpoint: &str,
    service: &str,
    protocol: opentelemetry_otlp::Protocol,
    gzip: bool,
) {
    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_otlp::WithHttpConfig as _;
    let mut builder = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5));
    if gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = builder.build().unwrap();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", "i-1"))
        .with_attribute(opentelemetry::KeyValue::new(
            "deployment.environment",
            "test",
        ))
        .build();
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let logger = provider.logger("checkout.payments");
    let mut warn = logger.create_log_record();
    warn.set_severity_number(Severity::Warn);
    warn.set_severity_text("WARN");
    warn.set_body("payment declined".into());
    warn.add_attribute("order.id", 1234_i64);
    warn.add_attribute("customer", "ada");
    warn.set_trace_context(
        opentelemetry::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        None,
    );
    logger.emit(warn);
    let mut info = logger.create_log_record();
    info.set_severity_number(Severity::Info);
    info.set_body("order placed".into());
    logger.emit(info);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_logs_come_back_with_their_attributes_in_both_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &[]).await;
    let base = log.url.clone();
    let endpoint = format!("{base}/v1/logs");
    for (service, protocol, gzip) in [
        (
            "otel-binary",
            opentelemetry_otlp::Protocol::HttpBinary,
            false,
        ),
        ("otel-json", opentelemetry_otlp::Protocol::HttpJson, false),
        // As the OpenTelemetry Collector sends by default.
        ("otel-gzip", opentelemetry_otlp::Protocol::HttpBinary, true),
    ] {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || {
            export_with_the_otel_sdk(&endpoint, service, protocol, gzip)
        })
        .await
        .unwrap();
        let records = query_logs(&base, &format!("service={service}&order=asc")).await;
        assert_eq!(records.len(), 2, "{service}: {records:?}");
        let warn = &records[0];
        assert_eq!(warn["level"], "warn", "{warn}");
        assert_eq!(warn["message"], "payment declined");
        assert_eq!(warn["instance"], "i-1");
        let fields = &warn["fields"];
        assert_eq!(fields["order.id"], 1234, "{fields}");
        assert_eq!(fields["customer"], "ada");
        assert_eq!(fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(fields["span_id"], "00f067aa0ba902b7");
        assert_eq!(fields["otel.scope"], "checkout.payments");
        assert_eq!(fields["resource.deployment.environment"], "test");
        assert_eq!(
            (records[1]["level"].as_str(), records[1]["message"].as_str()),
            (Some("info"), Some("order placed"))
        );
        // A field value is searchable like any other.
        let found = query_logs(&base, &format!("service={service}&contains=ada")).await;
        assert_eq!(found.len(), 1, "{found:?}");
    }

    // A malformed export is a 400 in its encoding and stores nothing.
    let newest =
        |records: Vec<serde_json::Value>| records.first().map(|r| r["seq"].as_u64().unwrap());
    let before = newest(query_logs(&base, "limit=1").await);
    let client = reqwest::Client::new();
    let garbage = client
        .post(&endpoint)
        .header("content-type", "application/x-protobuf")
        .body(vec![0x0a, 0xff, 0xff, 0xff, 0x0f])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(garbage.headers()["content-type"], "application/x-protobuf");
    let bad_json = client
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(r#"{"resourceLogs": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let body: serde_json::Value = bad_json.json().await.unwrap();
    assert_eq!(body["code"], 3, "{body}");
    assert_eq!(body["error"]["code"], "malformed_export", "{body}");
    assert_eq!(
        newest(query_logs(&base, "limit=1").await),
        before,
        "a malformed export stored nothing"
    );

    // An export sent again (its answer lost, say) is acknowledged and not
    // stored twice: each record's id is a hash of what it holds.
    let again = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-retry"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1796250000000000000", "severityNumber": 9, "body": {"stringValue": "sent twice"}},
            {"timeUnixNano": "1796250000000000001", "severityNumber": 9, "body": {"stringValue": "sent twice"}}
        ]}]
    }]});
    for _ in 0..2 {
        let answer = client.post(&endpoint).json(&again).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(query_logs(&base, "service=otel-retry").await.len(), 2);
    let before = newest(query_logs(&base, "limit=1").await);

    // All or nothing: one record past the size limit, and neither is stored.
    let big = "x".repeat(70 * 1024);
    let export = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-big"}}]},
        "scopeLogs": [{"logRecords": [
            {"severityNumber": 9, "body": {"stringValue": "small"}},
            {"severityNumber": 9, "body": {"stringValue": big}}
        ]}]
    }]});
    let too_big = client.post(&endpoint).json(&export).send().await.unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(newest(query_logs(&base, "limit=1").await), before);
    // A gzip bomb is refused by what it unpacks to (413), and an encoding
    // the service cannot read is a 415, not misread.
    let bomb = gzip(&vec![b' '; 9 << 20]);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let bombed = client
        .post(&endpoint)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(bombed.status(), 413);
    let brotli = client
        .post(&endpoint)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(vec![0x0b, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status(), 415);
    assert_eq!(newest(query_logs(&base, "limit=1").await), before);
}

#[tokio::test]
async fn dns_queries_are_counted_not_logged() {
    let (registry, port) = registry_with_dns().await;
    let reg = registry.url.clone();
    // A log service the registry forwards its own records to.
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", &reg, &[]).await;
    wait_status(&reg, &log.url, "passing").await;
    for _ in 0..3 {
        let (status, _) = dig(port, "logservice.service.rollcall", "A", &[]).await;
        assert_eq!(status, "NOERROR");
    }
    let (status, _) = dig(port, "nobody.service.rollcall", "A", &[]).await;
    assert_eq!(status, "NXDOMAIN");
    assert_eq!(
        metric(&reg, "rollcall_registry_dns_queries_total").await,
        Some(4.0)
    );
    assert_eq!(
        metric(&reg, "rollcall_registry_dns_nxdomain_total").await,
        Some(1.0)
    );
    // A record the registry logs after the queries: once it is stored,
    // anything logged before it would be too.
    let marker = FakeService::start().await;
    register_ok(&reg, &marker.registration("DnsMarker", &[])).await;
    eventually(
        Duration::from_secs(20),
        "the registry's record of the marker",
        || async { (!query_logs(&log.url, "contains=dnsmarker").await.is_empty()).then_some(()) },
    )
    .await;
    let about_dns = query_logs(&log.url, "contains=logservice.service.rollcall").await;
    assert!(
        about_dns.is_empty(),
        "DNS queries were logged: {about_dns:?}"
    );
}
