//! Tests of the parent module.

use rollcall_proto::{ServiceName, ServiceUrl};

use super::*;

fn event(kind: EventKind, service: &str, url: &str, at: u64) -> Event {
    Event {
        at: Timestamp(at),
        revision: at,
        seq: at,
        kind,
        service: ServiceName::parse(service).unwrap(),
        url: ServiceUrl::parse(url).unwrap(),
        detail: None,
    }
}

#[test]
fn repeated_events_fold_into_one_row_with_a_count() {
    let mut events = vec![event(EventKind::Registered, "A", "http://a", 1)];
    for at in 2..50 {
        events.push(event(EventKind::DeliveryFailed, "Dead", "http://dead", at));
    }
    events.push(event(EventKind::Critical, "A", "http://a", 60));
    let rows = fold_events(events, 10);
    let kinds: Vec<(&str, usize)> = rows.iter().map(|r| (r.kind, r.times)).collect();
    assert_eq!(
        kinds,
        [("critical", 1), ("delivery_failed", 48), ("registered", 1)]
    );
    assert!(!rows[1].first.is_empty());
}
