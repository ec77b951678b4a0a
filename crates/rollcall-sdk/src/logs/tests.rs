//! Tests of the parent module.

use super::*;
use tracing_subscriber::prelude::*;

#[test]
fn events_become_records_and_the_buffer_is_bounded() {
    let (layer, forwarder) = layer_with_buffer("Tester", 3);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        // (This module's own target is never forwarded: log as the app.)
        tracing::warn!(target: "app", student = 7, ok = true, "grade saved");
        tracing::info!(target: "hyper::proto", "not forwarded");
        for i in 0..4 {
            tracing::info!(target: "app", i, "filler");
        }
    });
    assert_eq!(forwarder.buffered(), 3);
    assert_eq!(
        forwarder.metrics().dropped.get(),
        2,
        "the oldest two were evicted"
    );
    let buffer = forwarder.shared.lock();
    let first = &buffer[0].record;
    assert_eq!(first.message, "filler");
    assert_eq!(first.fields["i"], 1);
    let ids: std::collections::HashSet<_> = buffer.iter().map(|p| p.record.id.clone()).collect();
    assert_eq!(ids.len(), 3, "ids are unique");
}

#[test]
fn fields_and_messages_are_bounded() {
    let (layer, forwarder) = layer_with_buffer("Tester", 10);
    let subscriber = tracing_subscriber::registry().with(layer);
    let long = "x".repeat(MAX_MESSAGE * 2);
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(target: "app", detail = %long, "{long}");
    });
    let buffer = forwarder.shared.lock();
    let r = &buffer[0].record;
    assert!(r.message.len() < MAX_MESSAGE + 20);
    assert!(r.fields["detail"].as_str().unwrap().len() < MAX_FIELD + 20);
    assert_eq!(r.level, "error");
    assert_eq!(r.service, "Tester");
}
