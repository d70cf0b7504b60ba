//! Contraction hierarchies: preprocessing, point-to-point and many-to-many queries.
//!
//! Nodes are contracted in rounds of independent sets, in parallel and deterministically,
//! by a priority of level, arcs added per arc removed and original edges represented (see
//! [`contract`](mod@contract)). Contracting a node adds a shortcut between two of its
//! neighbours unless a bounded witness search finds a path at least as good that avoids it.
//! A query then runs two Dijkstra searches that only ever go "up" the order, with
//! stall-on-demand, and meet at the highest node of the shortest path.
//!
//! Weights are the packed (duration, distance) [`Weight`], so ties are broken by distance
//! exactly as in the oracle.

//!
//! # Layout
//! - this module: the prepared hierarchy ([`Hierarchy`], [`UpwardGraph`]) and its arc marks;
//! - [`contract`](mod@contract): preprocessing (node order, witness searches, shortcuts);
//! - [`query`]: the upward searches of point-to-point and many-to-many queries.

mod contract;
mod query;

pub(crate) use contract::contract;
pub(crate) use query::{Found, Search};

use crate::weight::Weight;

/// Marks an arc that is an original edge, not a shortcut.
const ORIGINAL: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Stall-on-demand in point-to-point queries. With the old contraction order its extra
/// scans cost more than they saved (40 -> 32 us per Porto query without it); with the
/// current order it cuts a Porto query from 214 to 155 settled nodes and from 1,112 to 509
/// relaxed arcs, and its instruction count (callgrind) by a quarter.
const STALL_P2P: bool = true;

/// One arc of an upward adjacency. Head, weight and arc id side by side, 16 bytes: a search
/// relaxing a node's arcs reads one run of memory instead of three arrays, and the searches
/// are bound by memory latency, not arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UpArc {
    pub(crate) weight: Weight,
    pub(crate) head: u32,
    /// Index into [`Hierarchy::arc_a`]/[`Hierarchy::arc_b`].
    pub(crate) arc: u32,
}

/// An upward adjacency in compressed-sparse-row form. (The artifact stores heads, weights
/// and arc ids as three lists; only the in-memory layout interleaves them.)
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UpwardGraph {
    pub(crate) first: Vec<u32>,
    pub(crate) arcs: Vec<UpArc>,
}

impl UpwardGraph {
    fn from_lists(lists: Vec<Vec<(u32, Weight, u32)>>) -> Self {
        let mut g = UpwardGraph {
            first: Vec::with_capacity(lists.len() + 1),
            arcs: Vec::with_capacity(lists.iter().map(Vec::len).sum()),
        };
        g.first.push(0);
        for list in lists {
            g.arcs.extend(
                list.into_iter()
                    .map(|(head, weight, arc)| UpArc { weight, head, arc }),
            );
            g.first.push(g.arcs.len() as u32);
        }
        g
    }

    /// The arcs leaving `node`.
    pub(crate) fn out(&self, node: u32) -> &[UpArc] {
        &self.arcs[self.first[node as usize] as usize..self.first[node as usize + 1] as usize]
    }
}

/// A prepared contraction hierarchy over nodes `0..node_count`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Hierarchy {
    /// Arcs from a node to higher-ranked heads, in travel direction.
    pub(crate) forward: UpwardGraph,
    /// Arcs into a node from higher-ranked tails, stored from the node's side so a backward
    /// search can walk them upwards.
    pub(crate) backward: UpwardGraph,
    /// For an original arc: the edge id, and `ORIGINAL` in `arc_b`. For a shortcut: the two
    /// arcs it replaces, in travel order.
    pub(crate) arc_a: Vec<u32>,
    pub(crate) arc_b: Vec<u32>,
}
