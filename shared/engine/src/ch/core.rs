//! The top of the hierarchy as a distance table, for shortest weights without paths.
//!
//! A point-to-point query spends most of its work near the top of the hierarchy, where
//! nodes have many arcs: on Porto, of the 104 nodes a query takes off its queues, about 70
//! are among the highest 512, and so are four fifths of the 535 arcs it relaxes. Those
//! nodes form the *core*; the shortest weights between every pair of them are computed once
//! when the graph is loaded (512 x 512 weights, 2 MB, in tens of milliseconds).
//!
//! A duration-only query then runs one exhaustive upward search per side that never expands
//! a core node, only reaches it (about 17 nodes and 70 arcs per side on Porto, and about 10
//! core nodes reached), and takes the best of:
//! - the nodes below the core that both searches settled (paths whose highest node is
//!   below the core), and
//! - every pair of core nodes `u` reached from the source and `v` reached from the target:
//!   `d(s, u) + table[u][v] + d(v, t)`.
//!
//! Exact: a shortest path the hierarchy represents goes up from the source and down to the
//! target. If its highest node is in the core, its upward part enters the core at some
//! node `u` and its downward part leaves it at some `v`; everything before `u` and after `v`
//! is below the core, so the searches reach `u` and `v` at their true distances, and the
//! table has the true weight between them. Otherwise both searches settle its highest node.
//! Stalling stays valid for the same reason as in the full query: it only drops nodes that
//! some other upward path already reaches more cheaply.
//!
//! Paths (routes) still use the full bidirectional query, which unpacks the arcs it met on.

use super::query::Search;
use super::{BACKWARD, FORWARD, Hierarchy};
use crate::weight::Weight;

/// How many of the highest-ranked nodes the table covers (fewer on smaller graphs). Porto,
/// 1,000 random pairs: 256 leaves 23 settled nodes per side and 12 core nodes reached, 512
/// leaves 17 and 10, 1,024 leaves 12 and 7 for a table four times the size (8 MB).
pub(crate) const CORE_SIZE: usize = 512;

/// Shortest weights between the highest-ranked nodes of a [`Hierarchy`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CoreTable {
    /// The lowest node id in the core (ids are ranks: the core is `first..node_count`).
    first: u32,
    /// Nodes in the core.
    size: usize,
    /// Row-major `size x size`: `weights[i * size + j]` from node `first + i` to
    /// `first + j`.
    weights: Vec<Weight>,
}

impl CoreTable {
    /// Computes the table for the top `min(CORE_SIZE, node_count)` nodes with the many-to-
    /// many search: every upward search from a core node stays in the core, so this takes
    /// one small search per core node and direction.
    pub(crate) fn build(ch: &Hierarchy, search: &mut Search) -> Self {
        let n = search.len();
        let size = CORE_SIZE.min(n);
        let first = (n - size) as u32;
        let seeds: Vec<Vec<(u32, Weight)>> =
            (first..n as u32).map(|v| vec![(v, Weight::ZERO)]).collect();
        let weights = ch.many_to_many(search, &seeds, &seeds);
        Self {
            first,
            size,
            weights,
        }
    }

    /// The shortest weight from the sources to the targets; `Weight::INFINITY` when there
    /// is no path.
    pub(crate) fn distance(
        &self,
        ch: &Hierarchy,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
    ) -> Weight {
        if self.size == 0 {
            return Weight::INFINITY;
        }
        fwd.run_below(&ch.up, FORWARD, sources, self.first);
        bwd.run_below(&ch.up, BACKWARD, targets, self.first);
        let mut best = Weight::INFINITY;
        for &(v, d) in &bwd.settled {
            let total = fwd.dist(v).add(d);
            if total < best {
                best = total;
            }
        }
        // The target side's core nodes once, as columns with their distances, so the inner
        // loop below reads two short arrays and one table row.
        let columns: Vec<(usize, Weight)> = bwd
            .access
            .iter()
            .map(|&v| ((v - self.first) as usize, bwd.dist(v)))
            .collect();
        for &u in &fwd.access {
            let du = fwd.dist(u);
            let start = (u - self.first) as usize * self.size;
            let Some(row) = self.weights.get(start..start + self.size) else {
                continue;
            };
            for &(j, dv) in &columns {
                if let Some(&w) = row.get(j) {
                    let total = du.add(w).add(dv);
                    if total < best {
                        best = total;
                    }
                }
            }
        }
        best
    }
}
