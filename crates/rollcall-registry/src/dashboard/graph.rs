//! The dependency graph, laid out for SVG. Pure: names and edges in, boxes and
//! paths out.
//!
//! A service's column is its depth: how long the chain of services it
//! requires is. Dependents stand left of what they require, so every arrow
//! points right ("Portal → GradingService → LogService"). A name that is
//! required but has no registered instance is a *missing* node. Cycles are
//! tolerated (depth is capped at the number of nodes).

use std::collections::{BTreeMap, BTreeSet};

/// How a service is doing, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Every instance passing.
    Healthy,
    /// Some instances critical, at least one passing.
    Degraded,
    /// Instances registered, none passing.
    Down,
    /// Required by someone, never registered.
    Missing,
}

impl NodeHealth {
    pub fn class(self) -> &'static str {
        match self {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Degraded => "degraded",
            NodeHealth::Down => "down",
            NodeHealth::Missing => "missing",
        }
    }
}

/// One service as the graph needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub passing: usize,
    pub critical: usize,
    pub requires: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub x: u32,
    pub y: u32,
    pub health: NodeHealth,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// SVG path data.
    pub path: String,
    /// The required service has no passing instance.
    pub broken: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

pub const NODE_W: u32 = 180;
pub const NODE_H: u32 = 56;
const COL_GAP: u32 = 90;
const ROW_GAP: u32 = 28;
const MARGIN: u32 = 16;
/// Room above the first row for edges that arc over a column.
const ARC_ROOM: u32 = 40;

/// Lays out `services`.
pub fn layout(services: &[ServiceInfo]) -> Graph {
    let mut info: BTreeMap<String, ServiceInfo> = services
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    for s in services {
        for r in &s.requires {
            info.entry(r.clone()).or_insert_with(|| ServiceInfo {
                name: r.clone(),
                passing: 0,
                critical: 0,
                requires: BTreeSet::new(),
            });
        }
    }
    let registered: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    // depth(n) = 1 + max depth of what n requires; iterate to a fixed point,
    // capped so cycles end.
    let mut depth: BTreeMap<&str, u32> = info.keys().map(|k| (k.as_str(), 0)).collect();
    let cap = u32::try_from(info.len()).unwrap_or(u32::MAX);
    for _ in 0..info.len() {
        let mut changed = false;
        for (name, s) in &info {
            let d = s
                .requires
                .iter()
                .filter_map(|r| depth.get(r.as_str()))
                .map(|d| (d + 1).min(cap))
                .max()
                .unwrap_or(0);
            if depth.get(name.as_str()) != Some(&d) {
                depth.insert(name.as_str(), d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let max_depth = depth.values().copied().max().unwrap_or(0);
    let mut columns: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (name, d) in &depth {
        columns.entry(max_depth - d).or_default().push(name);
    }
    let mut position: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut height = 0;
    for (column, names) in &columns {
        for (row, name) in names.iter().enumerate() {
            let row = u32::try_from(row).unwrap_or(0);
            let x = MARGIN + column * (NODE_W + COL_GAP);
            let y = MARGIN + ARC_ROOM + row * (NODE_H + ROW_GAP);
            height = height.max(y + NODE_H + MARGIN);
            position.insert(name, (x, y));
        }
    }
    let width = MARGIN * 2 + (max_depth + 1) * NODE_W + max_depth * COL_GAP;
    let nodes = info
        .values()
        .map(|s| {
            let (x, y) = position.get(s.name.as_str()).copied().unwrap_or((0, 0));
            let health = if !registered.contains(s.name.as_str()) {
                NodeHealth::Missing
            } else if s.passing == 0 {
                NodeHealth::Down
            } else if s.critical > 0 {
                NodeHealth::Degraded
            } else {
                NodeHealth::Healthy
            };
            let label = match health {
                NodeHealth::Missing => "no instance".to_owned(),
                _ => format!("{}/{} passing", s.passing, s.passing + s.critical),
            };
            Node {
                name: s.name.clone(),
                x,
                y,
                health,
                label,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for s in services {
        for r in &s.requires {
            let (Some(&(x1, y1)), Some(&(x2, y2))) =
                (position.get(s.name.as_str()), position.get(r.as_str()))
            else {
                continue;
            };
            let (sx, sy) = (x1 + NODE_W, y1 + NODE_H / 2);
            let (tx, ty) = (x2, y2 + NODE_H / 2);
            let path = if tx > sx && tx - sx <= COL_GAP {
                let bend = (tx - sx) / 2;
                format!(
                    "M{sx},{sy} C{},{sy} {},{ty} {tx},{ty}",
                    sx + bend,
                    tx - bend
                )
            } else if tx > sx {
                // It skips a column: arc over the boxes in between, leaving
                // from the source's top and arriving at the target's top.
                let (sx, sy) = (x1 + NODE_W / 2, y1);
                let (tx, ty) = (x2 + NODE_W / 2, y2);
                let peak = y1.min(y2).saturating_sub(ARC_ROOM - 4);
                format!("M{sx},{sy} C{sx},{peak} {tx},{peak} {tx},{ty}")
            } else {
                // Same column or backwards (a cycle): loop around below.
                let below = y1.max(y2) + NODE_H + ROW_GAP / 2;
                format!(
                    "M{sx},{sy} C{},{below} {},{below} {tx},{ty}",
                    sx + 40,
                    tx.saturating_sub(40)
                )
            };
            let broken = info.get(r).is_none_or(|t| t.passing == 0);
            edges.push(Edge {
                from: s.name.clone(),
                to: r.clone(),
                path,
                broken,
            });
        }
    }
    Graph {
        width: width.max(NODE_W + 2 * MARGIN),
        height: height.max(NODE_H + 2 * MARGIN),
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn cycles_and_empty_catalogs_do_not_hang() {
        let g = layout(&[svc("A", 1, 0, &["B"]), svc("B", 1, 0, &["A"])]);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.edges.len(), 2);
        let empty = layout(&[]);
        assert!(empty.nodes.is_empty() && empty.width > 0);
    }
}
