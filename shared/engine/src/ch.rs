//! Contraction hierarchies: preprocessing, point-to-point and many-to-many queries.
//!
//! Nodes are contracted one by one in the order of a lazily updated priority (edge
//! difference, contracted neighbours, level). Contracting a node adds a shortcut between two
//! of its neighbours unless a bounded witness search finds a path at least as good that
//! avoids it. A query then runs two Dijkstra searches that only ever go "up" the order and
//! meet at the highest node of the shortest path.
//!
//! Weights are the packed (duration, distance) [`Weight`], so ties are broken by distance
//! exactly as in the oracle.

use crate::network::EdgeId;
use crate::weight::Weight;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Marks an arc that is an original edge, not a shortcut.
const ORIGINAL: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Stall-on-demand pays off for the exhaustive searches of many-to-many tables, but in a
/// point-to-point query its extra scans cost more than the few nodes it saves (measured on
/// Porto: 40 -> 32 us per query without it).
const STALL_P2P: bool = false;

/// An upward adjacency in compressed-sparse-row form.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UpwardGraph {
    pub(crate) first: Vec<u32>,
    pub(crate) head: Vec<u32>,
    pub(crate) weight: Vec<Weight>,
    pub(crate) arc: Vec<u32>,
}

impl UpwardGraph {
    fn from_lists(lists: Vec<Vec<(u32, Weight, u32)>>) -> Self {
        let mut g = UpwardGraph {
            first: Vec::with_capacity(lists.len() + 1),
            ..Default::default()
        };
        g.first.push(0);
        for list in lists {
            for (head, weight, arc) in list {
                g.head.push(head);
                g.weight.push(weight);
                g.arc.push(arc);
            }
            g.first.push(g.head.len() as u32);
        }
        g
    }

    fn arcs(&self, node: u32) -> std::ops::Range<usize> {
        self.first[node as usize] as usize..self.first[node as usize + 1] as usize
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

/// Settled-node budget of a witness search. Larger finds more witnesses (fewer shortcuts,
/// faster queries) at the cost of preprocessing time; missing a witness only adds a
/// redundant shortcut, never a wrong answer.
const WITNESS_SETTLE_LIMIT: usize = 500;

struct Witness {
    dist: Vec<Weight>,
    stamp: Vec<u32>,
    round: u32,
    heap: BinaryHeap<Reverse<(Weight, u32)>>,
}

impl Witness {
    fn new(n: usize) -> Self {
        Self {
            dist: vec![Weight::INFINITY; n],
            stamp: vec![0; n],
            round: 0,
            heap: BinaryHeap::new(),
        }
    }

    fn dist(&self, v: u32) -> Weight {
        if self.stamp[v as usize] == self.round {
            self.dist[v as usize]
        } else {
            Weight::INFINITY
        }
    }

    /// Dijkstra from `source` over `out`, never entering `avoid`, stopping past `limit`.
    fn run(&mut self, out: &[Vec<(u32, Weight, u32)>], source: u32, avoid: u32, limit: Weight) {
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            self.stamp.fill(0);
            self.round = 1;
        }
        self.heap.clear();
        self.dist[source as usize] = Weight::ZERO;
        self.stamp[source as usize] = self.round;
        self.heap.push(Reverse((Weight::ZERO, source)));
        let mut settled = 0;
        while let Some(Reverse((d, v))) = self.heap.pop() {
            if d > self.dist(v) {
                continue;
            }
            if d > limit {
                break;
            }
            settled += 1;
            if settled > WITNESS_SETTLE_LIMIT {
                break;
            }
            for &(w, wt, _) in &out[v as usize] {
                if w == avoid {
                    continue;
                }
                let nd = d.add(wt);
                if nd < self.dist(w) {
                    self.dist[w as usize] = nd;
                    self.stamp[w as usize] = self.round;
                    self.heap.push(Reverse((nd, w)));
                }
            }
        }
    }
}

struct Contractor {
    out: Vec<Vec<(u32, Weight, u32)>>,
    inn: Vec<Vec<(u32, Weight, u32)>>,
    arc_a: Vec<u32>,
    arc_b: Vec<u32>,
    contracted_neighbours: Vec<u32>,
    level: Vec<u32>,
    witness: Witness,
}

/// Inserts or improves the arc `tail -> head`; parallel arcs are pointless in a shortest-path
/// search, so only the best one is kept.
fn upsert(list: &mut Vec<(u32, Weight, u32)>, other: u32, weight: Weight, arc: u32) {
    if let Some(entry) = list.iter_mut().find(|e| e.0 == other) {
        if weight < entry.1 {
            *entry = (other, weight, arc);
        }
    } else {
        list.push((other, weight, arc));
    }
}

impl Contractor {
    fn add_arc(&mut self, tail: u32, head: u32, weight: Weight, a: u32, b: u32) {
        let id = self.arc_a.len() as u32;
        self.arc_a.push(a);
        self.arc_b.push(b);
        upsert(&mut self.out[tail as usize], head, weight, id);
        upsert(&mut self.inn[head as usize], tail, weight, id);
    }

    /// The shortcuts contracting `x` would need: (tail, head, weight, arc in, arc out).
    fn shortcuts(&mut self, x: u32) -> Vec<(u32, u32, Weight, u32, u32)> {
        let mut needed = Vec::new();
        let ins = self.inn[x as usize].clone();
        let outs = &self.out[x as usize];
        if outs.is_empty() {
            return needed;
        }
        let outs = outs.clone();
        for &(u, w_ux, a_ux) in &ins {
            let max_out = outs
                .iter()
                .filter(|o| o.0 != u)
                .map(|o| o.1)
                .max()
                .unwrap_or(Weight::ZERO);
            if outs.iter().all(|o| o.0 == u) {
                continue;
            }
            self.witness.run(&self.out, u, x, w_ux.add(max_out));
            for &(v, w_xv, a_xv) in &outs {
                if v == u {
                    continue;
                }
                let via = w_ux.add(w_xv);
                if self.witness.dist(v) > via {
                    needed.push((u, v, via, a_ux, a_xv));
                }
            }
        }
        needed
    }

    fn priority(&mut self, x: u32) -> i64 {
        let shortcuts = self.shortcuts(x).len() as i64;
        let removed = (self.inn[x as usize].len() + self.out[x as usize].len()) as i64;
        4 * (shortcuts - removed)
            + 2 * i64::from(self.contracted_neighbours[x as usize])
            + i64::from(self.level[x as usize])
    }
}

/// Builds the hierarchy. `edges` are (tail, head, weight, edge id); `progress` is told the
/// number of nodes contracted so far from time to time. Returns the hierarchy over renumbered
/// nodes and the renumbering (`new_id[old]`), which the caller must apply to the network.
pub(crate) fn contract(
    node_count: usize,
    edges: impl Iterator<Item = (u32, u32, Weight, EdgeId)>,
    progress: &dyn Fn(usize, usize),
) -> (Hierarchy, Vec<u32>) {
    let mut c = Contractor {
        out: vec![Vec::new(); node_count],
        inn: vec![Vec::new(); node_count],
        arc_a: Vec::new(),
        arc_b: Vec::new(),
        contracted_neighbours: vec![0; node_count],
        level: vec![0; node_count],
        witness: Witness::new(node_count),
    };
    for (tail, head, weight, id) in edges {
        if tail != head {
            c.add_arc(tail, head, weight, id.0, ORIGINAL);
        }
    }

    let mut heap: BinaryHeap<Reverse<(i64, u32)>> = (0..node_count as u32)
        .map(|x| Reverse((c.priority(x), x)))
        .collect();
    let mut contracted = vec![false; node_count];
    let mut fwd_up: Vec<Vec<(u32, Weight, u32)>> = vec![Vec::new(); node_count];
    let mut bwd_up: Vec<Vec<(u32, Weight, u32)>> = vec![Vec::new(); node_count];
    let mut done = 0usize;
    let mut order: Vec<u32> = Vec::with_capacity(node_count);

    while let Some(Reverse((prio, x))) = heap.pop() {
        if contracted[x as usize] {
            continue;
        }
        // Lazy update: the stored priority may be stale; re-queue if it got worse than the
        // next candidate.
        let current = c.priority(x);
        if current > prio
            && let Some(Reverse((next, _))) = heap.peek()
            && current > *next
        {
            heap.push(Reverse((current, x)));
            continue;
        }
        let shortcuts = c.shortcuts(x);
        contracted[x as usize] = true;
        order.push(x);
        done += 1;
        if done.is_multiple_of(4096) {
            progress(done, node_count);
        }

        let outs = std::mem::take(&mut c.out[x as usize]);
        let ins = std::mem::take(&mut c.inn[x as usize]);
        for &(v, _, _) in &outs {
            c.inn[v as usize].retain(|e| e.0 != x);
        }
        for &(u, _, _) in &ins {
            c.out[u as usize].retain(|e| e.0 != x);
        }
        for (u, v, w, a, b) in shortcuts {
            c.add_arc(u, v, w, a, b);
        }
        let mut neighbours: Vec<u32> = outs.iter().chain(ins.iter()).map(|e| e.0).collect();
        neighbours.sort_unstable();
        neighbours.dedup();
        let next_level = c.level[x as usize] + 1;
        for &n in &neighbours {
            c.contracted_neighbours[n as usize] += 1;
            c.level[n as usize] = c.level[n as usize].max(next_level);
        }
        for &n in &neighbours {
            let p = c.priority(n);
            heap.push(Reverse((p, n)));
        }
        fwd_up[x as usize] = outs;
        bwd_up[x as usize] = ins;
    }
    progress(node_count, node_count);

    // Renumber nodes by contraction order: upward searches spend most of their time among
    // the few high-ranked nodes, and giving those neighbouring ids keeps their distance
    // and adjacency entries in the same cache lines.
    let mut new_id = vec![0u32; node_count];
    for (rank, &old) in order.iter().enumerate() {
        new_id[old as usize] = rank as u32;
    }
    let renumber = |lists: Vec<Vec<(u32, Weight, u32)>>| {
        let mut by_rank = vec![Vec::new(); node_count];
        for (old, list) in lists.into_iter().enumerate() {
            by_rank[new_id[old] as usize] = list
                .into_iter()
                .map(|(head, w, arc)| (new_id[head as usize], w, arc))
                .collect();
        }
        UpwardGraph::from_lists(by_rank)
    };
    let hierarchy = Hierarchy {
        forward: renumber(fwd_up),
        backward: renumber(bwd_up),
        arc_a: c.arc_a,
        arc_b: c.arc_b,
    };
    (hierarchy, new_id)
}

/// Per-node state of one search direction. Kept together (one cache line access per node
/// instead of three) because the searches are bound by memory latency, not arithmetic.
#[derive(Debug, Clone, Copy)]
struct NodeState {
    dist: Weight,
    parent: u32,
    arc: u32,
    stamp: u32,
}

/// One direction of a query: tentative distances and parent arcs, reset cheaply by stamp.
#[derive(Debug)]
pub(crate) struct Search {
    state: Vec<NodeState>,
    round: u32,
    heap: BinaryHeap<Reverse<(Weight, u32)>>,
    /// Nodes settled in the last run, in order (used by the many-to-many buckets).
    pub(crate) settled: Vec<(u32, Weight)>,
}

impl Search {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            state: vec![
                NodeState {
                    dist: Weight::INFINITY,
                    parent: NONE,
                    arc: NONE,
                    stamp: 0,
                };
                n
            ],
            round: 0,
            heap: BinaryHeap::new(),
            settled: Vec::new(),
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
    }

    pub(crate) fn dist(&self, v: u32) -> Weight {
        let s = &self.state[v as usize];
        if s.stamp == self.round {
            s.dist
        } else {
            Weight::INFINITY
        }
    }

    fn set(&mut self, v: u32, dist: Weight, parent: u32, arc: u32) {
        self.state[v as usize] = NodeState {
            dist,
            parent,
            arc,
            stamp: self.round,
        };
    }

    fn seed(&mut self, v: u32, d: Weight) {
        if d < self.dist(v) {
            self.set(v, d, NONE, NONE);
            self.heap.push(Reverse((d, v)));
        }
    }

    fn min_key(&self) -> Weight {
        self.heap
            .peek()
            .map_or(Weight::INFINITY, |Reverse((d, _))| *d)
    }

    /// Settles one node; returns it with its distance, or `None` when the queue is empty.
    fn step(
        &mut self,
        graph: &UpwardGraph,
        opposite: Option<&UpwardGraph>,
    ) -> Option<(u32, Weight)> {
        while let Some(Reverse((d, v))) = self.heap.pop() {
            if d > self.dist(v) {
                continue;
            }
            // Stall-on-demand: if a higher node reaches v more cheaply through an arc of the
            // opposite direction, v's own distance is not the shortest and its arcs need not
            // be relaxed. It is still reported, harmlessly, with a non-minimal distance.
            let stalled = opposite.is_some_and(|opposite| {
                opposite.arcs(v).any(|i| {
                    let u = opposite.head[i];
                    self.dist(u).add(opposite.weight[i]) < d
                })
            });
            if !stalled {
                for i in graph.arcs(v) {
                    let w = graph.head[i];
                    let nd = d.add(graph.weight[i]);
                    if nd < self.dist(w) {
                        self.set(w, nd, v, graph.arc[i]);
                        self.heap.push(Reverse((nd, w)));
                    }
                }
                self.settled.push((v, d));
            }
            return Some((v, d));
        }
        None
    }

    /// Runs a full upward search (no target), recording settled nodes.
    pub(crate) fn run_all(
        &mut self,
        graph: &UpwardGraph,
        opposite: &UpwardGraph,
        seeds: &[(u32, Weight)],
    ) {
        self.reset();
        for &(v, d) in seeds {
            self.seed(v, d);
        }
        while self.step(graph, Some(opposite)).is_some() {}
    }

    /// Arcs from the seed to `v`, in the order this search walked them.
    fn arcs_to(&self, mut v: u32) -> Vec<u32> {
        let mut arcs = Vec::new();
        while let Some(s) = self.state.get(v as usize) {
            if s.parent == NONE {
                break;
            }
            arcs.push(s.arc);
            v = s.parent;
        }
        arcs
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

/// The best path found by [`Hierarchy::query`].
pub(crate) struct Found {
    pub(crate) weight: Weight,
    /// Node the path starts from (one of the sources).
    pub(crate) source: u32,
    /// Node the path ends at (one of the targets).
    pub(crate) target: u32,
    /// Original edges in travel order.
    pub(crate) edges: Vec<EdgeId>,
}

impl Hierarchy {
    /// Expands arcs into original edges, in order.
    fn unpack(&self, arcs: impl Iterator<Item = u32>, out: &mut Vec<EdgeId>) {
        let mut stack: Vec<u32> = Vec::new();
        for arc in arcs {
            stack.push(arc);
            while let Some(a) = stack.pop() {
                let (x, y) = (self.arc_a[a as usize], self.arc_b[a as usize]);
                if y == ORIGINAL {
                    out.push(EdgeId(x));
                } else {
                    stack.push(y);
                    stack.push(x);
                }
            }
        }
    }

    /// Bidirectional upward search from several seeded sources to several seeded targets
    /// (a snapped point is "on the way" to both ends of its road, at different offsets).
    pub(crate) fn query(
        &self,
        fwd: &mut Search,
        bwd: &mut Search,
        sources: &[(u32, Weight)],
        targets: &[(u32, Weight)],
    ) -> Option<Found> {
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
                fwd.step(&self.forward, STALL_P2P.then_some(&self.backward))
            } else {
                bwd.step(&self.backward, STALL_P2P.then_some(&self.forward))
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
        if meet == NONE {
            return None;
        }
        let mut up = fwd.arcs_to(meet);
        up.reverse();
        let down = bwd.arcs_to(meet);
        let mut edges = Vec::new();
        self.unpack(up.into_iter().chain(down), &mut edges);
        Some(Found {
            weight: best,
            source: fwd.root_of(meet),
            target: bwd.root_of(meet),
            edges,
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
            fwd.run_all(&self.backward, &self.forward, seeds);
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
            fwd.run_all(&self.forward, &self.backward, seeds);
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
