//! Preprocessing: contract nodes in a lazily updated priority order, adding a shortcut
//! between two neighbours unless a bounded witness search finds a path as good without it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Hierarchy, ORIGINAL, UpwardGraph};
use crate::network::EdgeId;
use crate::weight::Weight;

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
