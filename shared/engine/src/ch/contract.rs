//! Preprocessing: contract nodes in rounds of independent sets, adding a shortcut between
//! two neighbours unless a bounded witness search finds a path as good without it.
//!
//! Each round contracts every remaining node whose priority is lower than that of every
//! remaining node within two hops (ties broken by a hash of the id; one hop would be
//! enough for correctness, but two give smaller search spaces on Porto: 214 settled nodes
//! per query against 232, with fewer shortcuts). No two such nodes are adjacent,
//! so their shortcuts can be found in parallel on the same graph; the witness searches of
//! a round avoid every node of the round, so a witness never runs through a node that is
//! being removed at the same time. Shortcuts are then applied, and priorities of the
//! touched neighbours recomputed, in node order: the result depends only on the input,
//! never on the number of threads or their timing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use rayon::prelude::*;

use super::{Hierarchy, ORIGINAL, UpDown, UpwardGraph};
use crate::network::EdgeId;
use crate::weight::Weight;

/// Settled-node budget of a witness search. Larger finds more witnesses (fewer shortcuts,
/// faster queries) at the cost of preprocessing time; missing a witness only adds a
/// redundant shortcut, never a wrong answer.
const WITNESS_SETTLE_LIMIT: usize = 500;
/// The budget when a witness search only estimates a priority. Priorities are recomputed
/// for every neighbour of every contracted node, so this is most of the build's work; on
/// Porto 30 instead of 500 shortens the build by a third and, by making the estimate favour
/// nodes whose shortcuts are obviously unnecessary, even shrinks the search space (155 ->
/// 143 settled nodes per query) for 0.5% more arcs.
const PRIORITY_SETTLE_LIMIT: usize = 30;

/// An adjacency entry: the other node, the arc's weight and the arc's id.
type Adj = (u32, Weight, u32);
/// A shortcut to add: tail, head, weight, and the two arcs it replaces in travel order.
type Shortcut = (u32, u32, Weight, u32, u32);

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

    /// Dijkstra from `source` over `out`, never entering a node `avoid` accepts, stopping
    /// past `limit`.
    fn run(
        &mut self,
        out: &[Vec<Adj>],
        source: u32,
        avoid: impl Fn(u32) -> bool,
        limit: Weight,
        settle_limit: usize,
    ) {
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
            if settled > settle_limit {
                break;
            }
            for &(w, wt, _) in &out[v as usize] {
                if avoid(w) {
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

/// One witness workspace per worker thread. Which workspace a search uses has no effect on
/// its result (each run starts from a fresh stamp), so this is free of nondeterminism.
struct WitnessPool(Vec<Mutex<Witness>>);

impl WitnessPool {
    fn new(n: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        Self((0..threads).map(|_| Mutex::new(Witness::new(n))).collect())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Witness) -> R) -> R {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        // A poisoned lock only means another search panicked; the workspace is reset by
        // every run, so it is still usable.
        let mut w = self.0[i].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut w)
    }
}

struct Contractor {
    out: Vec<Vec<Adj>>,
    inn: Vec<Vec<Adj>>,
    arc_a: Vec<u32>,
    arc_b: Vec<u32>,
    /// Original edges an arc stands for (1 for an original arc).
    hops: Vec<u32>,
    level: Vec<u32>,
}

/// Inserts or improves the arc `tail -> head`; parallel arcs are pointless in a shortest-path
/// search, so only the best one is kept.
fn upsert(list: &mut Vec<Adj>, other: u32, weight: Weight, arc: u32) {
    if let Some(entry) = list.iter_mut().find(|e| e.0 == other) {
        if weight < entry.1 {
            *entry = (other, weight, arc);
        }
    } else {
        list.push((other, weight, arc));
    }
}

/// Tie-break between equal priorities: a fixed hash of the id, so that ties do not all go
/// to low ids (which would make the independent sets small and clustered).
fn mix(x: u32) -> u32 {
    let mut h = x.wrapping_mul(0x9e37_79b9);
    h ^= h >> 16;
    h.wrapping_mul(0x85eb_ca6b)
}

impl Contractor {
    fn neighbours(&self, x: u32) -> impl Iterator<Item = u32> + '_ {
        self.out[x as usize]
            .iter()
            .chain(&self.inn[x as usize])
            .map(|e| e.0)
    }

    fn add_arc(&mut self, tail: u32, head: u32, weight: Weight, a: u32, b: u32) {
        let id = self.arc_a.len() as u32;
        let hops = if b == ORIGINAL {
            1
        } else {
            self.hops[a as usize] + self.hops[b as usize]
        };
        self.arc_a.push(a);
        self.arc_b.push(b);
        self.hops.push(hops);
        upsert(&mut self.out[tail as usize], head, weight, id);
        upsert(&mut self.inn[head as usize], tail, weight, id);
    }

    /// The shortcuts contracting `x` would need, with witness searches that never enter a
    /// node `avoid` accepts (`x` itself and, in a round, every node contracted with it)
    /// and give up after `settle_limit` nodes.
    fn shortcuts(
        &self,
        x: u32,
        witness: &mut Witness,
        avoid: impl Fn(u32) -> bool,
        settle_limit: usize,
    ) -> Vec<Shortcut> {
        let mut needed = Vec::new();
        let ins = &self.inn[x as usize];
        let outs = &self.out[x as usize];
        if outs.is_empty() {
            return needed;
        }
        for &(u, w_ux, a_ux) in ins {
            let Some(max_out) = outs.iter().filter(|o| o.0 != u).map(|o| o.1).max() else {
                continue;
            };
            witness.run(&self.out, u, &avoid, w_ux.add(max_out), settle_limit);
            for &(v, w_xv, a_xv) in outs {
                if v == u {
                    continue;
                }
                let via = w_ux.add(w_xv);
                if witness.dist(v) > via {
                    needed.push((u, v, via, a_ux, a_xv));
                }
            }
        }
        needed
    }

    /// Lower is contracted earlier. The terms (after RoutingKit): the level, which keeps
    /// the hierarchy shallow and so the upward searches short; arcs added per arc removed
    /// (edge difference as a ratio); and original edges represented per original edge
    /// removed, which stops long shortcuts from piling up on a few nodes.
    fn priority(&self, x: u32, witness: &mut Witness) -> u64 {
        let shortcuts = self.shortcuts(x, witness, |v| v == x, PRIORITY_SETTLE_LIMIT);
        let (ins, outs) = (&self.inn[x as usize], &self.out[x as usize]);
        let removed = (ins.len() + outs.len()).max(1) as u64;
        let removed_hops = ins
            .iter()
            .chain(outs)
            .map(|e| u64::from(self.hops[e.2 as usize]))
            .sum::<u64>()
            .max(1);
        let added = shortcuts.len() as u64;
        let added_hops = shortcuts
            .iter()
            .map(|s| u64::from(self.hops[s.3 as usize] + self.hops[s.4 as usize]))
            .sum::<u64>();
        1 + 1000 * u64::from(self.level[x as usize])
            + 1000 * added / removed
            + 1000 * added_hops / removed_hops
    }
}

/// Builds the hierarchy. `edges` are (tail, head, weight, edge id); `progress` is told the
/// number of nodes contracted so far from time to time. Returns the hierarchy over renumbered
/// nodes and the renumbering (`new_id[old]`), which the caller must apply to the network.
///
/// Runs on the current rayon pool (all cores unless the caller installs a smaller one); the
/// output is the same for any number of threads.
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
        hops: Vec::new(),
        level: vec![0; node_count],
    };
    for (tail, head, weight, id) in edges {
        if tail != head {
            c.add_arc(tail, head, weight, id.0, ORIGINAL);
        }
    }
    let pool = WitnessPool::new(node_count);

    let mut priority: Vec<u64> = (0..node_count as u32)
        .into_par_iter()
        .map(|x| pool.with(|w| c.priority(x, w)))
        .collect();
    let mut in_round = vec![false; node_count];
    let mut remaining: Vec<u32> = (0..node_count as u32).collect();
    let mut fwd_up: Vec<Vec<Adj>> = vec![Vec::new(); node_count];
    let mut bwd_up: Vec<Vec<Adj>> = vec![Vec::new(); node_count];
    let mut order: Vec<u32> = Vec::with_capacity(node_count);
    let mut reported = 0;

    while !remaining.is_empty() {
        let key = |v: u32| (priority[v as usize], mix(v), v);
        let round: Vec<u32> = remaining
            .par_iter()
            .copied()
            .filter(|&x| {
                let k = key(x);
                c.neighbours(x)
                    .all(|n| k < key(n) && c.neighbours(n).all(|m| m == x || k < key(m)))
            })
            .collect();
        for &x in &round {
            in_round[x as usize] = true;
        }
        let shortcuts: Vec<Vec<Shortcut>> = round
            .par_iter()
            .map(|&x| {
                pool.with(|w| c.shortcuts(x, w, |v| in_round[v as usize], WITNESS_SETTLE_LIMIT))
            })
            .collect();

        let mut touched: Vec<u32> = Vec::new();
        for (&x, needed) in round.iter().zip(shortcuts) {
            let outs = std::mem::take(&mut c.out[x as usize]);
            let ins = std::mem::take(&mut c.inn[x as usize]);
            for &(v, _, _) in &outs {
                c.inn[v as usize].retain(|e| e.0 != x);
            }
            for &(u, _, _) in &ins {
                c.out[u as usize].retain(|e| e.0 != x);
            }
            for (u, v, w, a, b) in needed {
                c.add_arc(u, v, w, a, b);
            }
            let next_level = c.level[x as usize] + 1;
            for &(n, _, _) in outs.iter().chain(&ins) {
                c.level[n as usize] = c.level[n as usize].max(next_level);
                touched.push(n);
            }
            fwd_up[x as usize] = outs;
            bwd_up[x as usize] = ins;
        }
        order.extend_from_slice(&round);
        remaining.retain(|&v| !in_round[v as usize]);
        touched.sort_unstable();
        touched.dedup();
        let updated: Vec<u64> = touched
            .par_iter()
            .map(|&n| pool.with(|w| c.priority(n, w)))
            .collect();
        for (&n, p) in touched.iter().zip(updated) {
            priority[n as usize] = p;
        }
        if order.len() - reported >= 4096 {
            reported = order.len();
            progress(reported, node_count);
        }
    }
    progress(node_count, node_count);

    // Renumber nodes by contraction order: upward searches spend most of their time among
    // the few high-ranked nodes, and giving those neighbouring ids keeps their distance
    // and adjacency entries in the same cache lines.
    let mut new_id = vec![0u32; node_count];
    for (rank, &old) in order.iter().enumerate() {
        new_id[old as usize] = rank as u32;
    }
    let renumber = |lists: Vec<Vec<Adj>>| {
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
        up: UpDown::new(renumber(fwd_up), renumber(bwd_up)),
        arcs: c
            .arc_a
            .into_iter()
            .zip(c.arc_b)
            .map(|(a, b)| [a, b])
            .collect(),
    };
    (hierarchy, new_id)
}
