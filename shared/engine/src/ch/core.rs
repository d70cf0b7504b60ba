//! The top of the hierarchy as a table: shortest weights and next hops between its nodes.
//!
//! A point-to-point query spends most of its work near the top of the hierarchy, where
//! nodes have many arcs: on Porto, of the 104 nodes the full query takes off its queues,
//! about 70 are among the highest 512, and so are three quarters of the 535 arcs it
//! relaxes. Those nodes form the *core*; the shortest weights between every pair of them
//! are computed once when the graph is loaded (512 x 512 weights, 2 MB, in milliseconds).
//!
//! A query then runs one exhaustive upward search per side that never expands a core node,
//! only reaches it (about 17 nodes and 70 arcs per side on Porto, and about 10 core nodes
//! reached), and takes the best of:
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
//! Routes need the path too. For a path through the core, the table keeps, for every pair
//! `(u, v)`, the next core node on a shortest path from `u` to `v` (512 x 512 x 2 bytes),
//! which gives the hierarchy arcs between `u` and `v` one at a time; the arcs below the
//! core come from the two searches' parents, and all of them are unpacked as before.

use super::query::{Found, PathScratch, Search};
use super::{BACKWARD, Dir, FORWARD, Hierarchy, UpDown};
use crate::weight::Weight;

/// How many of the highest-ranked nodes the table covers (fewer on smaller graphs). Porto,
/// 1,000 random pairs: 256 leaves 23 settled nodes per side and 12 core nodes reached, 512
/// leaves 17 and 10, 1,024 leaves 12 and 7 for a table four times the size (8 MB).
pub(crate) const CORE_SIZE: usize = 512;

/// No next node: `u == v`, or `v` cannot be reached from `u`.
const NO_HOP: u16 = u16::MAX;

/// Shortest weights and next hops between the highest-ranked nodes of a [`Hierarchy`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CoreTable {
    /// The lowest node id in the core (ids are ranks: the core is `first..node_count`).
    first: u32,
    /// Nodes in the core.
    size: usize,
    /// Row-major `size x size`: the duration part of the shortest weight from node
    /// `first + i` to `first + j` at `i * size + j` (`u32::MAX`: no path). Apart from the
    /// distances: a query reads about a hundred entries at scattered places and needs only
    /// the durations of all but the few that improve its best (1 MB to keep in cache rather
    /// than 2 MB: Porto routes had 88 of their 419 simulated last-level misses here).
    durations: Vec<u32>,
    /// Row-major like `durations`: the distance parts.
    distances: Vec<u32>,
    /// Row-major like `durations`: the core index of the node after `first + i` on a shortest
    /// path to `first + j` ([`NO_HOP`] on the diagonal and when there is no path).
    next: Vec<u16>,
}

/// What a table needs of one side's search below the core.
struct Side {
    /// Settled nodes below the core with their distances, by node.
    below: Vec<(u32, Weight)>,
    /// Core nodes reached, as core indices, with their distances.
    core: Vec<(usize, Weight)>,
}

impl CoreTable {
    /// Computes the table for the top `min(CORE_SIZE, node_count)` nodes with the many-to-
    /// many search: every upward search from a core node stays in the core, so this takes
    /// one small search per core node and direction. The next hops follow from the weights:
    /// the first arc of a shortest path from `u` to `v` leads to a core node `y` with
    /// `w(u, y) + weight(y, v) == weight(u, v)`.
    pub(crate) fn build(ch: &Hierarchy, search: &mut Search) -> Self {
        let n = search.len();
        let size = CORE_SIZE.min(n);
        let first = (n - size) as u32;
        let seeds: Vec<Vec<(u32, Weight)>> =
            (first..n as u32).map(|v| vec![(v, Weight::ZERO)]).collect();
        let weights = ch.many_to_many(search, &seeds, &seeds);
        let mut next = vec![NO_HOP; size * size];
        for (i, out) in core_arcs(&ch.up, first, n as u32).iter().enumerate() {
            for j in 0..size {
                let total = weights
                    .get(i * size + j)
                    .copied()
                    .unwrap_or(Weight::INFINITY);
                if i == j || total.is_infinite() {
                    continue;
                }
                // Heads come from the artifact: looked up, never trusted as indices.
                let hop = out.iter().find(|&&(y, w)| {
                    y.checked_sub(first)
                        .and_then(|y| weights.get(y as usize * size + j))
                        .is_some_and(|&rest| w.add(rest) == total)
                });
                if let Some(&(y, _)) = hop {
                    next[i * size + j] = (y - first) as u16;
                }
            }
        }
        Self {
            first,
            size,
            durations: weights.iter().map(|w| w.duration_ms()).collect(),
            distances: weights.iter().map(|w| w.distance_dm()).collect(),
            next,
        }
    }

    /// The table's weight at `index` (`i * size + j`).
    fn weight(&self, index: usize) -> Option<Weight> {
        let duration = *self.durations.get(index)?;
        let distance = *self.distances.get(index)?;
        Some(Weight::new(duration, distance))
    }

    /// Runs the two searches that stop at the core and returns the best weight from the
    /// sources to the targets with the core nodes where that path enters and leaves the
    /// core (one node twice for a path whose highest node is below the core, settled by
    /// both searches), or `None` without a path.
    fn best(
        &self,
        ch: &Hierarchy,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
    ) -> Option<(Weight, (u32, u32))> {
        if self.size == 0 {
            return None;
        }
        fwd.run_below(&ch.up, FORWARD, sources, self.first);
        bwd.run_below(&ch.up, BACKWARD, targets, self.first);
        let mut best = (Weight::INFINITY, None);
        for &(v, d) in &bwd.settled {
            let total = fwd.dist(v).add(d);
            if total < best.0 {
                best = (total, Some((v, v)));
            }
        }
        let columns: Vec<(usize, Weight)> = self.reached(bwd).collect();
        if let (total, Some((i, j))) = self.through_table(self.reached(fwd), &columns)
            && total < best.0
        {
            best = (total, Some((self.node(i), self.node(j))));
        }
        let (weight, ends) = best;
        ends.map(|e| (weight, e))
    }

    /// The core nodes the last [`Search::run_below`] reached, as core indices with their
    /// distances.
    fn reached<'s>(&self, search: &'s Search) -> impl Iterator<Item = (usize, Weight)> + 's {
        let first = self.first;
        search
            .access()
            .iter()
            .map(move |&v| ((v - first) as usize, search.dist(v)))
    }

    /// The core node at core index `i`.
    fn node(&self, i: usize) -> u32 {
        self.first + i as u32
    }

    /// The best `d(s, u) + table[u][v] + d(v, t)` over the core nodes reached from each
    /// side (core indices with their distances), with the `(u, v)` that gives it.
    fn through_table(
        &self,
        rows: impl Iterator<Item = (usize, Weight)>,
        columns: &[(usize, Weight)],
    ) -> (Weight, Option<(usize, usize)>) {
        let mut best = (Weight::INFINITY, None);
        for (u, du) in rows {
            let row = u * self.size;
            let Some(durations) = self.durations.get(row..row + self.size) else {
                continue;
            };
            for &(v, dv) in columns {
                let Some(&w) = durations.get(v) else {
                    continue;
                };
                // A weight's duration is its high half, and adding the low halves only
                // ever carries into it: a sum of durations above the best's cannot give a
                // smaller weight, so the distance is read only for the few that might.
                let at_least =
                    u64::from(du.duration_ms()) + u64::from(w) + u64::from(dv.duration_ms());
                if at_least > u64::from(best.0.duration_ms()) {
                    continue;
                }
                if let Some(w) = self.weight(row + v) {
                    let total = du.add(w).add(dv);
                    if total < best.0 {
                        best = (total, Some((u, v)));
                    }
                }
            }
        }
        best
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
        self.best(ch, fwd, bwd, sources, targets)
            .map_or(Weight::INFINITY, |(w, _)| w)
    }

    /// Shortest weights from every source to every target, row-major: one search per row
    /// and per column (not per cell), each kept as two short lists, then every cell from
    /// its row's and column's lists.
    pub(crate) fn table(
        &self,
        ch: &Hierarchy,
        search: &mut Search,
        sources: &[Vec<(u32, Weight)>],
        targets: &[Vec<(u32, Weight)>],
    ) -> Vec<Weight> {
        let rows: Vec<Side> = sources
            .iter()
            .map(|s| self.side(ch, search, FORWARD, s))
            .collect();
        let columns: Vec<Side> = targets
            .iter()
            .map(|t| self.side(ch, search, BACKWARD, t))
            .collect();
        rows.iter()
            .flat_map(|r| columns.iter().map(move |c| self.combine(r, c)))
            .collect()
    }

    /// One side's search below the core, kept as lists.
    fn side(&self, ch: &Hierarchy, search: &mut Search, dir: Dir, seeds: &[(u32, Weight)]) -> Side {
        search.run_below(&ch.up, dir, seeds, self.first);
        let mut below = search.settled.clone();
        below.sort_unstable_by_key(|&(v, _)| v);
        let core = self.reached(search).collect();
        Side { below, core }
    }

    /// The best weight from a row's side to a column's: through a node below the core both
    /// settled (the sorted lists merged), or through the table.
    fn combine(&self, row: &Side, column: &Side) -> Weight {
        let mut best = Weight::INFINITY;
        let (mut i, mut j) = (0, 0);
        while let (Some(&(a, da)), Some(&(b, db))) = (row.below.get(i), column.below.get(j)) {
            if a == b {
                best = best.min(da.add(db));
            }
            i += usize::from(a <= b);
            j += usize::from(b <= a);
        }
        best.min(self.through_table(row.core.iter().copied(), &column.core).0)
    }

    /// The shortest path from the sources to the targets, unpacked into original edges
    /// (left in `scratch.edges`): the same answer as [`Hierarchy::query`].
    pub(crate) fn query(
        &self,
        ch: &Hierarchy,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
        scratch: &mut PathScratch,
    ) -> Option<Found> {
        scratch.edges.clear();
        let (weight, (enter, leave)) = self.best(ch, fwd, bwd, sources, targets)?;
        let found = ch.path_via(fwd, bwd, weight, (enter, leave), scratch, |arcs| {
            enter == leave || self.core_path(&ch.up, enter, leave, arcs)
        });
        // Only a table that disagrees with the hierarchy fails (a cycle of zero-weight arcs,
        // say): the full query still finds the path.
        found.or_else(|| ch.query(fwd, bwd, sources, targets, scratch))
    }

    /// Appends the hierarchy arcs of a shortest path from core node `u` to core node `v`,
    /// following the next hops; false if the table does not lead there.
    fn core_path(&self, up: &UpDown, u: u32, v: u32, arcs: &mut Vec<u32>) -> bool {
        let Some(j) = v.checked_sub(self.first).map(|j| j as usize) else {
            return false;
        };
        let mut x = u;
        // A shortest path visits each core node at most once.
        for _ in 0..self.size {
            if x == v {
                return true;
            }
            let Some(i) = x.checked_sub(self.first).map(|i| i as usize) else {
                return false;
            };
            let (Some(&hop), Some(to_v)) = (
                self.next.get(i * self.size + j),
                self.weight(i * self.size + j),
            ) else {
                return false;
            };
            if hop == NO_HOP {
                return false;
            }
            let Some(rest) = self.weight(usize::from(hop) * self.size + j) else {
                return false;
            };
            let y = self.first + u32::from(hop);
            // The arc x -> y weighs what the rest of the path does not.
            let Some(arc) = arc_between(up, x, y, Weight(to_v.0.wrapping_sub(rest.0))) else {
                return false;
            };
            arcs.push(arc);
            x = y;
        }
        x == v
    }
}

/// The arcs between core nodes, as (other end, weight) per core node: its upward arcs and
/// its downward ones (stored in the lower end's backward list).
fn core_arcs(up: &UpDown, first: u32, n: u32) -> Vec<Vec<(u32, Weight)>> {
    let mut out: Vec<Vec<(u32, Weight)>> = vec![Vec::new(); (n - first) as usize];
    for x in first..n {
        let Some(list) = out.get_mut((x - first) as usize) else {
            continue;
        };
        list.extend(up.out(x, FORWARD).iter().map(|a| (a.head, a.weight)));
        // A backward arc stored at `x` with head `h` is the arc h -> x, going down.
        for a in up.out(x, BACKWARD) {
            if let Some(list) = a
                .head
                .checked_sub(first)
                .and_then(|h| out.get_mut(h as usize))
            {
                list.push((x, a.weight));
            }
        }
    }
    out
}

/// The id of the arc from `x` to `y` weighing `w`: upward in `x`'s forward list, or
/// downward in `y`'s backward list.
fn arc_between(up: &UpDown, x: u32, y: u32, w: Weight) -> Option<u32> {
    let (node, head, dir) = if y > x {
        (x, y, FORWARD)
    } else {
        (y, x, BACKWARD)
    };
    let i = up
        .out(node, dir)
        .iter()
        .position(|a| a.head == head && { a.weight } == w)?;
    up.out_ids(node, dir).get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildOptions, CarProfile, Graph};

    /// Every pair of core nodes with a path gets its arcs from the next hops, without the
    /// full query's fallback, and the arcs add up to the table's weight (each step's arc is
    /// matched by weight, so the steps telescope to `weight(u, v)`).
    #[test]
    #[allow(clippy::unwrap_used)]
    fn next_hops_lead_from_every_core_node_to_every_other() {
        let pbf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/monaco.osm.pbf");
        let g =
            Graph::from_osm_file(&pbf, &CarProfile::default(), &BuildOptions::default()).unwrap();
        let core = &g.core;
        assert_eq!(core.size, CORE_SIZE, "Monaco has more nodes than the core");
        assert!(core.first > 0);
        let mut arcs = Vec::new();
        let mut paths = 0;
        for i in 0..core.size {
            for j in 0..core.size {
                let (u, v) = (core.first + i as u32, core.first + j as u32);
                if i == j || core.weight(i * core.size + j).unwrap().is_infinite() {
                    continue;
                }
                arcs.clear();
                assert!(core.core_path(&g.ch.up, u, v, &mut arcs), "{u} -> {v}");
                assert!(!arcs.is_empty());
                paths += 1;
            }
        }
        // Monaco's largest component is strongly connected: all pairs have a path.
        assert_eq!(paths, core.size * (core.size - 1));
    }
}
