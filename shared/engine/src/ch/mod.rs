//! Contraction hierarchies: preprocessing, point-to-point and many-to-many queries.
//!
//! Nodes are contracted in rounds of independent sets, in parallel and deterministically,
//! by a priority of level, arcs added per arc removed and original edges represented (see
//! [`contract`](mod@contract)). Contracting a node adds a shortcut between two of its
//! neighbours unless a bounded witness search finds a path at least as good that avoids it.
//! A query then runs two Dijkstra searches that only ever go "up" the order, with
//! stall-on-demand, and meet at the highest node of the shortest path. Graph queries stop
//! those searches at the top 512 nodes, whose pairwise weights are a table computed on load
//! ([`core`](mod@core)); the full meeting search remains for the table's fallback.
//!
//! Weights are the packed (duration, distance) [`Weight`], so ties are broken by distance
//! exactly as in the oracle.

//!
//! # Layout
//! - this module: the prepared hierarchy ([`Hierarchy`], [`UpwardGraph`]) and its arc marks;
//! - [`contract`](mod@contract): preprocessing (node order, witness searches, shortcuts);
//! - [`query`]: the upward searches of point-to-point and many-to-many queries;
//! - [`core`](mod@core): the top of the hierarchy as a distance table, for weights without
//!   paths;
//! - [`heap`]: their priority queue, an indexed 4-ary heap with decrease-key.

mod contract;
mod core;
mod heap;
mod query;

pub(crate) use contract::contract;
pub(crate) use core::CoreTable;
pub(crate) use query::{Found, PathScratch, Search};

use crate::weight::Weight;

/// Marks an arc that is an original edge, not a shortcut.
const ORIGINAL: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Stall-on-demand in point-to-point queries. With the old contraction order its extra
/// scans cost more than they saved (40 -> 32 us per Porto query without it); with the
/// current order it cuts a Porto query from 214 to 155 settled nodes and from 1,112 to 509
/// relaxed arcs, and its instruction count (callgrind) by a quarter. Checked when a node is
/// first reached rather than when it is taken off since the fourth session of issue 14
/// (see `Search::step`).
const STALL_P2P: bool = true;

/// One arc of an upward adjacency as contraction produces it and the artifact stores it:
/// head, weight and arc id. Queries read [`QueryArc`]s instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UpArc {
    pub(crate) weight: Weight,
    pub(crate) head: u32,
    /// Index into [`Hierarchy::arcs`].
    pub(crate) arc: u32,
}

/// One direction's upward adjacency in compressed-sparse-row form: what contraction
/// produces and the artifact stores (as three lists: heads, weights, arc ids). Queries use
/// both directions interleaved in an [`UpDown`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UpwardGraph {
    pub(crate) first: Vec<u32>,
    pub(crate) arcs: Vec<UpArc>,
}

impl UpwardGraph {
    pub(crate) fn from_lists(lists: Vec<Vec<(u32, Weight, u32)>>) -> Self {
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

/// One arc as the searches read it: head and weight, 12 bytes. The arc id (which only
/// the few arcs of the final path need) lives in a parallel array, so a node's arcs take
/// a quarter less memory and fewer cache lines: the searches are bound by the latency of
/// fetching arc lists, not by arithmetic. Packed to 4-byte alignment; fields are only ever
/// read by value (an unaligned 8-byte load costs nothing extra on the machines we run on).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, packed(4))]
pub(crate) struct QueryArc {
    pub(crate) weight: Weight,
    pub(crate) head: u32,
}

/// Both upward adjacencies in one array, node by node: a node's forward arcs, then its
/// backward arcs. A search settling a node reads its own direction's arcs to relax them
/// and the opposite direction's to decide whether to stall it, so keeping the two side by
/// side turns two cache misses (and two index lookups) into about one. The artifact still
/// stores the two directions as separate lists ([`UpDown::direction`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UpDown {
    /// `2 * node_count + 1` offsets: node `v`'s forward arcs are
    /// `first[2v]..first[2v + 1]`, its backward arcs `first[2v + 1]..first[2v + 2]`.
    first: Vec<u32>,
    arcs: Vec<QueryArc>,
    /// Index into [`Hierarchy::arcs`] of each of `arcs`.
    ids: Vec<u32>,
}

/// The direction of an upward search: [`FORWARD`] walks arcs in travel direction,
/// [`BACKWARD`] against it (from a target).
pub(crate) type Dir = usize;
pub(crate) const FORWARD: Dir = 0;
pub(crate) const BACKWARD: Dir = 1;

impl UpDown {
    /// Interleaves the two directions (which must cover the same nodes).
    pub(crate) fn new(forward: UpwardGraph, backward: UpwardGraph) -> Self {
        let n = forward.first.len().saturating_sub(1);
        let len = forward.arcs.len() + backward.arcs.len();
        let mut up = UpDown {
            first: Vec::with_capacity(2 * n + 1),
            arcs: Vec::with_capacity(len),
            ids: Vec::with_capacity(len),
        };
        up.first.push(0);
        for v in 0..n as u32 {
            for g in [&forward, &backward] {
                for a in g.out(v) {
                    up.arcs.push(QueryArc {
                        weight: a.weight,
                        head: a.head,
                    });
                    up.ids.push(a.arc);
                }
                up.first.push(up.arcs.len() as u32);
            }
        }
        up
    }

    /// One direction on its own, as the artifact stores it.
    pub(crate) fn direction(&self, dir: Dir) -> UpwardGraph {
        let n = (self.first.len().saturating_sub(1)) / 2;
        let mut g = UpwardGraph {
            first: Vec::with_capacity(n + 1),
            arcs: Vec::new(),
        };
        g.first.push(0);
        for v in 0..n as u32 {
            let range = self.range(v, dir);
            g.arcs
                .extend(
                    self.arcs[range.clone()]
                        .iter()
                        .zip(&self.ids[range])
                        .map(|(a, &arc)| UpArc {
                            weight: a.weight,
                            head: a.head,
                            arc,
                        }),
                );
            g.first.push(g.arcs.len() as u32);
        }
        g
    }

    /// Number of arcs of both directions.
    pub(crate) fn arc_count(&self) -> usize {
        self.arcs.len()
    }

    fn range(&self, node: u32, dir: Dir) -> std::ops::Range<usize> {
        let i = 2 * node as usize + dir;
        self.first[i] as usize..self.first[i + 1] as usize
    }

    /// The arcs leaving `node` upwards in direction `dir`.
    pub(crate) fn out(&self, node: u32, dir: Dir) -> &[QueryArc] {
        &self.arcs[self.range(node, dir)]
    }

    /// The ids (indices into [`Hierarchy::arcs`]) of the arcs [`UpDown::out`] returns, in
    /// the same order.
    pub(crate) fn out_ids(&self, node: u32, dir: Dir) -> &[u32] {
        &self.ids[self.range(node, dir)]
    }
}

/// A prepared contraction hierarchy over nodes `0..node_count`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Hierarchy {
    /// [`FORWARD`]: arcs from a node to higher-ranked heads, in travel direction.
    /// [`BACKWARD`]: arcs into a node from higher-ranked tails, stored from the node's side
    /// so a backward search can walk them upwards.
    pub(crate) up: UpDown,
    /// For an original arc: `[edge id, ORIGINAL]`. For a shortcut: the two arcs it
    /// replaces, in travel order. Side by side because unpacking reads both halves of every
    /// arc it visits (one cache miss instead of two; the artifact keeps two lists).
    pub(crate) arcs: Vec<[u32; 2]>,
}

impl Hierarchy {
    /// Calls `visit` on every arc reachable from the upward lists once, in the order routes
    /// unpack them: the arcs of the highest nodes first, each depth first in travel order
    /// (a shortcut's first half, its second half, then the shortcut itself, so that a
    /// shortcut still comes after its halves), skipping an arc already visited inside an
    /// earlier one. The long shortcuts at the top are what routes unpack most, so laying
    /// data out in this order puts what one route reads side by side.
    fn in_unpacking_order(&self, mut visit: impl FnMut(u32, [u32; 2])) {
        let mut seen = vec![false; self.arcs.len()];
        // (arc, halves already pushed)
        let mut stack: Vec<(u32, bool)> = Vec::new();
        let nodes = (self.up.first.len() / 2) as u32;
        for node in (0..nodes).rev() {
            for dir in [FORWARD, BACKWARD] {
                for &top in self.up.out_ids(node, dir) {
                    stack.push((top, false));
                    while let Some((arc, expanded)) = stack.pop() {
                        let (Some(seen), Some(&[x, y])) =
                            (seen.get_mut(arc as usize), self.arcs.get(arc as usize))
                        else {
                            continue;
                        };
                        if expanded {
                            visit(arc, [x, y]);
                        } else if std::mem::replace(seen, true) {
                            continue;
                        } else if y == ORIGINAL {
                            visit(arc, [x, y]);
                        } else {
                            // The second half below the first: the first comes out first.
                            stack.extend([(arc, true), (y, false), (x, false)]);
                        }
                    }
                }
            }
        }
    }

    /// Renumbers the arcs in unpacking order (the rest after them, in their old order), so
    /// that the arcs a route's shortcuts unpack to sit together in [`Hierarchy::arcs`]
    /// instead of anywhere in it. A shortcut still comes after both its halves (the
    /// artifact reader relies on that to rule out cycles), and numbering a hierarchy that
    /// is already in this order changes nothing.
    ///
    /// Returns every road of `road_count` once, in the order the arcs unpack to them (roads
    /// no arc reaches last, in id order): the order to store their shape points in, found
    /// by the same walk.
    pub(crate) fn lay_out_arcs(&mut self, road_count: usize) -> Vec<u32> {
        let mut new_id = vec![u32::MAX; self.arcs.len()];
        let mut next = 0u32;
        let mut roads = Vec::with_capacity(road_count);
        let mut placed = vec![false; road_count];
        self.in_unpacking_order(|arc, [x, y]| {
            new_id[arc as usize] = next;
            next += 1;
            let road = crate::network::EdgeId(x).road();
            if y == ORIGINAL
                && let Some(p) = placed.get_mut(road as usize)
                && !std::mem::replace(p, true)
            {
                roads.push(road);
            }
        });
        roads.extend((0..road_count as u32).filter(|&r| !placed[r as usize]));
        for id in new_id.iter_mut().filter(|id| **id == u32::MAX) {
            *id = next;
            next += 1;
        }
        let renamed = |a: u32| new_id.get(a as usize).copied().unwrap_or(a);
        let mut arcs = vec![[0, 0]; self.arcs.len()];
        for (&[x, y], &to) in self.arcs.iter().zip(&new_id) {
            arcs[to as usize] = if y == ORIGINAL {
                [x, y]
            } else {
                [renamed(x), renamed(y)]
            };
        }
        self.arcs = arcs;
        for id in &mut self.up.ids {
            *id = renamed(*id);
        }
        roads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query layout keeps each arc's head, weight and id together by position: both
    /// directions come back exactly as they went in, and `out_ids` names the arcs `out`
    /// returns, in the same order.
    #[test]
    fn up_down_round_trips_both_directions_with_their_arc_ids() {
        let forward = UpwardGraph::from_lists(vec![
            vec![(1, Weight::new(5, 50), 7), (2, Weight::new(9, 90), 3)],
            vec![(2, Weight::new(1, 10), 4)],
            vec![],
        ]);
        let backward =
            UpwardGraph::from_lists(vec![vec![(2, Weight::new(2, 20), 8)], vec![], vec![]]);
        let up = UpDown::new(forward.clone(), backward.clone());
        assert_eq!(up.direction(FORWARD), forward);
        assert_eq!(up.direction(BACKWARD), backward);
        assert_eq!(up.arc_count(), 4);
        for (dir, g) in [(FORWARD, &forward), (BACKWARD, &backward)] {
            for v in 0..3 {
                let got: Vec<_> = up
                    .out(v, dir)
                    .iter()
                    .zip(up.out_ids(v, dir))
                    .map(|(a, &id)| (a.head, a.weight, id))
                    .collect();
                let want: Vec<_> = g.out(v).iter().map(|a| (a.head, a.weight, a.arc)).collect();
                assert_eq!(got, want, "node {v}, direction {dir}");
            }
        }
        assert_eq!(std::mem::size_of::<QueryArc>(), 12);
    }

    /// The original edges an arc stands for, in travel order.
    fn expand(arcs: &[[u32; 2]], arc: u32, out: &mut Vec<u32>) {
        let [x, y] = arcs[arc as usize];
        if y == ORIGINAL {
            out.push(x);
        } else {
            expand(arcs, x, out);
            expand(arcs, y, out);
        }
    }

    /// Renumbering the arcs keeps what every upward arc stands for and every shortcut after
    /// its halves, often right after its second, and is a fixed point: a loaded artifact
    /// lays out as it was written, so its identity does not change.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn arcs_in_unpacking_order_stand_for_the_same_edges() {
        let pbf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/monaco.osm.pbf");
        let net = crate::import::import_osm(&pbf, &crate::CarProfile::default()).unwrap();
        let (arcs, turns) = crate::turns::expand(&net);
        let (before, _) = contract(turns.node_count, arcs.into_iter(), &|_, _| {});
        let mut after = before.clone();
        let order = after.lay_out_arcs(net.roads.len());
        assert_ne!(after, before, "Monaco's arcs are not already in order");
        let nodes = (before.up.first.len() / 2) as u32;
        let (mut was, mut is) = (Vec::new(), Vec::new());
        let mut adjacent = 0;
        for v in 0..nodes {
            for dir in [FORWARD, BACKWARD] {
                let pairs = before
                    .up
                    .out_ids(v, dir)
                    .iter()
                    .zip(after.up.out_ids(v, dir));
                for (&old, &new) in pairs {
                    was.clear();
                    is.clear();
                    expand(&before.arcs, old, &mut was);
                    expand(&after.arcs, new, &mut is);
                    assert_eq!(was, is, "node {v}: arc {old} became {new}");
                    let [_, y] = after.arcs[new as usize];
                    adjacent += usize::from(y != ORIGINAL && y + 1 == new);
                }
            }
        }
        // Most shortcuts are unpacked first inside their own arc; the rest were met
        // earlier inside a higher one.
        assert!(adjacent > 0);
        for (i, &[x, y]) in after.arcs.iter().enumerate() {
            assert!(
                y == ORIGINAL || (x as usize) < i && (y as usize) < i,
                "arc {i}"
            );
        }
        let mut again = after.clone();
        again.lay_out_arcs(net.roads.len());
        assert_eq!(again, after);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..net.roads.len() as u32).collect::<Vec<_>>());
    }
}
