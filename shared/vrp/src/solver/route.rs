//! One vehicle's route during the search, with the cached forward/backward quantities that
//! make an insertion check O(1) (per amount dimension): earliest departures, latest feasible
//! arrivals, loads and their prefix/suffix maxima.
//!
//! Positions run from 0 (the start, which may have no location) through the tasks to
//! `n + 1` (the end, which may have no location). Vehicles with breaks skip the time caches
//! and re-run the exact break scheduler ([`schedule`]) on every candidate instead.

use rand::Rng;
use rand::rngs::SmallRng;

use super::instance::{INF, Instance, earliest_start, latest_arrival};
use crate::solution::{Step, StepKind};

#[derive(Debug, Clone)]
pub(super) struct RouteState {
    pub vehicle: usize,
    pub tasks: Vec<u32>,
    /// Earliest departure from each position.
    depart: Vec<i64>,
    /// Latest arrival at each position keeping the rest feasible (latest departure at 0).
    latest: Vec<i64>,
    /// Load after each position, `dims` values each.
    load: Vec<i64>,
    /// Max load over positions `0..=p`.
    fmax: Vec<i64>,
    /// Max load over positions `p..=n+1`.
    bmax: Vec<i64>,
    /// Travel cost, without the fixed cost.
    pub travel: i64,
    pub feasible: bool,
}

impl RouteState {
    pub fn new(inst: &Instance<'_>, vehicle: usize) -> Self {
        let mut r = Self {
            vehicle,
            tasks: Vec::new(),
            depart: Vec::new(),
            latest: Vec::new(),
            load: Vec::new(),
            fmax: Vec::new(),
            bmax: Vec::new(),
            travel: 0,
            feasible: true,
        };
        r.update(inst);
        r
    }

    /// Fixed cost (when used) plus travel cost.
    pub fn cost(&self, inst: &Instance<'_>) -> i64 {
        if self.tasks.is_empty() {
            0
        } else {
            self.travel + inst.vehicles[self.vehicle].fixed
        }
    }

    #[inline]
    fn loc(&self, inst: &Instance<'_>, p: usize) -> Option<usize> {
        let v = &inst.vehicles[self.vehicle];
        if p == 0 {
            v.start
        } else if p == self.tasks.len() + 1 {
            v.end
        } else {
            Some(inst.tasks[self.tasks[p - 1] as usize].loc)
        }
    }

    /// Recomputes every cache after the task list changed.
    pub fn update(&mut self, inst: &Instance<'_>) {
        let n = self.tasks.len();
        let dims = inst.dims;
        let veh = &inst.vehicles[self.vehicle];
        let prof = veh.profile;
        self.travel = 0;
        for p in 0..=n {
            self.travel += inst.cost(prof, self.loc(inst, p), self.loc(inst, p + 1));
        }
        // Loads.
        self.load.clear();
        self.load.resize((n + 2) * dims, 0);
        for &t in &self.tasks {
            for d in 0..dims {
                self.load[d] += inst.start_load[t as usize * dims + d];
            }
        }
        for p in 1..=n {
            let t = self.tasks[p - 1] as usize;
            for d in 0..dims {
                self.load[p * dims + d] = self.load[(p - 1) * dims + d] + inst.delta[t * dims + d];
            }
        }
        for d in 0..dims {
            self.load[(n + 1) * dims + d] = self.load[n * dims + d];
        }
        self.fmax.clone_from(&self.load);
        for p in 1..n + 2 {
            for d in 0..dims {
                self.fmax[p * dims + d] =
                    self.fmax[p * dims + d].max(self.fmax[(p - 1) * dims + d]);
            }
        }
        self.bmax.clone_from(&self.load);
        for p in (0..n + 1).rev() {
            for d in 0..dims {
                self.bmax[p * dims + d] =
                    self.bmax[p * dims + d].max(self.bmax[(p + 1) * dims + d]);
            }
        }
        let cap_ok = (0..dims).all(|d| self.fmax[(n + 1) * dims + d] <= veh.cap[d]);
        let tasks_ok = n <= veh.max_tasks;
        if !veh.breaks.is_empty() {
            self.feasible = cap_ok
                && tasks_ok
                && (n == 0 || schedule(inst, self.vehicle, &self.tasks).is_some());
            return;
        }
        // Times.
        self.depart.clear();
        self.depart.resize(n + 2, INF);
        self.latest.clear();
        self.latest.resize(n + 2, -INF);
        self.depart[0] = veh.tw.start;
        let mut time_ok = true;
        for p in 1..=n {
            let t = &inst.tasks[self.tasks[p - 1] as usize];
            let arr = self.depart[p - 1] + inst.dur(prof, self.loc(inst, p - 1), Some(t.loc));
            match earliest_start(&t.tws, arr) {
                Some(s) => self.depart[p] = s + t.service,
                None => {
                    time_ok = false;
                    break;
                }
            }
        }
        if time_ok {
            let arr_end = self.depart[n] + inst.dur(prof, self.loc(inst, n), veh.end);
            self.depart[n + 1] = arr_end;
            time_ok = arr_end <= veh.tw.end;
        }
        self.latest[n + 1] = veh.tw.end;
        for p in (1..=n).rev() {
            let t = &inst.tasks[self.tasks[p - 1] as usize];
            let next = self.latest[p + 1];
            if next <= -INF {
                break;
            }
            let deadline = next - inst.dur(prof, Some(t.loc), self.loc(inst, p + 1)) - t.service;
            self.latest[p] = latest_arrival(&t.tws, deadline);
        }
        if self.latest[1] > -INF {
            self.latest[0] = self.latest[1] - inst.dur(prof, veh.start, self.loc(inst, 1));
        }
        self.feasible = time_ok && cap_ok && tasks_ok;
    }

    /// Whether `tasks` with one more task fits max_tasks and skills.
    #[inline]
    fn admits(&self, inst: &Instance<'_>, t: usize, extra: usize) -> bool {
        inst.compatible(self.vehicle, t)
            && self.tasks.len() + extra <= inst.vehicles[self.vehicle].max_tasks
    }

    /// Cheapest feasible insertion of job task `t`: (cost increase, position to insert
    /// at). Each position is skipped with probability `blink` (SISR's blinks).
    pub fn best_job_insertion(
        &self,
        inst: &Instance<'_>,
        t: usize,
        rng: &mut SmallRng,
        blink: f64,
    ) -> Option<(i64, usize)> {
        if !self.admits(inst, t, 1) {
            return None;
        }
        let n = self.tasks.len();
        let dims = inst.dims;
        let veh = &inst.vehicles[self.vehicle];
        let prof = veh.profile;
        let task = &inst.tasks[t];
        let sl = &inst.start_load[t * dims..(t + 1) * dims];
        let dl = &inst.delta[t * dims..(t + 1) * dims];
        // The start load grows by `sl` wherever the task goes.
        if (0..dims).any(|d| self.load[d] + sl[d] > veh.cap[d]) {
            return None;
        }
        let fixed = if n == 0 { veh.fixed } else { 0 };
        let breaks = !veh.breaks.is_empty();
        let mut best: Option<(i64, usize)> = None;
        let mut buf = Vec::new();
        for p in 0..=n {
            let a = self.loc(inst, p);
            let b = self.loc(inst, p + 1);
            let delta = inst.cost(prof, a, Some(task.loc)) + inst.cost(prof, Some(task.loc), b)
                - inst.cost(prof, a, b)
                + fixed;
            if best.is_some_and(|(c, _)| c <= delta) {
                continue;
            }
            if blink > 0.0 && rng.random::<f64>() < blink {
                continue;
            }
            let cap_ok = (0..dims).all(|d| {
                self.fmax[p * dims + d] + sl[d] <= veh.cap[d]
                    && self.bmax[(p + 1) * dims + d] + sl[d] + dl[d] <= veh.cap[d]
                    && self.load[p * dims + d] + sl[d] + dl[d] <= veh.cap[d]
            });
            if !cap_ok {
                continue;
            }
            let time_ok = if breaks {
                buf.clear();
                buf.extend_from_slice(&self.tasks[..p]);
                buf.push(t as u32);
                buf.extend_from_slice(&self.tasks[p..]);
                schedule(inst, self.vehicle, &buf).is_some()
            } else {
                let arr = self.depart[p] + inst.dur(prof, a, Some(task.loc));
                match earliest_start(&task.tws, arr) {
                    Some(s) => {
                        s + task.service + inst.dur(prof, Some(task.loc), b) <= self.latest[p + 1]
                    }
                    None => false,
                }
            };
            if time_ok {
                best = Some((delta, p));
            }
        }
        best
    }

    /// Cheapest feasible insertion of shipment tasks `(pt, dt)`: (cost increase, i, j) where
    /// the pickup goes before `tasks[i]` and the delivery before `tasks[j]` of the original
    /// list (`i <= j`; equal means back to back).
    pub fn best_shipment_insertion(
        &self,
        inst: &Instance<'_>,
        pt: usize,
        dt: usize,
        rng: &mut SmallRng,
        blink: f64,
    ) -> Option<(i64, usize, usize)> {
        if !self.admits(inst, pt, 2) {
            return None;
        }
        let n = self.tasks.len();
        let dims = inst.dims;
        let veh = &inst.vehicles[self.vehicle];
        let prof = veh.profile;
        let (pk, dl) = (&inst.tasks[pt], &inst.tasks[dt]);
        let amount = &inst.delta[pt * dims..(pt + 1) * dims];
        let fixed = if n == 0 { veh.fixed } else { 0 };
        let breaks = !veh.breaks.is_empty();
        let c = |a, b| inst.cost(prof, a, b);
        let du = |a, b| inst.dur(prof, a, b);
        let mut best: Option<(i64, usize, usize)> = None;
        let mut buf = Vec::new();
        for i in 0..=n {
            let a = self.loc(inst, i);
            let b = self.loc(inst, i + 1);
            if (0..dims).any(|d| self.load[i * dims + d] + amount[d] > veh.cap[d]) {
                continue;
            }
            // Departure from the pickup (fast path only).
            let mut dep = 0;
            if !breaks {
                match earliest_start(&pk.tws, self.depart[i] + du(a, Some(pk.loc))) {
                    Some(s) => dep = s + pk.service,
                    None => continue,
                }
            }
            let mut run_max: Vec<i64> = (0..dims).map(|d| self.load[i * dims + d]).collect();
            let mut prev_loc = Some(pk.loc);
            for j in i..=n {
                if j > i {
                    // Extend the stretch carrying the shipment over original position j.
                    for (d, m) in run_max.iter_mut().enumerate() {
                        *m = (*m).max(self.load[j * dims + d]);
                    }
                    if (0..dims).any(|d| run_max[d] + amount[d] > veh.cap[d]) {
                        break;
                    }
                    if !breaks {
                        let t = &inst.tasks[self.tasks[j - 1] as usize];
                        let arr = dep + du(prev_loc, Some(t.loc));
                        if arr > self.latest[j] {
                            break;
                        }
                        match earliest_start(&t.tws, arr) {
                            Some(s) => dep = s + t.service,
                            None => break,
                        }
                        prev_loc = Some(t.loc);
                    }
                }
                let jl = self.loc(inst, j);
                let jn = self.loc(inst, j + 1);
                let delta = if j == i {
                    c(a, Some(pk.loc)) + c(Some(pk.loc), Some(dl.loc)) + c(Some(dl.loc), b)
                        - c(a, b)
                } else {
                    c(a, Some(pk.loc)) + c(Some(pk.loc), b) - c(a, b)
                        + c(jl, Some(dl.loc))
                        + c(Some(dl.loc), jn)
                        - c(jl, jn)
                } + fixed;
                if best.is_some_and(|(bc, _, _)| bc <= delta) {
                    continue;
                }
                if blink > 0.0 && rng.random::<f64>() < blink {
                    continue;
                }
                let ok = if breaks {
                    buf.clear();
                    buf.extend_from_slice(&self.tasks[..i]);
                    buf.push(pt as u32);
                    buf.extend_from_slice(&self.tasks[i..j]);
                    buf.push(dt as u32);
                    buf.extend_from_slice(&self.tasks[j..]);
                    schedule(inst, self.vehicle, &buf).is_some()
                } else {
                    let from = if j == i { Some(pk.loc) } else { jl };
                    match earliest_start(&dl.tws, dep + du(from, Some(dl.loc))) {
                        Some(s) => s + dl.service + du(Some(dl.loc), jn) <= self.latest[j + 1],
                        None => false,
                    }
                };
                if ok {
                    best = Some((delta, i, j));
                }
            }
        }
        best
    }
}

/// Where the breaks go: for every leg `p -> p+1` (0..=n), how many breaks are taken before
/// travelling and how many after (at the destination, before its service).
pub(super) struct Timing {
    pub legs: Vec<(usize, usize)>,
}

/// Exact earliest-time schedule of `tasks` on vehicle `v`, placing the vehicle's breaks in
/// order by dynamic programming over (position, breaks taken). Since waiting is always
/// allowed, the earliest departure dominates for a given number of breaks taken, which makes
/// the DP exact. `None` when infeasible in time (capacity is not checked here).
pub(super) fn schedule(inst: &Instance<'_>, v: usize, tasks: &[u32]) -> Option<Timing> {
    let veh = &inst.vehicles[v];
    let n = tasks.len();
    let nb = veh.breaks.len();
    let w = nb + 1;
    let loc = |p: usize| {
        if p == 0 {
            veh.start
        } else if p == n + 1 {
            veh.end
        } else {
            Some(inst.tasks[tasks[p - 1] as usize].loc)
        }
    };
    let take = |b: usize, t: i64| {
        let (tws, service) = &veh.breaks[b];
        earliest_start(tws, t).map(|s| s + service)
    };
    let mut best = vec![INF; (n + 2) * w];
    let mut back = vec![(0usize, 0usize); (n + 2) * w];
    best[0] = veh.tw.start;
    for p in 0..=n {
        let travel = inst.dur(veh.profile, loc(p), loc(p + 1));
        for b in 0..w {
            let t0 = best[p * w + b];
            if t0 >= INF {
                continue;
            }
            let mut t1 = t0;
            for k1 in 0..w - b {
                if k1 > 0 {
                    match take(b + k1 - 1, t1) {
                        Some(e) => t1 = e,
                        None => break,
                    }
                }
                let mut t2 = t1 + travel;
                for k2 in 0..w - b - k1 {
                    if k2 > 0 {
                        match take(b + k1 + k2 - 1, t2) {
                            Some(e) => t2 = e,
                            None => break,
                        }
                    }
                    let dep = if p < n {
                        let task = &inst.tasks[tasks[p] as usize];
                        match earliest_start(&task.tws, t2) {
                            Some(s) => s + task.service,
                            None => break,
                        }
                    } else if t2 <= veh.tw.end {
                        t2
                    } else {
                        break;
                    };
                    let idx = (p + 1) * w + b + k1 + k2;
                    if dep < best[idx] {
                        best[idx] = dep;
                        back[idx] = (b, k1);
                    }
                }
            }
        }
    }
    if best[(n + 1) * w + nb] >= INF {
        return None;
    }
    let mut legs = vec![(0, 0); n + 1];
    let mut b = nb;
    for p in (0..=n).rev() {
        let (pb, k1) = back[(p + 1) * w + b];
        legs[p] = (k1, b - pb - k1);
        b = pb;
    }
    Some(Timing { legs })
}

/// The output steps of a feasible route (see [`schedule`]).
pub(super) fn build_steps(
    inst: &Instance<'_>,
    v: usize,
    tasks: &[u32],
    timing: &Timing,
) -> Vec<Step> {
    let veh = &inst.vehicles[v];
    let dims = inst.dims;
    let n = tasks.len();
    let loc = |p: usize| {
        if p == 0 {
            veh.start
        } else if p == n + 1 {
            veh.end
        } else {
            Some(inst.tasks[tasks[p - 1] as usize].loc)
        }
    };
    let mut load = vec![0; dims];
    for &t in tasks {
        for (d, l) in load.iter_mut().enumerate() {
            *l += inst.start_load[t as usize * dims + d];
        }
    }
    let mut steps = Vec::with_capacity(n + 2 + veh.breaks.len());
    let (mut t, mut cum_dur, mut cum_dist) = (veh.tw.start, 0, 0);
    if veh.start.is_some() {
        steps.push(Step {
            kind: StepKind::Start,
            location: veh.start,
            arrival: t,
            waiting_time: 0,
            service: 0,
            load: load.clone(),
            duration: 0,
            distance: 0,
        });
    }
    let mut next_break = 0;
    let mut take_breaks =
        |k: usize, t: &mut i64, steps: &mut Vec<Step>, load: &[i64], cd, cdist| {
            for _ in 0..k {
                let (tws, service) = &veh.breaks[next_break];
                let s = earliest_start(tws, *t).unwrap_or(*t);
                steps.push(Step {
                    kind: StepKind::Break(next_break),
                    location: None,
                    arrival: *t,
                    waiting_time: s - *t,
                    service: *service,
                    load: load.to_vec(),
                    duration: cd,
                    distance: cdist,
                });
                *t = s + service;
                next_break += 1;
            }
        };
    for (p, &(k1, k2)) in timing.legs.iter().enumerate() {
        take_breaks(k1, &mut t, &mut steps, &load, cum_dur, cum_dist);
        let travel = inst.dur(veh.profile, loc(p), loc(p + 1));
        t += travel;
        cum_dur += travel;
        cum_dist += inst.distance(veh.profile, loc(p), loc(p + 1));
        take_breaks(k2, &mut t, &mut steps, &load, cum_dur, cum_dist);
        if p < n {
            let ti = tasks[p] as usize;
            let task = &inst.tasks[ti];
            let s = earliest_start(&task.tws, t).unwrap_or(t);
            for (d, l) in load.iter_mut().enumerate() {
                *l += inst.delta[ti * dims + d];
            }
            let kind = match task.kind {
                super::instance::TaskKind::Job(j) => StepKind::Job(j),
                super::instance::TaskKind::Pickup(s) => StepKind::Pickup(s),
                super::instance::TaskKind::Delivery(s) => StepKind::Delivery(s),
            };
            steps.push(Step {
                kind,
                location: Some(task.loc),
                arrival: t,
                waiting_time: s - t,
                service: task.service,
                load: load.clone(),
                duration: cum_dur,
                distance: cum_dist,
            });
            t = s + task.service;
        } else if veh.end.is_some() {
            steps.push(Step {
                kind: StepKind::End,
                location: veh.end,
                arrival: t,
                waiting_time: 0,
                service: 0,
                load: load.clone(),
                duration: cum_dur,
                distance: cum_dist,
            });
        }
    }
    steps
}
