//! Turn restrictions in a node-based hierarchy, by node splitting.
//!
//! A restriction constrains the edge taken after a given sequence of edges (a from-edge,
//! then the edges of any via ways). The hierarchy stays node-based: every junction is a
//! node as before, and a junction reached along a restricted sequence is *split*, with one
//! extra node per distinct restriction context that carries copies of only the outgoing
//! edges that context allows. Concretely, a search state is (junction, context), where the
//! context is the set of partially driven restriction paths; the plain junction is the
//! empty context, and only the few states with a non-empty context become extra nodes.
//! That handles via nodes, via ways (the via way's chain is duplicated as far as the
//! context lasts) and overlapping restrictions alike, and costs one node per restricted
//! approach instead of an edge-expanded graph several times the size.
//!
//! A split node has the coordinates of its junction and no road of its own: snapping works
//! on roads, and a snapped point is mapped to graph nodes through [`TurnTables`]: leaving a
//! point on edge `e` starts at the node `e` arrives at ([`TurnTables::arrive`]); arriving at
//! a point on `e` may come from any node that has a copy of `e` ([`TurnTables::departures`]).

use std::collections::{HashMap, VecDeque};

use crate::network::{EdgeId, Restriction, RoadNetwork};
use crate::weight::Weight;

/// No node: the edge is not drivable.
pub(crate) const NO_NODE: u32 = u32::MAX;

/// Where each directed edge starts and ends among the hierarchy's nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TurnTables {
    /// Per edge id: the node reached by driving the edge from its plain junction.
    pub(crate) arrive: Vec<u32>,
    /// Per edge id: the plain junction the edge leaves from.
    pub(crate) depart: Vec<u32>,
    /// (edge id, split node) for every copy of an edge leaving a split node, sorted.
    pub(crate) extra_depart: Vec<(u32, u32)>,
    /// Nodes of the hierarchy: junctions plus split nodes.
    pub(crate) node_count: usize,
}

impl TurnTables {
    /// Every node the edge leaves from: its junction and the split nodes that allow it.
    pub(crate) fn departures(&self, e: EdgeId) -> impl Iterator<Item = u32> + '_ {
        let first = self.extra_depart.partition_point(|&(x, _)| x < e.0);
        let extra = self.extra_depart[first..]
            .iter()
            .take_while(move |&&(x, _)| x == e.0)
            .map(|&(_, n)| n);
        self.depart
            .get(e.0 as usize)
            .copied()
            .filter(|&n| n != NO_NODE)
            .into_iter()
            .chain(extra)
    }

    /// The node driving `e` from its junction arrives at.
    pub(crate) fn arrive(&self, e: EdgeId) -> Option<u32> {
        self.arrive
            .get(e.0 as usize)
            .copied()
            .filter(|&n| n != NO_NODE)
    }

    /// Applies the hierarchy's renumbering (`new_id[old]`).
    pub(crate) fn renumber(&mut self, new_id: &[u32]) {
        let map = |n: &mut u32| {
            if *n != NO_NODE {
                *n = new_id[*n as usize];
            }
        };
        self.arrive.iter_mut().for_each(map);
        self.depart.iter_mut().for_each(map);
        self.extra_depart.iter_mut().for_each(|(_, n)| map(n));
        self.extra_depart.sort_unstable();
    }

    /// Split nodes added for restrictions.
    pub(crate) fn split_nodes(&self, junctions: usize) -> usize {
        self.node_count.saturating_sub(junctions)
    }
}

/// A restriction context: (restriction, edges of its path driven so far), sorted.
type Context = Vec<(u32, u32)>;

/// The restriction rules both the node splitting here and the oracle's edge-based search
/// apply, so the two can only disagree on how they search, not on what is allowed.
#[derive(Debug)]
pub(crate) struct Rules<'n> {
    restrictions: &'n [Restriction],
    /// Restrictions by the first edge of their path.
    starts: HashMap<u32, Vec<u32>>,
}

impl<'n> Rules<'n> {
    pub(crate) fn new(restrictions: &'n [Restriction]) -> Self {
        let mut starts: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, r) in restrictions.iter().enumerate() {
            if let Some(first) = r.path.first() {
                starts.entry(first.0).or_default().push(i as u32);
            }
        }
        Self {
            restrictions,
            starts,
        }
    }

    /// Whether `f` may be driven next in context `ctx`.
    pub(crate) fn allowed(&self, ctx: &[(u32, u32)], f: EdgeId) -> bool {
        ctx.iter().all(|&(r, j)| {
            let r = &self.restrictions[r as usize];
            if j as usize != r.path.len() {
                return true;
            }
            r.to.contains(&f) == r.only
        })
    }

    /// The context after driving `f` from context `ctx` (which must allow it).
    pub(crate) fn next(&self, ctx: &[(u32, u32)], f: EdgeId) -> Context {
        let mut c: Context = ctx
            .iter()
            .filter(|&&(r, j)| self.restrictions[r as usize].path.get(j as usize) == Some(&f))
            .map(|&(r, j)| (r, j + 1))
            .collect();
        if let Some(starting) = self.starts.get(&f.0) {
            c.extend(starting.iter().map(|&r| (r, 1)));
        }
        c.sort_unstable();
        c.dedup();
        c
    }
}

/// The split nodes made so far, and those whose arcs are still to be made.
struct States {
    junctions: usize,
    split: Vec<(u32, Context)>,
    intern: HashMap<(u32, Context), u32>,
    queue: VecDeque<u32>,
}

impl States {
    /// The node for `junction` reached in context `ctx`: the junction itself when nothing
    /// is pending, else a split node, made (and queued) on first use.
    fn node(&mut self, junction: u32, ctx: Context) -> u32 {
        if ctx.is_empty() {
            return junction;
        }
        let (split, queue, base) = (&mut self.split, &mut self.queue, self.junctions);
        *self
            .intern
            .entry((junction, ctx.clone()))
            .or_insert_with(|| {
                let id = (base + split.len()) as u32;
                split.push((junction, ctx));
                queue.push_back(id);
                id
            })
    }
}

/// The arcs of the split graph, (tail, head, weight, edge), and its turn tables.
pub(crate) fn expand(net: &RoadNetwork) -> (Vec<(u32, u32, Weight, EdgeId)>, TurnTables) {
    let n = net.nodes.len();
    let edge_count = net.roads.len() * 2;
    let mut out: Vec<Vec<(EdgeId, u32, Weight)>> = vec![Vec::new(); n];
    for (tail, head, w, id) in net.directed_edges() {
        out[tail as usize].push((id, head, w));
    }
    let rules = Rules::new(&net.restrictions);
    let mut states = States {
        junctions: n,
        split: Vec::new(),
        intern: HashMap::new(),
        queue: VecDeque::new(),
    };
    let mut arcs = Vec::with_capacity(edge_count);
    let mut tables = TurnTables {
        arrive: vec![NO_NODE; edge_count],
        depart: vec![NO_NODE; edge_count],
        ..Default::default()
    };
    for (v, edges) in out.iter().enumerate() {
        for &(f, head, w) in edges {
            let to = states.node(head, rules.next(&[], f));
            arcs.push((v as u32, to, w, f));
            tables.arrive[f.0 as usize] = to;
            tables.depart[f.0 as usize] = v as u32;
        }
    }
    while let Some(d) = states.queue.pop_front() {
        let (junction, ctx) = states.split[d as usize - n].clone();
        for &(f, head, w) in &out[junction as usize] {
            if rules.allowed(&ctx, f) {
                let to = states.node(head, rules.next(&ctx, f));
                arcs.push((d, to, w, f));
                tables.extra_depart.push((f.0, d));
            }
        }
    }
    tables.node_count = n + states.split.len();
    tables.extra_depart.sort_unstable();
    (arcs, tables)
}
