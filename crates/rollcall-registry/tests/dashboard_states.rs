//! One truth per state on the dashboard: an instance not yet checked is in
//! discovery (dependents are told of it), and every count on the page says
//! so alike — the cards, its group and the graph.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollcall_registry::RegistryConfig;
use rollcall_testkit::router::call;

#[tokio::test]
async fn an_unchecked_instance_is_in_discovery_on_every_part_of_the_page() {
    // No check loop runs here: the instance stays unchecked.
    let (router, _registry, _stop) =
        rollcall_testkit::router::registry(RegistryConfig::for_tests());
    let body = r#"{"ServiceName":"Fresh","ServiceURL":"http://127.0.0.1:9/fresh","HeartbeatURL":"http://127.0.0.1:9/fresh/heartbeat"}"#;
    assert_eq!(call(&router, "POST", "/services", body).await.status, 200);
    let page = call(&router, "GET", "/dashboard/live", "").await;
    assert_eq!(page.status, 200);
    let html = page.body;
    assert!(html.contains(r#"<b id="count-passing">1</b>"#), "the cards");
    assert!(html.contains("1 in discovery"), "its group");
    assert!(
        !html.contains("not passing"),
        "no second truth in its group"
    );
    assert!(html.contains("1/1 in discovery"), "the graph");
    assert!(
        html.contains(">unchecked<"),
        "its row says it is not checked yet"
    );
}
