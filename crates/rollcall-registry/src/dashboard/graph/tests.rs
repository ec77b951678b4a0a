//! Tests of the parent module.

use super::*;

fn svc(name: &str, passing: usize, critical: usize, requires: &[&str]) -> ServiceInfo {
    ServiceInfo {
        name: name.into(),
        passing,
        critical,
        requires: requires.iter().map(|r| (*r).to_owned()).collect(),
    }
}

#[test]
fn dependents_stand_left_of_what_they_require() {
    let g = layout(&[
        svc("LogService", 1, 0, &[]),
        svc("GradingService", 1, 1, &["LogService"]),
        svc("Portal", 0, 1, &["GradingService", "LogService"]),
    ]);
    let x = |n: &str| g.nodes.iter().find(|node| node.name == n).unwrap().x;
    assert!(x("Portal") < x("GradingService") && x("GradingService") < x("LogService"));
    let health = |n: &str| g.nodes.iter().find(|node| node.name == n).unwrap().health;
    assert_eq!(health("LogService"), NodeHealth::Healthy);
    assert_eq!(health("GradingService"), NodeHealth::Degraded);
    assert_eq!(health("Portal"), NodeHealth::Down);
    let edges: Vec<(&str, &str)> = g
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(
        edges,
        vec![
            ("GradingService", "LogService"),
            ("Portal", "GradingService"),
            ("Portal", "LogService")
        ]
    );
    assert!(g.edges.iter().all(|e| !e.broken));
}

#[test]
fn missing_providers_are_visible_and_their_edges_broken() {
    let g = layout(&[svc("Portal", 1, 0, &["GradingService"])]);
    let missing = g.nodes.iter().find(|n| n.name == "GradingService").unwrap();
    assert_eq!(missing.health, NodeHealth::Missing);
    assert!(g.edges[0].broken);
}

/// Whether the segment from `p` to `q` passes through the inside of the box
/// at `(x, y)` (touching its border does not count).
fn crosses_box(p: (u32, u32), q: (u32, u32), (x, y): (u32, u32)) -> bool {
    let (x0, y0) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
    let (x1, y1) = (f64::from(x + NODE_W) - 0.5, f64::from(y + NODE_H) - 0.5);
    // Sample the segment finely; boxes are far larger than a step.
    let steps = 400;
    (0..=steps).any(|i| {
        let t = f64::from(i) / f64::from(steps);
        let px = f64::from(p.0) + (f64::from(q.0) - f64::from(p.0)) * t;
        let py = f64::from(p.1) + (f64::from(q.1) - f64::from(p.1)) * t;
        px > x0 && px < x1 && py > y0 && py < y1
    })
}

/// A catalog of `n` services with dependencies drawn from a fixed seed:
/// chains, fan-in, fan-out, edges that skip columns, and a cycle.
fn generated(n: usize) -> Vec<ServiceInfo> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut services: Vec<ServiceInfo> = (0..n)
        .map(|i| svc(&format!("Service{i:02}"), 1, 0, &[]))
        .collect();
    for i in 0..n {
        let wanted = 1 + (next() % 4) as usize;
        for _ in 0..wanted {
            let j = (next() % n as u64) as usize;
            if j > i {
                let name = services[j].name.clone();
                services[i].requires.insert(name);
            }
        }
    }
    // A cycle and a name that is required but never registered.
    let first = services[0].name.clone();
    services[n - 1].requires.insert(first);
    services[3].requires.insert("NeverRegistered".into());
    services
}

#[test]
fn no_edge_crosses_a_box_it_does_not_connect_on_thirty_services() {
    let g = layout(&generated(30));
    assert_eq!(g.nodes.len(), 31);
    assert!(g.edges.len() > 30, "{} edges", g.edges.len());
    for e in &g.edges {
        for node in &g.nodes {
            if node.name == e.from || node.name == e.to {
                continue;
            }
            for pair in e.points.windows(2) {
                assert!(
                    !crosses_box(pair[0], pair[1], (node.x, node.y)),
                    "{} → {} crosses {}",
                    e.from,
                    e.to,
                    node.name
                );
            }
        }
        // It starts at its source and ends at its target.
        let at = |name: &str| g.nodes.iter().find(|n| n.name == name).unwrap();
        let (first, last) = (e.points[0], *e.points.last().unwrap());
        let touches = |p: (u32, u32), n: &Node| {
            (p.0 == n.x || p.0 == n.x + NODE_W) && p.1 == n.y + NODE_H / 2
        };
        assert!(touches(first, at(&e.from)), "{} leaves its box", e.from);
        assert!(touches(last, at(&e.to)), "{} → {} arrives", e.from, e.to);
    }
    // No two boxes overlap.
    for (i, a) in g.nodes.iter().enumerate() {
        for b in &g.nodes[i + 1..] {
            let apart = a.x + NODE_W <= b.x
                || b.x + NODE_W <= a.x
                || a.y + NODE_H <= b.y
                || b.y + NODE_H <= a.y;
            assert!(apart, "{} overlaps {}", a.name, b.name);
        }
    }
}

#[test]
fn crossing_reduction_untangles_a_crossed_ladder() {
    // A1 → B2 and A2 → B1 in the input order cross; the sweep fixes it.
    let g = layout(&[
        svc("A1", 1, 0, &["B2"]),
        svc("A2", 1, 0, &["B1"]),
        svc("B1", 1, 0, &[]),
        svc("B2", 1, 0, &[]),
    ]);
    let y = |n: &str| g.nodes.iter().find(|node| node.name == n).unwrap().y;
    assert_eq!(
        y("A1") < y("A2"),
        y("B2") < y("B1"),
        "parallel, not crossed"
    );
}

#[test]
fn long_names_are_shortened_with_the_full_name_kept() {
    let long = "AVeryLongServiceNameThatDoesNotFit";
    let g = layout(&[svc(long, 1, 0, &[])]);
    assert_eq!(g.nodes[0].name, long);
    assert_eq!(g.nodes[0].short.chars().count(), NAME_FITS);
    assert!(g.nodes[0].short.ends_with('…'));
    assert_eq!(shorten("Portal", NAME_FITS), "Portal");
}

#[test]
fn cycles_and_empty_catalogs_do_not_hang() {
    let g = layout(&[svc("A", 1, 0, &["B"]), svc("B", 1, 0, &["A"])]);
    assert_eq!(g.nodes.len(), 2);
    assert_eq!(g.edges.len(), 2);
    let empty = layout(&[]);
    assert!(empty.nodes.is_empty() && empty.width > 0);
}
