//! The reference answer: a plain Dijkstra over the edge-expanded network.
//!
//! Slow, and deliberately independent of the hierarchy: its states are directed edges (with
//! the restriction context they were reached in) instead of junctions, so it honours turn
//! restrictions without any node splitting, and it shares nothing with the contraction
//! hierarchy except the network, the snapping and the restriction rules themselves.
//! Agreement between the two is evidence that the splitting, the hierarchy and its path
//! unpacking are right. Used by tests and debugging tools.

use crate::graph::Graph;
use crate::network::EdgeId;
use crate::snap::Snap;
use crate::turns::Rules;
use crate::weight::Weight;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A Dijkstra oracle over a graph's network.
#[derive(Debug)]
pub struct Oracle<'g> {
    graph: &'g Graph,
    rules: Rules<'g>,
    /// Head junction of every edge id (`u32::MAX` when not drivable).
    head: Vec<u32>,
    /// Drivable edges leaving each junction, with their weight.
    out: Vec<Vec<(EdgeId, Weight)>>,
}

/// The oracle's answer: duration and distance, as the CH reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OracleAnswer {
    /// Seconds.
    pub duration_s: f64,
    /// Metres.
    pub distance_m: f64,
}

/// A search state: the edge just driven and the restriction context it left.
type State = (u32, Vec<(u32, u32)>);

impl<'g> Oracle<'g> {
    /// Indexes every directed edge of the network by its tail.
    pub fn new(graph: &'g Graph) -> Self {
        let net = &graph.net;
        let mut head = vec![u32::MAX; net.roads.len() * 2];
        let mut out = vec![Vec::new(); net.nodes.len()];
        for (tail, h, w, id) in net.directed_edges() {
            head[id.0 as usize] = h;
            out[tail as usize].push((id, w));
        }
        Self {
            graph,
            rules: Rules::new(&net.restrictions),
            head,
            out,
        }
    }

    /// Fastest (then shortest) travel from `from` to `to`, `None` if unreachable.
    pub fn route(&self, from: &Snap, to: &Snap) -> Option<OracleAnswer> {
        let targets: HashMap<EdgeId, Weight> =
            self.graph.edge_seeds(to, false).into_iter().collect();
        let mut best = self
            .graph
            .same_road(from, to)
            .map_or(Weight::INFINITY, |(w, _)| w);
        let mut dist: HashMap<State, Weight> = HashMap::new();
        let mut heap: BinaryHeap<Reverse<(Weight, State)>> = BinaryHeap::new();
        for (e, offset) in self.graph.edge_seeds(from, true) {
            let state = (e.0, self.rules.next(&[], e));
            if dist.get(&state).is_none_or(|&d| offset < d) {
                dist.insert(state.clone(), offset);
                heap.push(Reverse((offset, state)));
            }
        }
        while let Some(Reverse((d, (e, ctx)))) = heap.pop() {
            if d >= best {
                break;
            }
            if dist.get(&(e, ctx.clone())).is_some_and(|&known| d > known) {
                continue;
            }
            let at = self.head[e as usize];
            for &(f, w) in &self.out[at as usize] {
                if !self.rules.allowed(&ctx, f) {
                    continue;
                }
                if let Some(&offset) = targets.get(&f) {
                    best = best.min(d.add(offset));
                }
                let next = (f.0, self.rules.next(&ctx, f));
                let nd = d.add(w);
                if dist.get(&next).is_none_or(|&known| nd < known) {
                    dist.insert(next.clone(), nd);
                    heap.push(Reverse((nd, next)));
                }
            }
        }
        (!best.is_infinite()).then(|| OracleAnswer {
            duration_s: best.duration_s(),
            distance_m: best.distance_m(),
        })
    }
}
