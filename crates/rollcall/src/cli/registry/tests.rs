//! Tests of the parent module.

use super::*;

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
