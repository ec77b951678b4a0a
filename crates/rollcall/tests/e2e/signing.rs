//! Signed patches (`ROLLCALL_SIGNING_KEY` on the registry and the SDK): what
//! the registry sends is applied; an unsigned (forged), wrongly signed,
//! stale or replayed patch, or one signed for another service, is refused
//! with 401 and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollcall_http::signing::SigningKey;

use crate::common::*;

const KEY: &str = "e2e-signing-key-0123456789";
const SOON: std::time::Duration = std::time::Duration::from_secs(20);

async fn send_patch(url: &str, body: &str, headers: &[(&'static str, String)]) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/services"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn signed_patches_are_applied_and_forged_stale_or_replayed_ones_are_refused() {
    let mut args = vec!["registry", "--addr", "127.0.0.1:0", "--in-memory"];
    args.extend_from_slice(FAST_CHECKS);
    let reg = ChildProcess::start(&rollcall_bin(), &args, &[("ROLLCALL_SIGNING_KEY", KEY)]).await;
    let hello = ChildProcess::start(
        &example_bin("hello"),
        &[
            "--name",
            "Hello",
            "--registry",
            &reg.url,
            "--requires",
            "Log",
        ],
        &[("ROLLCALL_SIGNING_KEY", KEY)],
    )
    .await;
    wait_registered(&reg.url, &hello.url).await;
    let log = FakeService::start().await;
    register_ok(&reg.url, &log.registration("Log", &[])).await;
    let page = || async { get_text(&hello.url).await.unwrap_or_default() };
    eventually(SOON, "the signed patch to be applied", || async {
        page().await.contains(&log.url).then_some(())
    })
    .await;
    // Its heartbeats are signed too: it keeps passing.
    wait_status(&reg.url, &hello.url, "passing").await;

    let empty = r#"{"Added":[],"Removed":[],"Resync":true}"#;
    assert_eq!(send_patch(&hello.url, empty, &[]).await, 401, "unsigned");
    let other = SigningKey::parse("some-other-signing-key").unwrap();
    let now = rollcall_proto::Timestamp::system_now().0;
    let at_hello = format!("{}/services", hello.url);
    let wrong = other.sign("POST", &at_hello, empty.as_bytes(), now);
    assert_eq!(
        send_patch(&hello.url, empty, &wrong).await,
        401,
        "another key"
    );
    let key = SigningKey::parse(KEY).unwrap();
    let stale = key.sign("POST", &at_hello, empty.as_bytes(), now - 60_000);
    assert_eq!(send_patch(&hello.url, empty, &stale).await, 401, "stale");
    // A patch the registry signed for another service (the attacker's own,
    // which it registered to receive signed patches), replayed here.
    let elsewhere = key.sign("POST", "http://127.0.0.1:9/services", empty.as_bytes(), now);
    assert_eq!(
        send_patch(&hello.url, empty, &elsewhere).await,
        401,
        "signed for another service"
    );
    assert!(page().await.contains(&log.url), "nothing was changed");

    let marker = r#"{"Added":[{"Name":"Log","URL":"http://127.0.0.1:9"}],"Removed":[]}"#;
    let signed = key.sign(
        "POST",
        &at_hello,
        marker.as_bytes(),
        rollcall_proto::Timestamp::system_now().0,
    );
    assert_eq!(send_patch(&hello.url, marker, &signed).await, 200, "signed");
    assert_eq!(
        send_patch(&hello.url, marker, &signed).await,
        401,
        "replayed"
    );
    let metrics = get_text(&format!("{}/metrics", hello.url)).await.unwrap();
    assert!(
        metrics.contains("rollcall_sdk_signatures_rejected_total 5"),
        "{metrics}"
    );
}
