//! The metaheuristic: ruin and recreate (SISR-style string removal, random, related and
//! worst removal; greedy insertion with blinks or regret-2 insertion) under simulated
//! annealing, from a greedy construction.
//!
//! The objective is hierarchical: first the weight of unserved units (priorities first,
//! then counts), then cost. A candidate that serves less is never accepted; among equals,
//! the annealing criterion of SISR (Christiaens & Vanden Berghe, 2020) decides on cost.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::instance::{Instance, Unit};
use super::route::RouteState;

/// Hierarchical objective, compared lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Objective {
    pub unserved: i64,
    pub cost: i64,
}

#[derive(Debug, Clone)]
pub(super) struct State {
    pub routes: Vec<RouteState>,
    /// Units not in any route, kept sorted for determinism.
    pub unassigned: Vec<usize>,
    /// Undo log of the current iteration: routes as they were before their first change.
    journal: Vec<(usize, RouteState)>,
    journal_unassigned: Vec<usize>,
    journaling: bool,
}

impl State {
    pub fn empty(inst: &Instance<'_>) -> Self {
        Self {
            routes: (0..inst.vehicles.len())
                .map(|v| RouteState::new(inst, v))
                .collect(),
            unassigned: (0..inst.units.len()).collect(),
            journal: Vec::new(),
            journal_unassigned: Vec::new(),
            journaling: false,
        }
    }

    pub fn objective(&self, inst: &Instance<'_>) -> Objective {
        Objective {
            unserved: self.unassigned.iter().map(|&u| inst.unit_weight[u]).sum(),
            cost: self.routes.iter().map(|r| r.cost(inst)).sum(),
        }
    }

    /// Starts recording changes, so that [`Self::rollback`] can undo them cheaply (a full
    /// clone of the state per iteration costs more than the search itself).
    fn begin(&mut self) {
        self.journal.clear();
        self.journal_unassigned.clone_from(&self.unassigned);
        self.journaling = true;
    }

    /// Keeps the changes since [`Self::begin`].
    fn commit(&mut self) {
        self.journal.clear();
        self.journaling = false;
    }

    /// Undoes the changes since [`Self::begin`].
    fn rollback(&mut self) {
        for (r, route) in self.journal.drain(..) {
            self.routes[r] = route;
        }
        std::mem::swap(&mut self.unassigned, &mut self.journal_unassigned);
        self.journaling = false;
    }

    /// Records route `r` before its first change in this iteration.
    fn touch(&mut self, r: usize) {
        if self.journaling && !self.journal.iter().any(|(i, _)| *i == r) {
            self.journal.push((r, self.routes[r].clone()));
        }
    }

    /// For each task, (route, position) or `None`.
    fn positions(&self, inst: &Instance<'_>) -> Vec<Option<(u32, u32)>> {
        let mut pos = vec![None; inst.tasks.len()];
        for (r, route) in self.routes.iter().enumerate() {
            for (i, &t) in route.tasks.iter().enumerate() {
                pos[t as usize] = Some((r as u32, i as u32));
            }
        }
        pos
    }

    /// Removes `units` from their routes and marks them unassigned.
    fn remove_units(&mut self, inst: &Instance<'_>, units: &[usize]) {
        let mut gone = vec![false; inst.tasks.len()];
        for &u in units {
            for t in inst.unit_tasks(u) {
                gone[t as usize] = true;
            }
        }
        for ri in 0..self.routes.len() {
            if !self.routes[ri].tasks.iter().any(|&t| gone[t as usize]) {
                continue;
            }
            self.touch(ri);
            let r = &mut self.routes[ri];
            r.tasks.retain(|&t| !gone[t as usize]);
            {
                r.update(inst);
                if !r.feasible {
                    // Removal only shortens a route, but a matrix that breaks the triangle
                    // inequality can still make it late: empty it rather than keep it.
                    for &t in &r.tasks {
                        gone[t as usize] = true;
                    }
                    r.tasks.clear();
                    r.update(inst);
                }
            }
        }
        self.unassigned = (0..inst.units.len())
            .filter(|&u| {
                self.unassigned.binary_search(&u).is_ok()
                    || inst.unit_tasks(u).any(|t| gone[t as usize])
            })
            .collect();
    }

    /// Routes to try for an insertion: the used ones and the first empty one of each class.
    fn candidate_routes(&self, inst: &Instance<'_>) -> Vec<usize> {
        let mut seen_class = vec![false; inst.vehicles.len()];
        let mut out = Vec::new();
        for (r, route) in self.routes.iter().enumerate() {
            if route.tasks.is_empty() {
                let class = inst.vehicles[route.vehicle].class;
                if seen_class[class] {
                    continue;
                }
                seen_class[class] = true;
            }
            out.push(r);
        }
        out
    }

    /// Best insertion of unit `u` into route `r`: (cost increase, i, j).
    /// Best insertion of every unit into every route (no blinks), indexed `[unit][route]`.
    fn insertion_table(
        &self,
        inst: &Instance<'_>,
        routes: &[usize],
        units: &[usize],
        rng: &mut SmallRng,
    ) -> Vec<Vec<Option<(i64, usize, usize)>>> {
        units
            .iter()
            .map(|&u| {
                routes
                    .iter()
                    .map(|&r| self.insertion(inst, r, u, rng, 0.0))
                    .collect()
            })
            .collect()
    }

    fn insertion(
        &self,
        inst: &Instance<'_>,
        r: usize,
        u: usize,
        rng: &mut SmallRng,
        blink: f64,
    ) -> Option<(i64, usize, usize)> {
        match inst.units[u] {
            Unit::Job(t) => self.routes[r]
                .best_job_insertion(inst, t as usize, rng, blink)
                .map(|(c, p)| (c, p, p)),
            Unit::Shipment(p, d) => {
                self.routes[r].best_shipment_insertion(inst, p as usize, d as usize, rng, blink)
            }
        }
    }

    fn apply(&mut self, inst: &Instance<'_>, r: usize, u: usize, i: usize, j: usize) {
        self.touch(r);
        let route = &mut self.routes[r];
        match inst.units[u] {
            Unit::Job(t) => route.tasks.insert(i, t),
            Unit::Shipment(p, d) => {
                route.tasks.insert(j, d);
                route.tasks.insert(i, p);
            }
        }
        route.update(inst);
        debug_assert!(route.feasible, "insertion produced an infeasible route");
        if let Ok(k) = self.unassigned.binary_search(&u) {
            self.unassigned.remove(k);
        }
    }

    /// Greedy insertion of `units` in the given order, each at its cheapest position.
    fn greedy_insert(
        &mut self,
        inst: &Instance<'_>,
        units: &[usize],
        rng: &mut SmallRng,
        blink: f64,
    ) {
        // On large instances, only routes already serving one of the unit's nearest
        // neighbours are tried (a granular neighbourhood), plus one empty route per class.
        let granular = inst.tasks.len() > GRANULAR_FROM;
        let mut route_of = vec![u32::MAX; inst.tasks.len()];
        let mut empties = Vec::new();
        if granular {
            for (r, route) in self.routes.iter().enumerate() {
                for &t in &route.tasks {
                    route_of[t as usize] = r as u32;
                }
            }
            empties = self.candidate_routes(inst);
            empties.retain(|&r| self.routes[r].tasks.is_empty());
        }
        let mut cands = Vec::new();
        for &u in units {
            let mut best: Option<(i64, usize, usize, usize)> = None;
            if granular {
                cands.clear();
                for t in inst.unit_tasks(u) {
                    for &nb in inst.neighbours[t as usize].iter().take(GRANULAR_NEIGHBOURS) {
                        let r = route_of[nb as usize];
                        if r != u32::MAX && !cands.contains(&(r as usize)) {
                            cands.push(r as usize);
                        }
                    }
                }
                cands.sort_unstable();
                cands.extend(
                    empties
                        .iter()
                        .copied()
                        .filter(|&r| self.routes[r].tasks.is_empty()),
                );
            } else {
                cands = self.candidate_routes(inst);
            }
            for &r in &cands {
                if let Some((c, i, j)) = self.insertion(inst, r, u, rng, blink)
                    && best.is_none_or(|b| c < b.0)
                {
                    best = Some((c, r, i, j));
                }
            }
            if let Some((_, r, i, j)) = best {
                let opened = self.routes[r].tasks.is_empty();
                self.apply(inst, r, u, i, j);
                if granular && opened {
                    // That class's next empty vehicle (if any) becomes the candidate.
                    empties = self.candidate_routes(inst);
                    empties.retain(|&e| self.routes[e].tasks.is_empty());
                }
                for t in inst.unit_tasks(u) {
                    route_of[t as usize] = r as u32;
                }
            }
        }
    }

    /// Regret-2 insertion: repeatedly insert the unit whose best and second-best routes
    /// differ most (highest priority first). Per (unit, route) costs are cached and only the
    /// changed route's column is recomputed after an insertion.
    fn regret_insert(&mut self, inst: &Instance<'_>, units: &[usize], rng: &mut SmallRng) {
        let mut todo: Vec<usize> = units.to_vec();
        let mut routes = self.candidate_routes(inst);
        let mut cache = self.insertion_table(inst, &routes, &todo, rng);
        while !todo.is_empty() {
            let mut pick: Option<(u32, i64, usize, usize)> = None; // (priority, regret, k, route idx)
            for (k, &u) in todo.iter().enumerate() {
                let (mut b1, mut b2, mut arg) = (i64::MAX, i64::MAX, usize::MAX);
                for (ri, c) in cache[k].iter().enumerate() {
                    if let Some((c, _, _)) = *c {
                        if c < b1 {
                            b2 = b1;
                            b1 = c;
                            arg = ri;
                        } else if c < b2 {
                            b2 = c;
                        }
                    }
                }
                if arg == usize::MAX {
                    continue;
                }
                let regret = if b2 == i64::MAX {
                    i64::MAX / 2
                } else {
                    b2 - b1
                };
                let prio = inst.tasks[inst.unit_tasks(u).next().unwrap_or(0) as usize].priority;
                let better = match pick {
                    None => true,
                    Some((p, g, _, _)) => (prio, regret) > (p, g),
                };
                if better {
                    pick = Some((prio, regret, k, arg));
                }
            }
            let Some((_, _, k, ri)) = pick else { break };
            let u = todo[k];
            let r = routes[ri];
            let Some((_, i, j)) = cache[k][ri] else { break };
            let was_empty = self.routes[r].tasks.is_empty();
            self.apply(inst, r, u, i, j);
            todo.swap_remove(k);
            cache.swap_remove(k);
            if was_empty {
                // A new route opened: the class's next empty vehicle becomes a candidate.
                routes = self.candidate_routes(inst);
                cache = self.insertion_table(inst, &routes, &todo, rng);
            } else {
                for (kk, &uu) in todo.iter().enumerate() {
                    cache[kk][ri] = self.insertion(inst, r, uu, rng, 0.0);
                }
            }
        }
    }
}

/// SISR parameters (Christiaens & Vanden Berghe, 2020): average removed customers and
/// maximum string length.
const AVG_REMOVED: f64 = 10.0;
const MAX_STRING: f64 = 10.0;
const BLINK: f64 = 0.01;
/// Instances with more tasks than this use granular insertion over this many neighbours.
const GRANULAR_FROM: usize = 150;
const GRANULAR_NEIGHBOURS: usize = 40;
/// Early stop of a run on the clock: after this many iterations without a new best, plus
/// [`STALL_PER_UNIT`] per job or shipment, and at least as many as it took to find the best.
/// A 2-job problem then stops after a few thousand iterations (milliseconds), as VROOM's do;
/// on benchmark-sized problems (100+ units) the limit exceeds what a second of search runs,
/// and a search still finding better solutions late never stops early.
const STALL_BASE: u64 = 1_000;
const STALL_PER_UNIT: u64 = 1_000;

/// Annealing temperatures at the start and the end, in mean arc costs.
const T_START: f64 = 1.0;
const T_END: f64 = 0.01;

pub(super) struct Search<'i, 'a> {
    inst: &'i Instance<'a>,
    rng: SmallRng,
}

impl<'i, 'a> Search<'i, 'a> {
    pub fn new(inst: &'i Instance<'a>, seed: u64) -> Self {
        Self {
            inst,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The construction: regret-2 insertion of everything.
    pub fn construct(&mut self) -> State {
        let inst = self.inst;
        let mut s = State::empty(inst);
        let all = s.unassigned.clone();
        s.regret_insert(inst, &all, &mut self.rng);
        s
    }

    /// Runs until `deadline` or `max_iterations`, returning the best state found.
    /// Annealing progress follows the iteration count when one is given (so the run is
    /// reproducible, and runs exactly that long), the clock otherwise; on the clock, the run
    /// also stops once the search has converged (see [`STALL_BASE`]): a time limit is a
    /// budget, not a duration.
    pub fn run(&mut self, start: Instant, deadline: Instant, max_iterations: Option<u64>) -> State {
        let inst = self.inst;
        let mut current = self.construct();
        let mut cur_obj = current.objective(inst);
        let mut best = current.clone();
        let mut best_obj = cur_obj;
        let served: usize = current.routes.iter().map(|r| r.tasks.len()).sum();
        let arcs = served
            + current
                .routes
                .iter()
                .filter(|r| !r.tasks.is_empty())
                .count();
        // Travel only: fixed costs would make the temperature scale with the fleet's price.
        let travel: i64 = current.routes.iter().map(|r| r.travel).sum();
        let avg_arc = (travel as f64 / arcs.max(1) as f64).max(1.0);
        // Temperatures relative to the mean arc cost, so that they do not depend on the
        // matrix's unit (SISR uses 100 -> 1 on X instances, whose arcs average ~100-200;
        // shorter runs than SISR's call for somewhat cooler).
        let t0 = T_START * avg_arc;
        let tf = T_END * avg_arc;
        let budget = deadline
            .saturating_duration_since(start)
            .as_secs_f64()
            .max(1e-9);
        let mut iter: u64 = 0;
        let stall_limit = STALL_BASE + STALL_PER_UNIT * inst.units.len() as u64;
        let mut best_iter: u64 = 0;
        loop {
            if max_iterations.is_some_and(|m| iter >= m) {
                break;
            }
            let stalled = iter - best_iter;
            if max_iterations.is_none() && stalled >= stall_limit && stalled >= best_iter {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let progress = match max_iterations {
                Some(m) => iter as f64 / m as f64,
                None => now.duration_since(start).as_secs_f64() / budget,
            };
            let temp = t0 * (tf / t0).powf(progress.min(1.0));
            iter += 1;
            current.begin();
            let removed = self.ruin(&mut current);
            self.recreate(&mut current, removed);
            let obj = current.objective(inst);
            let accept = obj.unserved < cur_obj.unserved
                || (obj.unserved == cur_obj.unserved
                    && (obj.cost as f64)
                        < cur_obj.cost as f64 - temp * self.rng.random::<f64>().ln());
            if !accept {
                current.rollback();
            } else {
                current.commit();
                cur_obj = obj;
                if obj < best_obj {
                    best = current.clone();
                    best_obj = obj;
                    best_iter = iter;
                }
            }
        }
        best
    }

    fn ruin(&mut self, s: &mut State) -> Vec<usize> {
        let inst = self.inst;
        let pos = s.positions(inst);
        let assigned: Vec<u32> = (0..inst.tasks.len() as u32)
            .filter(|&t| pos[t as usize].is_some())
            .collect();
        if assigned.is_empty() {
            return Vec::new();
        }
        let seed = assigned[self.rng.random_range(0..assigned.len())];
        let mut units: Vec<usize> = Vec::new();
        let take = |t: u32, units: &mut Vec<usize>| {
            let u = inst.tasks[t as usize].unit;
            if !units.contains(&u) {
                units.push(u);
            }
        };
        let roll = self.rng.random::<f64>();
        let count = (self.rng.random_range(1.0..2.0 * AVG_REMOVED) as usize).min(assigned.len());
        if roll < 0.7 {
            // SISR strings around the seed.
            let used = s
                .routes
                .iter()
                .filter(|r| !r.tasks.is_empty())
                .count()
                .max(1);
            let avg_card = assigned.len() as f64 / used as f64;
            let ls_max = MAX_STRING.min(avg_card);
            let ks_max = 4.0 * AVG_REMOVED / (1.0 + ls_max) - 1.0;
            let ks = self.rng.random_range(1.0..ks_max.max(1.0) + 1.0).floor() as usize;
            let mut ruined: Vec<u32> = Vec::new();
            for c in std::iter::once(seed).chain(inst.neighbours[seed as usize].iter().copied()) {
                if ruined.len() >= ks {
                    break;
                }
                let Some((r, p)) = pos[c as usize] else {
                    continue;
                };
                if ruined.contains(&r) {
                    continue;
                }
                ruined.push(r);
                let tasks = &s.routes[r as usize].tasks;
                let len = tasks.len();
                let l_max = ls_max.min(len as f64).max(1.0);
                let l = (self.rng.random_range(1.0..l_max + 1.0).floor() as usize).clamp(1, len);
                let p = p as usize;
                if l == len || self.rng.random::<bool>() {
                    let lo = p.saturating_sub(l - 1);
                    let hi = p.min(len - l);
                    let first = self.rng.random_range(lo..=hi);
                    for &t in &tasks[first..first + l] {
                        take(t, &mut units);
                    }
                } else {
                    // Split string: remove l of a window of l + m, keeping m in the middle.
                    let m = self.rng.random_range(1..=len - l);
                    let span = l + m;
                    let lo = p.saturating_sub(span - 1);
                    let hi = p.min(len - span);
                    let first = self.rng.random_range(lo..=hi);
                    let keep_at = self.rng.random_range(1..=l.max(1)).min(l);
                    for (k, &t) in tasks[first..first + span].iter().enumerate() {
                        let kept = k >= keep_at && k < keep_at + m;
                        if !kept {
                            take(t, &mut units);
                        }
                    }
                }
            }
        } else if roll < 0.8 {
            // Random removal.
            let mut pool = assigned.clone();
            pool.shuffle(&mut self.rng);
            for &t in pool.iter().take(count) {
                take(t, &mut units);
            }
        } else if roll < 0.9 {
            // Related (Shaw) removal: the seed's nearest assigned neighbours.
            take(seed, &mut units);
            for &c in &inst.neighbours[seed as usize] {
                if units.len() >= count {
                    break;
                }
                if pos[c as usize].is_some() {
                    take(c, &mut units);
                }
            }
        } else {
            // Worst removal: the tasks whose detour costs most, with some noise.
            let mut scored: Vec<(f64, u32)> = assigned
                .iter()
                .map(|&t| {
                    let Some((r, p)) = pos[t as usize] else {
                        return (0.0, t);
                    };
                    let route = &s.routes[r as usize];
                    let veh = &inst.vehicles[route.vehicle];
                    let (r_tasks, p) = (&route.tasks, p as usize);
                    let at = |k: usize| Some(inst.tasks[r_tasks[k] as usize].loc);
                    let prev = if p == 0 { veh.start } else { at(p - 1) };
                    let next = if p + 1 == r_tasks.len() {
                        veh.end
                    } else {
                        at(p + 1)
                    };
                    let here = at(p);
                    let saving = inst.cost(veh.profile, prev, here)
                        + inst.cost(veh.profile, here, next)
                        - inst.cost(veh.profile, prev, next);
                    (saving as f64 * self.rng.random_range(0.7..1.3), t)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, t) in scored.iter().take(count) {
                take(t, &mut units);
            }
        }
        units.sort_unstable();
        s.remove_units(inst, &units);
        units
    }

    fn recreate(&mut self, s: &mut State, removed: Vec<usize>) {
        let inst = self.inst;
        // Everything unserved is retried, not only what was just removed.
        let mut todo = s.unassigned.clone();
        debug_assert!(removed.iter().all(|u| todo.contains(u)));
        if self.rng.random::<f64>() < 0.15 {
            s.regret_insert(inst, &todo, &mut self.rng);
            return;
        }
        // SISR orderings: random, largest first, farthest first, closest first.
        todo.shuffle(&mut self.rng);
        let depot = inst.vehicles[0].start;
        let far = |u: usize| {
            let t = inst.unit_tasks(u).next().unwrap_or(0) as usize;
            inst.dur(0, depot, Some(inst.tasks[t].loc))
        };
        match self.rng.random_range(0..11) {
            0..4 => {}
            4..8 => todo.sort_by_key(|&u| std::cmp::Reverse(inst.unit_size(u))),
            8..10 => todo.sort_by_key(|&u| std::cmp::Reverse(far(u))),
            _ => todo.sort_by_key(|&u| far(u)),
        }
        todo.sort_by_key(|&u| std::cmp::Reverse(inst.unit_weight[u]));
        s.greedy_insert(inst, &todo, &mut self.rng, BLINK);
    }
}
