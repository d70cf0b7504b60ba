//! The reference answer: plain Dijkstra (petgraph) over the unprepared network.
//!
//! Slow, and deliberately independent: it shares nothing with the contraction hierarchy except
//! the network and the snapping, so agreement between the two is evidence that the
//! hierarchy (and its path unpacking) is right. Used by tests and debugging tools.

use crate::graph::Graph;
use crate::snap::Snap;
use crate::weight::Weight;
use petgraph::algo::dijkstra;
use petgraph::graph::{DiGraph, NodeIndex};

/// A Dijkstra oracle over a graph's network.
#[derive(Debug)]
pub struct Oracle<'g> {
    graph: &'g Graph,
    digraph: DiGraph<(), u64>,
}

/// The oracle's answer: duration and distance, as the CH reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OracleAnswer {
    /// Seconds.
    pub duration_s: f64,
    /// Metres.
    pub distance_m: f64,
}

impl<'g> Oracle<'g> {
    /// Builds the petgraph graph from every directed edge of the network.
    pub fn new(graph: &'g Graph) -> Self {
        let mut digraph = DiGraph::with_capacity(graph.net.nodes.len(), graph.net.roads.len() * 2);
        for _ in 0..graph.net.nodes.len() {
            digraph.add_node(());
        }
        for (tail, head, w, _) in graph.net.directed_edges() {
            digraph.add_edge(
                NodeIndex::new(tail as usize),
                NodeIndex::new(head as usize),
                w.0,
            );
        }
        Self { graph, digraph }
    }

    /// Fastest (then shortest) travel from `from` to `to`, `None` if unreachable.
    pub fn route(&self, from: &Snap, to: &Snap) -> Option<OracleAnswer> {
        let targets = self.graph.target_seeds(to);
        let mut best = self
            .graph
            .same_road(from, to)
            .map_or(Weight::INFINITY, |(w, _)| w);
        for (s, offset) in self.graph.source_seeds(from) {
            let dist = dijkstra(&self.digraph, NodeIndex::new(s as usize), None, |e| {
                *e.weight()
            });
            for &(t, t_offset) in &targets {
                if let Some(&d) = dist.get(&NodeIndex::new(t as usize)) {
                    let total = offset.add(Weight(d)).add(t_offset);
                    if total < best {
                        best = total;
                    }
                }
            }
        }
        (!best.is_infinite()).then(|| OracleAnswer {
            duration_s: best.duration_s(),
            distance_m: best.distance_m(),
        })
    }
}
