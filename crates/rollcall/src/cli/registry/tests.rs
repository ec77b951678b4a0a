//! Tests of the parent module.

use super::*;

fn state(entries: &[(&str, &str, &str)]) -> Known {
    entries
        .iter()
        .map(|(u, n, s)| ((*u).to_owned(), ((*n).to_owned(), (*s).to_owned())))
        .collect()
}

#[test]
fn a_reconnected_watch_prints_what_changed_meanwhile() {
    let before = state(&[("http://a", "A", "passing"), ("http://b", "B", "passing")]);
    let after = state(&[
        ("http://a", "A", "critical"),
        ("http://c", "C", "unchecked"),
    ]);
    let changes = differences(&before, &after, "now");
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.kind.as_str(), c.url.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("critical", "http://a"),
            ("registered", "http://c"),
            ("deregistered", "http://b")
        ]
    );
    let mut known = before;
    let expired = Change {
        kind: "expired".into(),
        ..change("http://a")
    };
    absorb(&mut known, &expired);
    assert!(!known.contains_key("http://a"));
}

#[test]
fn tables_align_columns() {
    let rows = vec![
        vec![
            "LogService".to_owned(),
            "http://a".to_owned(),
            "passing".to_owned(),
        ],
        vec![
            "Portal".to_owned(),
            "http://bb".to_owned(),
            "critical".to_owned(),
        ],
    ];
    let text = table(&["SERVICE", "URL", "STATUS"], &rows, |_, c| c.to_owned());
    assert_eq!(
        text,
        "SERVICE     URL        STATUS\nLogService  http://a   passing\nPortal      http://bb  critical"
    );
}

fn set(names: &[&str]) -> std::collections::BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn a_service_filter_is_a_name_ignoring_case_else_a_part_of_one() {
    let names = ["GradingService", "LogService", "Portal"];
    assert_eq!(
        pick_services(names, "gradingservice"),
        Picked::Exact(set(&["GradingService"]))
    );
    assert_eq!(
        pick_services(names, "grad"),
        Picked::Partial(set(&["GradingService"]))
    );
    assert_eq!(
        pick_services(names, "service"),
        Picked::Partial(set(&["GradingService", "LogService"]))
    );
    assert_eq!(pick_services(names, "billing"), Picked::None);
}

fn change(url: &str) -> Change {
    Change {
        at: "t".into(),
        revision: None,
        kind: String::new(),
        service: "A".into(),
        url: url.into(),
        detail: String::new(),
    }
}

#[test]
fn an_instance_coming_back_says_it_is_back_in_discovery() {
    let plain = Style { on: false };
    for kind in ["reregistered", "maintenance_off", "recovered"] {
        let line = format_change(
            &Change {
                kind: kind.into(),
                ..change("http://a")
            },
            plain,
        );
        assert!(line.ends_with("(back in discovery)"), "{line}");
    }
    let critical = Change {
        kind: "critical".into(),
        detail: "HTTP 500".into(),
        ..change("http://a")
    };
    assert!(format_change(&critical, plain).ends_with("(HTTP 500)"));
}
