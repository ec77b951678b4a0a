//! The registry's calls go where a registration says and nowhere else: a
//! redirect is an answer (a failed check, a failed delivery), never an
//! address to call next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

fn addr_of(fake: &FakeService) -> std::net::SocketAddr {
    fake.url.trim_start_matches("http://").parse().unwrap()
}

/// A registry checking fast, a fake that will redirect, and its target.
async fn redirect_setup() -> (ChildProcess, FakeService, FakeService) {
    let reg = registry(FAST_CHECKS).await;
    (reg, FakeService::start().await, FakeService::start().await)
}

#[tokio::test]
async fn a_redirecting_heartbeat_is_a_failed_check_not_a_fetch_elsewhere() {
    let (reg, redirector, victim) = redirect_setup().await;
    redirector.set_heartbeat(Mode::Redirect(addr_of(&victim)));
    register_ok(&reg.url, &redirector.registration("A", &[])).await;
    wait_status(&reg.url, &redirector.url, "critical").await;
    let entry = instance(&reg.url, &redirector.url).await.unwrap();
    assert!(
        entry["LastCheckError"].as_str().unwrap().contains("307"),
        "{entry}"
    );
    assert!(redirector.heartbeats() >= 2);
    assert_eq!(victim.heartbeats(), 0, "the redirect was not followed");
}

#[tokio::test]
async fn a_redirecting_update_url_gets_no_patch_through_to_the_target() {
    let (reg, redirector, victim) = redirect_setup().await;
    redirector.set_patch(Mode::Redirect(addr_of(&victim)));
    let log = FakeService::start().await;
    register_ok(&reg.url, &log.registration("LogService", &[])).await;
    register_raw(&reg.url, &redirector.registration("B", &["LogService"])).await;
    // Deliveries are attempted (and fail) while the victim hears nothing.
    eventually(
        std::time::Duration::from_secs(10),
        "a failed delivery",
        || async {
            let entry = instance(&reg.url, &redirector.url).await?;
            (entry["Delivery"]["Failed"].as_u64().unwrap_or(0) > 0).then_some(())
        },
    )
    .await;
    assert!(victim.patches().is_empty(), "the redirect was not followed");
}

#[tokio::test]
async fn a_registration_naming_another_address_is_refused_with_the_url_named() {
    let reg = registry(&[]).await;
    let fake = FakeService::start().await;
    let mut body = fake.registration("A", &[]);
    body["HeartbeatURL"] = serde_json::json!("http://10.255.0.1:9/heartbeat");
    let answer = register_raw(&reg.url, &body).await;
    assert_eq!(answer.status(), 403);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "callback_refused");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("HeartbeatURL") && message.contains("10.255.0.1"),
        "{message}"
    );
    assert!(instance(&reg.url, &fake.url).await.is_none());
    // Another host's instance cannot be deregistered from here either.
    let answer = deregister_raw(&reg.url, "http://10.255.0.1:9").await;
    assert_eq!(answer.status(), 403);

    // --allow-callbacks widens the rule; a token lifts it.
    let widened = registry(&["--allow-callbacks", "10.0.0.0/8"]).await;
    assert_eq!(register_raw(&widened.url, &body).await.status(), 200);
    let tokened = registry(&["--token", "t0ken"]).await;
    let status = send_with_token(
        reqwest::Client::new()
            .post(format!("{}/services", tokened.url))
            .json(&body),
        "t0ken",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn only_an_instance_itself_may_bind_a_watch_stream_to_it() {
    let reg = registry(&[]).await;
    let answer = reqwest::get(format!("{}/v1/watch?instance=http://10.255.0.1:9", reg.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
}

/// Maintenance names an instance like a deregistration does, and passes the
/// same guard: a client admitted without the token (a trusted classic
/// range) cannot hold another host's instance out of discovery; the token's
/// holder can.
#[tokio::test]
async fn maintenance_on_another_hosts_instance_is_refused_like_its_deregistration() {
    let reg = registry(&["--token", "t0ken", "--trust-classic-from", "127.0.0.0/8"]).await;
    let fake = FakeService::start().await;
    let mut body = fake.registration("Elsewhere", &[]);
    body["ServiceURL"] = serde_json::json!("http://10.255.0.1:9");
    body["HeartbeatURL"] = serde_json::json!("http://10.255.0.1:9/heartbeat");
    let client = reqwest::Client::new();
    let status = send_with_token(
        client.post(format!("{}/services", reg.url)).json(&body),
        "t0ken",
    )
    .await;
    assert_eq!(status, 200);
    let switch = serde_json::json!({"ServiceURL": "http://10.255.0.1:9", "Enable": true});
    // Untokened, from a trusted range: refused, and nothing changed.
    let answer = client
        .put(format!("{}/v1/maintenance", reg.url))
        .json(&switch)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "callback_refused", "{error}");
    let shown = instance(&reg.url, "http://10.255.0.1:9").await.unwrap();
    assert!(shown["MaintenanceSince"].is_null(), "{shown}");
    // With the token: done.
    let status = send_with_token(
        client
            .put(format!("{}/v1/maintenance", reg.url))
            .json(&switch),
        "t0ken",
    )
    .await;
    assert_eq!(status, 200);
    let shown = instance(&reg.url, "http://10.255.0.1:9").await.unwrap();
    assert!(!shown["MaintenanceSince"].is_null(), "{shown}");
}
