//! Tokens (`--token`, `ROLLCALL_TOKEN`): with one set, anonymous writes are
//! refused with 401 on the registry and the log service, while the SDK and
//! the CLI, given the same variable, keep working; `--trust-classic-from`
//! lets unmodified classic clients in from listed addresses;
//! `--protect-reads` covers reads too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

const TOKEN: &str = "e2e-token-7f3a";

async fn post_with(url: &str, token: Option<&str>, body: &str) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn with_a_token_anonymous_writes_are_refused_and_the_sdk_and_cli_send_it() {
    let reg = ChildProcess::start(
        &rollcall_bin(),
        &["registry", "--addr", "127.0.0.1:0", "--in-memory"],
        &[("ROLLCALL_TOKEN", TOKEN)],
    )
    .await;
    let fake = FakeService::start().await;
    let answer = register_raw(&reg.url, &fake.registration("A", &[])).await;
    assert_eq!(answer.status(), 401);
    assert!(answer.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let registration = fake.registration("A", &[]).to_string();
    let services = format!("{}/services", reg.url);
    assert_eq!(
        post_with(&services, Some("not-it"), &registration).await,
        401
    );
    // Reads stay open by default; nothing was stored.
    assert!(catalog(&reg.url).await.is_empty());
    assert_eq!(post_with(&services, Some(TOKEN), &registration).await, 200);

    // The SDK, given the same variable, registers.
    let hello = ChildProcess::start(
        &example_bin("hello"),
        &["--name", "Hello", "--registry", &reg.url],
        &[("ROLLCALL_TOKEN", TOKEN)],
    )
    .await;
    wait_registered(&reg.url, &hello.url).await;
    // An anonymous deregistration is refused; the CLI with the variable is not.
    assert_eq!(deregister_raw(&reg.url, &fake.url).await.status(), 401);
    let (ok, _, err) = run_rollcall(&["deregister", "--registry", &reg.url, &fake.url]).await;
    assert!(!ok, "without the token the CLI is refused");
    assert!(err.contains("set ROLLCALL_TOKEN"), "{err}");
    let output = tokio::process::Command::new(rollcall_bin())
        .args(["deregister", "--registry", &reg.url, &fake.url])
        .env("ROLLCALL_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(instance(&reg.url, &fake.url).await.is_none());
}

#[tokio::test]
async fn trusted_classic_addresses_write_without_a_token_and_reads_can_be_protected() {
    let trusting = registry(&["--token", TOKEN, "--trust-classic-from", "127.0.0.0/8"]).await;
    let fake = FakeService::start().await;
    let answer = register_raw(&trusting.url, &fake.registration("A", &[])).await;
    assert_eq!(
        answer.status(),
        200,
        "a classic client on a trusted address"
    );
    // But not as the log service: SDK services send it their token.
    let impostor = FakeService::start().await;
    let answer = register_raw(&trusting.url, &impostor.registration("LogService", &[])).await;
    assert_eq!(answer.status(), 403, "an untokened log service");
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "name_needs_token", "{error}");
    assert!(instance(&trusting.url, &impostor.url).await.is_none());
    let status = send_with_token(
        reqwest::Client::new()
            .post(format!("{}/services", trusting.url))
            .json(&impostor.registration("LogService", &[])),
        TOKEN,
    )
    .await;
    assert_eq!(status, 200, "the token's holder may");

    let guarded = registry(&["--token", TOKEN, "--protect-reads"]).await;
    let url = format!("{}/services", guarded.url);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    let status = send_with_token(reqwest::Client::new().get(&url), TOKEN).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_log_service_refuses_anonymous_records_when_it_has_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_service(dir.path(), "127.0.0.1:0", "", &["--token", TOKEN]).await;
    let batch = r#"[{"service":"A","message":"hello"}]"#;
    let ingest = format!("{}/v1/logs", log.url);
    assert_eq!(post_with(&ingest, None, batch).await, 401);
    assert_eq!(
        post_with(&format!("{}/log", log.url), None, "hi").await,
        401
    );
    assert_eq!(post_with(&ingest, Some(TOKEN), batch).await, 200);
    assert_eq!(
        query_logs(&log.url, "").await.len(),
        1,
        "only the tokened batch"
    );
}

#[tokio::test]
async fn the_dashboard_reads_a_log_service_that_protects_reads_with_the_registry_token() {
    let reg = registry(&["--token", TOKEN]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = ChildProcess::start(
        &rollcall_bin(),
        &[
            "log",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--registry",
            &reg.url,
            "--token",
            TOKEN,
            "--protect-reads",
        ],
        &[("ROLLCALL_TOKEN", TOKEN)],
    )
    .await;
    let batch = r#"[{"service":"A","message":"seen-on-the-dashboard"}]"#;
    assert_eq!(
        post_with(&format!("{}/v1/logs", log.url), Some(TOKEN), batch).await,
        200
    );
    assert_eq!(
        reqwest::get(format!("{}/v1/logs", log.url))
            .await
            .unwrap()
            .status(),
        401,
        "the log service protects its reads"
    );
    eventually(
        std::time::Duration::from_secs(15),
        "the dashboard to show the record",
        || async {
            let page = get_text(&format!("{}/", reg.url)).await?;
            page.contains("seen-on-the-dashboard").then_some(())
        },
    )
    .await;
}
