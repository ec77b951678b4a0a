//! The dependency graph, laid out for SVG as a layered graph. Pure: names and
//! edges in, boxes and paths out.
//!
//! The steps of a Sugiyama layout, small enough to read:
//! 1. **Cycles** are broken by reversing the edges a depth-first search finds
//!    going back (they are still drawn, arrow towards the service required).
//! 2. **Layers**: a service's column is the length of the longest chain of
//!    services it requires, so dependents stand left of what they require and
//!    every arrow points right ("Portal → GradingService → LogService").
//! 3. **Dummies**: an edge that skips columns gets a placeholder slot in every
//!    column it passes, so it runs between boxes, never through one.
//! 4. **Crossings** are reduced by sweeping the columns left to right and back,
//!    ordering each by the mean position of its neighbours (barycentres).
//! 5. **Coordinates**: slots stack in their column; an edge is a polyline from
//!    the right side of its source through its slots to the left side of its
//!    target, each piece either in the gap between two columns or across a
//!    slot of its own.
//!
//! A name that is required but has no registered instance is a *missing*
//! node. Names longer than a box are shortened (the full name is the tooltip).

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// The name as drawn: shortened to fit the box.
    pub short: String,
    pub x: u32,
    pub y: u32,
    pub health: NodeHealth,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// The polyline's points, from the dependent to what it requires.
    pub points: Vec<(u32, u32)>,
    /// SVG path data of `points`.
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
const COL_GAP: u32 = 80;
const ROW_GAP: u32 = 24;
const MARGIN: u32 = 16;
/// Characters of a name that fit in a box at the dashboard's font size.
pub const NAME_FITS: usize = 21;
/// Barycentre sweeps (each one left to right, then right to left).
const SWEEPS: usize = 8;

/// A slot in a column: a service, or a dummy an edge passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    Service(usize),
    /// Edge `.0`'s placeholder in a column it passes.
    Dummy(usize, u32),
}

/// `name` shortened to `fits` characters, with an ellipsis when cut.
pub fn shorten(name: &str, fits: usize) -> String {
    if name.chars().count() <= fits {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(fits.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The edges a depth-first search finds going back (closing a cycle), as
/// `(from, to)` index pairs; reversing them leaves an acyclic graph.
fn back_edges(adjacent: &[Vec<usize>]) -> BTreeSet<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; adjacent.len()];
    let mut back = BTreeSet::new();
    for root in 0..adjacent.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next child index).
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some((node, child)) = stack.pop() {
            if let Some(&next) = adjacent[node].get(child) {
                stack.push((node, child + 1));
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::Open;
                        stack.push((next, 0));
                    }
                    Mark::Open => {
                        back.insert((node, next));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
            }
        }
    }
    back
}

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
    let names: Vec<&str> = info.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    // Edges as drawn (dependent → required), self-requirements left out.
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for s in info.values() {
        for r in &s.requires {
            if let (Some(&a), Some(&b)) = (index.get(s.name.as_str()), index.get(r.as_str()))
                && a != b
            {
                edges.push((a, b));
            }
        }
    }
    // 1. Break cycles.
    let mut adjacent = vec![Vec::new(); names.len()];
    for &(a, b) in &edges {
        adjacent[a].push(b);
    }
    let back = back_edges(&adjacent);
    let directed: Vec<(usize, usize)> = edges
        .iter()
        .map(|&(a, b)| {
            if back.contains(&(a, b)) {
                (b, a)
            } else {
                (a, b)
            }
        })
        .collect();
    // 2. Layers: longest path to a sink, counted from the right.
    let mut height_of = vec![0u32; names.len()];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for &(a, b) in &directed {
        out[a].push(b);
    }
    let order = topological(&out);
    for &n in order.iter().rev() {
        height_of[n] = out[n].iter().map(|&m| height_of[m] + 1).max().unwrap_or(0);
    }
    let max_height = height_of.iter().copied().max().unwrap_or(0);
    let layer_of: Vec<u32> = height_of.iter().map(|h| max_height - h).collect();
    let layers = max_height as usize + 1;
    // 3. Dummies: every edge becomes a chain of slots, one per column.
    let mut columns: Vec<Vec<Slot>> = vec![Vec::new(); layers];
    for (n, &layer) in layer_of.iter().enumerate() {
        columns[layer as usize].push(Slot::Service(n));
    }
    let mut chains: Vec<Vec<Slot>> = Vec::with_capacity(directed.len());
    for (e, &(a, b)) in directed.iter().enumerate() {
        let mut chain = vec![Slot::Service(a)];
        for layer in layer_of[a] + 1..layer_of[b] {
            let dummy = Slot::Dummy(e, layer);
            columns[layer as usize].push(dummy);
            chain.push(dummy);
        }
        chain.push(Slot::Service(b));
        chains.push(chain);
    }
    // Neighbours of each slot in the columns left and right of it.
    let mut left: HashMap<Slot, Vec<Slot>> = HashMap::new();
    let mut right: HashMap<Slot, Vec<Slot>> = HashMap::new();
    for chain in &chains {
        for pair in chain.windows(2) {
            right.entry(pair[0]).or_default().push(pair[1]);
            left.entry(pair[1]).or_default().push(pair[0]);
        }
    }
    // 4. Crossing reduction by barycentres, keeping the best order seen.
    let mut best = columns.clone();
    let mut best_crossings = crossings(&columns, &right);
    for sweep in 0..SWEEPS * 2 {
        let forward = sweep % 2 == 0;
        let range: Vec<usize> = if forward {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for layer in range {
            let reference = if forward { layer - 1 } else { layer + 1 };
            let position: HashMap<Slot, usize> = columns[reference]
                .iter()
                .enumerate()
                .map(|(i, s)| (*s, i))
                .collect();
            let neighbours = if forward { &left } else { &right };
            let current: HashMap<Slot, usize> = columns[layer]
                .iter()
                .enumerate()
                .map(|(i, s)| (*s, i))
                .collect();
            let key = |slot: &Slot| -> f64 {
                let linked: Vec<usize> = neighbours
                    .get(slot)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| position.get(n).copied())
                    .collect();
                if linked.is_empty() {
                    current.get(slot).copied().unwrap_or(0) as f64
                } else {
                    linked.iter().sum::<usize>() as f64 / linked.len() as f64
                }
            };
            let mut keyed: Vec<(f64, usize, Slot)> = columns[layer]
                .iter()
                .enumerate()
                .map(|(i, s)| (key(s), i, *s))
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            columns[layer] = keyed.into_iter().map(|(_, _, s)| s).collect();
        }
        let now = crossings(&columns, &right);
        if now < best_crossings {
            best_crossings = now;
            best = columns.clone();
        }
    }
    let columns = best;
    // 5. Coordinates: slots stack from the top, each column centred.
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(0);
    let slot_h = NODE_H + ROW_GAP;
    let height = MARGIN * 2 + u32::try_from(tallest).unwrap_or(0) * slot_h;
    let mut place: HashMap<Slot, (u32, u32)> = HashMap::new();
    for (layer, column) in columns.iter().enumerate() {
        let x = MARGIN + u32::try_from(layer).unwrap_or(0) * (NODE_W + COL_GAP);
        let offset = (u32::try_from(tallest - column.len()).unwrap_or(0) * slot_h) / 2;
        for (row, slot) in column.iter().enumerate() {
            let y = MARGIN + offset + u32::try_from(row).unwrap_or(0) * slot_h;
            place.insert(*slot, (x, y));
        }
    }
    let width = MARGIN * 2
        + u32::try_from(layers).unwrap_or(1) * NODE_W
        + u32::try_from(layers.saturating_sub(1)).unwrap_or(0) * COL_GAP;
    let nodes = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let s = &info[*name];
            let (x, y) = place.get(&Slot::Service(n)).copied().unwrap_or((0, 0));
            let health = if !registered.contains(name) {
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
                _ => format!("{}/{} in discovery", s.passing, s.passing + s.critical),
            };
            Node {
                name: (*name).to_owned(),
                short: shorten(name, NAME_FITS),
                x,
                y,
                health,
                label,
            }
        })
        .collect();
    let mut drawn = Vec::with_capacity(edges.len());
    for (e, &(a, b)) in edges.iter().enumerate() {
        let chain = &chains[e];
        let mut points = Vec::with_capacity(chain.len() * 2);
        for (i, slot) in chain.iter().enumerate() {
            let Some(&(x, y)) = place.get(slot) else {
                continue;
            };
            let mid = y + NODE_H / 2;
            match slot {
                // Leave a service from its right side, enter from its left.
                Slot::Service(_) if i == 0 => points.push((x + NODE_W, mid)),
                Slot::Service(_) => points.push((x, mid)),
                // Cross a column through the edge's own slot.
                Slot::Dummy(..) => {
                    points.push((x, mid));
                    points.push((x + NODE_W, mid));
                }
            }
        }
        // A reversed (cycle) edge is drawn towards the service required.
        if directed[e] != (a, b) {
            points.reverse();
        }
        let path = points
            .iter()
            .enumerate()
            .map(|(i, (x, y))| format!("{}{x},{y}", if i == 0 { 'M' } else { 'L' }))
            .collect::<Vec<_>>()
            .join(" ");
        let to = names[b];
        drawn.push(Edge {
            from: names[a].to_owned(),
            to: to.to_owned(),
            points,
            path,
            broken: info.get(to).is_none_or(|t| t.passing == 0),
        });
    }
    Graph {
        width: width.max(NODE_W + 2 * MARGIN),
        height: height.max(NODE_H + 2 * MARGIN),
        nodes,
        edges: drawn,
    }
}

/// A topological order of an acyclic graph (Kahn), sources first.
fn topological(out: &[Vec<usize>]) -> Vec<usize> {
    let mut indegree = vec![0usize; out.len()];
    for targets in out {
        for &t in targets {
            indegree[t] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..out.len()).filter(|&n| indegree[n] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(out.len());
    while let Some(n) = ready.pop() {
        order.push(n);
        for &t in &out[n] {
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.push(t);
            }
        }
    }
    order
}

/// Edge crossings between adjacent columns.
fn crossings(columns: &[Vec<Slot>], right: &HashMap<Slot, Vec<Slot>>) -> usize {
    let mut total = 0;
    for pair in columns.windows(2) {
        let position: HashMap<Slot, usize> =
            pair[1].iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let mut segments: Vec<(usize, usize)> = Vec::new();
        for (i, slot) in pair[0].iter().enumerate() {
            for target in right.get(slot).into_iter().flatten() {
                if let Some(&j) = position.get(target) {
                    segments.push((i, j));
                }
            }
        }
        for (k, &(a, b)) in segments.iter().enumerate() {
            for &(c, d) in &segments[k + 1..] {
                if (a < c && b > d) || (a > c && b < d) {
                    total += 1;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests;
