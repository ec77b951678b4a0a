//! The registry's calls go where a registration says and nowhere else: a
//! redirect is an answer (a failed check, a failed delivery), never an
//! address to call next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

fn addr_of(fake: &FakeService) -> std::net::SocketAddr {
    fake.url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn a_redirecting_heartbeat_is_a_failed_check_not_a_fetch_elsewhere() {
    let reg = registry(FAST_CHECKS).await;
    let victim = FakeService::start().await;
    let redirector = FakeService::start().await;
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
    let reg = registry(FAST_CHECKS).await;
    let victim = FakeService::start().await;
    let redirector = FakeService::start().await;
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
