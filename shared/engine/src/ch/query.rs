//! Queries: two searches that only go up the hierarchy and meet at the highest node of the
//! shortest path, plus the unpacking of shortcuts into original edges.

use super::heap::MinHeap;
use super::{BACKWARD, Dir, FORWARD, Hierarchy, NONE, ORIGINAL, STALL_P2P, UpDown};
use crate::network::EdgeId;
use crate::weight::Weight;
use std::hint::select_unpredictable;

/// Per-node state of one search direction. Kept together (one cache line access per node
/// instead of three) because the searches are bound by memory latency, not arithmetic; and
/// 16 bytes, four to a cache line: the arc a node was reached by is not stored but found
/// again in its parent's adjacency for the few nodes of the final path.
#[derive(Debug, Clone, Copy)]
struct NodeState {
    dist: Weight,
    parent: u32,
    stamp: u32,
}

/// One direction of a query: tentative distances and parent arcs, reset cheaply by stamp.
#[derive(Debug)]
pub(crate) struct Search {
    state: Vec<NodeState>,
    round: u32,
    heap: MinHeap,
    /// Nodes settled in the last full run ([`Search::run_all`], [`Search::run_below`]), in
    /// order, for the many-to-many buckets and the core table's meetings; the full
    /// point-to-point query does not fill it.
    pub(crate) settled: Vec<(u32, Weight)>,
    /// Nodes of the core reached in the last [`Search::run_below`], each once: the first
    /// `reached` entries ([`Search::access`]); the rest are leftovers.
    access: Vec<u32>,
    reached: usize,
    /// Nodes taken off the queue in the last run (stalled ones included) and arcs relaxed:
    /// the size of the search space, which is what the contraction order is judged by.
    pub(crate) scanned: usize,
    pub(crate) relaxed: usize,
}

impl Search {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            state: vec![
                NodeState {
                    dist: Weight::INFINITY,
                    parent: NONE,
                    stamp: 0,
                };
                n
            ],
            round: 0,
            heap: MinHeap::new(n),
            settled: Vec::new(),
            access: Vec::new(),
            reached: 0,
            scanned: 0,
            relaxed: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.len()
    }

    fn reset(&mut self) {
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            self.state.iter_mut().for_each(|s| s.stamp = 0);
            self.round = 1;
        }
        self.heap.clear();
        self.settled.clear();
        self.reached = 0;
        self.scanned = 0;
        self.relaxed = 0;
    }

    pub(crate) fn dist(&self, v: u32) -> Weight {
        let s = &self.state[v as usize];
        if s.stamp == self.round {
            s.dist
        } else {
            Weight::INFINITY
        }
    }

    fn set(&mut self, v: u32, dist: Weight, parent: u32) {
        self.state[v as usize] = NodeState {
            dist,
            parent,
            stamp: self.round,
        };
    }

    /// Nodes of the core reached in the last [`Search::run_below`], each once.
    pub(crate) fn access(&self) -> &[u32] {
        self.access.get(..self.reached).unwrap_or_default()
    }

    /// Lists core node `v` as reached if `new`. Written either way and counted only if
    /// new, so that there is no branch on it.
    #[inline(always)]
    fn reach_core(&mut self, v: u32, new: bool) {
        match self.access.get_mut(self.reached) {
            Some(slot) => *slot = v,
            None => self.access.push(v),
        }
        self.reached += usize::from(new);
    }

    fn seed(&mut self, v: u32, d: Weight) {
        if d < self.dist(v) {
            self.set(v, d, NONE);
            self.heap.push_or_decrease(v, d);
        }
    }

    fn min_key(&self) -> Weight {
        self.heap.peek().map_or(Weight::INFINITY, |(d, _)| d)
    }

    /// Settles one node, searching upwards in direction `dir` (with stall-on-demand when
    /// `stall`); returns it with its distance, or `None` when the queue is empty.
    ///
    /// Stall-on-demand is checked when a node is first reached, not when it is taken off:
    /// a node that a higher node already reaches more cheaply through an arc of the
    /// opposite direction is not queued at all. Stalling is only pruning (a stalled node's
    /// distance is not its shortest, so no shortest path needs it), and any subset of the
    /// stalls keeps the answers exact. Checked on the first reach, it saves the push, the
    /// pop and the sift-down of about a third of the nodes a query used to take off, for
    /// the price of a scan per push instead of per pop; it misses the stalls that only
    /// nodes reached later would find, which cost less than checking twice (callgrind,
    /// with the branching scan of the time: Porto 1x1 pair 65.8k instructions with the
    /// check at the pop, 64.4k with both, 56.7k at the first reach only). A node reached
    /// again later, more cheaply, is checked again.
    ///
    /// Nodes reached at `bound` or more are not recorded: a point-to-point query passes the
    /// best meeting weight found so far, and such a node can neither be taken off before
    /// the search stops, nor improve a meeting, nor stall a node that is (stalling needs a
    /// smaller weight than the stalled node's, which is below the bound). `record` keeps
    /// the settled nodes for the many-to-many buckets.
    ///
    /// Nodes from `core` up are reached but never queued or expanded: their distances to
    /// one another are in a table ([`super::core`]). Searches that do not use the table
    /// pass [`NONE`], which no node reaches.
    ///
    /// Inlined so that each call site gets its own copy with `dir`, `stall` and `record`
    /// known: a point-to-point query calls this about 100 times.
    #[inline(always)]
    fn step(
        &mut self,
        up: &UpDown,
        dir: Dir,
        stall: bool,
        bound: Weight,
        record: bool,
        core: u32,
    ) -> Option<(u32, Weight)> {
        // Each node is in the heap at most once, with its current distance: no stale entries.
        let (d, v) = self.heap.pop()?;
        self.scanned += 1;
        let arcs = up.out(v, dir);
        self.relaxed += arcs.len();
        for a in arcs {
            let nd = d.add(a.weight);
            if nd >= bound {
                continue;
            }
            let Some(seen) = self.state.get(a.head as usize) else {
                continue;
            };
            if a.head >= core {
                // Whether this run reached a core node before is a coin toss the branch
                // predictor loses (callgrind: 38 mispredictions per Porto route), so the
                // update is a select: the state is written either way.
                let seen = *seen;
                let new = seen.stamp != self.round;
                let through_v = NodeState {
                    dist: nd,
                    parent: v,
                    stamp: self.round,
                };
                let state = select_unpredictable(new | (nd < seen.dist), through_v, seen);
                self.set(a.head, state.dist, state.parent);
                self.reach_core(a.head, new);
                continue;
            }
            // Keys come off in increasing order, so a node already taken off never
            // improves again: a node seen before in this run is still in the heap.
            if seen.stamp != self.round {
                if stall && self.stalls(up, dir, a.head, nd) {
                    continue;
                }
                self.set(a.head, nd, v);
                self.heap.push(a.head, nd);
            } else if nd < seen.dist {
                self.set(a.head, nd, v);
                self.heap.decrease(a.head, nd);
            }
        }
        if record {
            self.settled.push((v, d));
        }
        Some((v, d))
    }

    /// Whether a higher node already reaches `v` more cheaply than `d` through an arc of
    /// the opposite direction, so that `d` is not `v`'s shortest distance.
    ///
    /// Without branches on the data: whether a head was reached in this run is a coin toss
    /// the branch predictor loses (simulated, about 130 mispredictions per direction and
    /// Porto query, the most of any branch), while every arc of the short list is in the
    /// cache line already fetched. So all arcs are scanned, stale distances of heads not
    /// reached are read and masked, and the answers are or-ed together.
    #[inline(always)]
    fn stalls(&self, up: &UpDown, dir: Dir, v: u32, d: Weight) -> bool {
        let mut stalled = false;
        for a in up.out(v, 1 - dir) {
            if let Some(s) = self.state.get(a.head as usize) {
                stalled |= (s.stamp == self.round) & (s.dist.add(a.weight) < d);
            }
        }
        stalled
    }

    /// Runs a full upward search (no target), recording settled nodes.
    pub(crate) fn run_all(&mut self, up: &UpDown, dir: Dir, seeds: &[(u32, Weight)]) {
        self.reset();
        for &(v, d) in seeds {
            self.seed(v, d);
        }
        while self
            .step(up, dir, true, Weight::INFINITY, true, NONE)
            .is_some()
        {}
    }

    /// Runs a full upward search that stops at the core: nodes from `core` up are reached
    /// (and listed in [`Search::access`]) but not expanded. Records the settled nodes below
    /// the core.
    pub(crate) fn run_below(&mut self, up: &UpDown, dir: Dir, seeds: &[(u32, Weight)], core: u32) {
        self.reset();
        for &(v, d) in seeds {
            if v < core {
                self.seed(v, d);
            } else if d < self.dist(v) {
                let new = self.dist(v).is_infinite();
                self.reach_core(v, new);
                self.set(v, d, NONE);
            }
        }
        if dir == FORWARD {
            while self
                .step(up, FORWARD, true, Weight::INFINITY, true, core)
                .is_some()
            {}
        } else {
            while self
                .step(up, BACKWARD, true, Weight::INFINITY, true, core)
                .is_some()
            {}
        }
    }

    /// Appends to `arcs` the arcs from the seed to `v` in direction `dir` (the one this
    /// search ran in), from `v` backwards: the parent's arc to the node whose weight accounts
    /// for the distance (contraction keeps only the best of parallel arcs, so there is one).
    fn arcs_to(&self, up: &UpDown, dir: Dir, mut v: u32, arcs: &mut Vec<u32>) {
        while let Some(s) = self.state.get(v as usize) {
            if s.parent == NONE {
                break;
            }
            let from = self.dist(s.parent);
            let Some(i) = up
                .out(s.parent, dir)
                .iter()
                .position(|a| a.head == v && from.add(a.weight) == s.dist)
            else {
                break;
            };
            let Some(&arc) = up.out_ids(s.parent, dir).get(i) else {
                break;
            };
            arcs.push(arc);
            v = s.parent;
        }
    }

    fn root_of(&self, mut v: u32) -> u32 {
        while let Some(s) = self.state.get(v as usize) {
            if s.parent == NONE {
                break;
            }
            v = s.parent;
        }
        v
    }
}

/// The best path found by [`Hierarchy::query`]; its edges are in [`PathScratch::edges`].
pub(crate) struct Found {
    pub(crate) weight: Weight,
    /// Node the path starts from (one of the sources).
    pub(crate) source: u32,
    /// Node the path ends at (one of the targets).
    pub(crate) target: u32,
}

/// The buffers a path query fills, kept with the per-thread search state: allocating them
/// fresh (and regrowing them) cost a route about as much as their contents.
#[derive(Debug, Default)]
pub(crate) struct PathScratch {
    /// Hierarchy arcs of the path, in travel order.
    arcs: Vec<u32>,
    /// Arcs still to unpack, as their entries in [`Hierarchy::arcs`].
    stack: Vec<[u32; 2]>,
    /// The path's original edges in travel order, as the last [`Hierarchy::query`] found.
    pub(crate) edges: Vec<EdgeId>,
}

impl Hierarchy {
    /// Expands `scratch.arcs` into original edges, in order, into `scratch.edges`.
    fn unpack(&self, scratch: &mut PathScratch) {
        let PathScratch { arcs, stack, edges } = scratch;
        edges.clear();
        // Depth first, left child first: only right children wait on the stack, so a
        // shortcut costs one push and one pop instead of two of each. They wait already
        // looked up: the lookup of the right child then misses the cache while the left
        // one's does, instead of after the whole left subtree (the arcs of a long path are
        // spread over the 2 MB array, and this chain of lookups was most of the unpacking).
        for &arc in arcs.iter() {
            let mut cur = self.arcs[arc as usize];
            loop {
                let [x, y] = cur;
                if y != ORIGINAL {
                    stack.push(self.arcs[y as usize]);
                    cur = self.arcs[x as usize];
                    continue;
                }
                edges.push(EdgeId(x));
                match stack.pop() {
                    Some(next) => cur = next,
                    None => break,
                }
            }
        }
    }

    /// Bidirectional upward search from several seeded sources to several seeded targets
    /// (a snapped point is "on the way" to both ends of its road, at different offsets).
    /// Returns the best weight and the node where the two searches meet on it.
    fn meet(
        &self,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
    ) -> Option<(Weight, u32)> {
        fwd.reset();
        bwd.reset();
        for &(v, d) in sources {
            fwd.seed(v, d);
        }
        for &(v, d) in targets {
            bwd.seed(v, d);
        }
        let mut best = Weight::INFINITY;
        let mut meet = NONE;
        loop {
            let (fk, bk) = (fwd.min_key(), bwd.min_key());
            let f_done = fk >= best || fk.is_infinite();
            let b_done = bk >= best || bk.is_infinite();
            if f_done && b_done {
                break;
            }
            let forward_turn = !f_done && (b_done || fk <= bk);
            let settled = if forward_turn {
                fwd.step(&self.up, FORWARD, STALL_P2P, best, false, NONE)
            } else {
                bwd.step(&self.up, BACKWARD, STALL_P2P, best, false, NONE)
            };
            let Some((v, d)) = settled else { continue };
            let other = if forward_turn {
                bwd.dist(v)
            } else {
                fwd.dist(v)
            };
            let total = d.add(other);
            if total < best {
                best = total;
                meet = v;
            }
        }
        (meet != NONE).then_some((best, meet))
    }

    /// The shortest path from the sources to the targets, unpacked into original edges
    /// (left in `scratch.edges`).
    pub(crate) fn query(
        &self,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
        scratch: &mut PathScratch,
    ) -> Option<Found> {
        scratch.edges.clear();
        let (weight, meet) = self.meet(fwd, bwd, sources, targets)?;
        self.path_via(fwd, bwd, weight, (meet, meet), scratch, |_| true)
    }

    /// Unpacks into `scratch.edges` the path that leaves the forward search's tree at
    /// `enter` and joins the backward search's tree at `leave`, with `middle` appending the
    /// arcs from `enter` to `leave` (none when they are one node). `None` if `middle` cannot.
    pub(super) fn path_via(
        &self,
        fwd: &Search,
        bwd: &Search,
        weight: Weight,
        (enter, leave): (u32, u32),
        scratch: &mut PathScratch,
        middle: impl FnOnce(&mut Vec<u32>) -> bool,
    ) -> Option<Found> {
        scratch.arcs.clear();
        fwd.arcs_to(&self.up, FORWARD, enter, &mut scratch.arcs);
        scratch.arcs.reverse();
        if !middle(&mut scratch.arcs) {
            return None;
        }
        bwd.arcs_to(&self.up, BACKWARD, leave, &mut scratch.arcs);
        self.unpack(scratch);
        Some(Found {
            weight,
            source: fwd.root_of(enter),
            target: bwd.root_of(leave),
        })
    }

    /// Many-to-many shortest weights with buckets: one backward search per target leaves
    /// (target, distance) entries at every node it settles; one forward search per source
    /// then scans the buckets of the nodes it settles. Row-major result.
    pub(crate) fn many_to_many(
        &self,
        fwd: &mut Search,
        sources: &[Vec<(u32, Weight)>],
        targets: &[Vec<(u32, Weight)>],
    ) -> Vec<Weight> {
        let n = fwd.len();
        let mut entries: Vec<(u32, u32, Weight)> = Vec::new();
        for (j, seeds) in targets.iter().enumerate() {
            fwd.run_all(&self.up, BACKWARD, seeds);
            entries.extend(fwd.settled.iter().map(|&(v, d)| (v, j as u32, d)));
        }
        entries.sort_unstable_by_key(|e| e.0);
        let mut first = vec![0u32; n + 1];
        for e in &entries {
            first[e.0 as usize + 1] += 1;
        }
        for i in 0..n {
            first[i + 1] += first[i];
        }
        let mut result = vec![Weight::INFINITY; sources.len() * targets.len()];
        for (i, seeds) in sources.iter().enumerate() {
            fwd.run_all(&self.up, FORWARD, seeds);
            let row = &mut result[i * targets.len()..(i + 1) * targets.len()];
            for &(v, d) in &fwd.settled {
                let range = first[v as usize] as usize..first[v as usize + 1] as usize;
                for &(_, j, dj) in &entries[range] {
                    let total = d.add(dj);
                    if total < row[j as usize] {
                        row[j as usize] = total;
                    }
                }
            }
        }
        result
    }
}
