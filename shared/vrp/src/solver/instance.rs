//! The problem preprocessed for the search: tasks numbered densely, time windows sorted and
//! merged, per-vehicle duration and cost matrices, skill compatibility, neighbour lists.

use std::sync::Arc;

use crate::model::{Problem, TimeWindow, scaled_duration, travel_cost};

/// Times past this are "never"; far from overflow when a few are added together.
pub(super) const INF: i64 = i64::MAX / 4;

/// What a task is in the caller's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskKind {
    Job(usize),
    Pickup(usize),
    Delivery(usize),
}

/// One stop to serve: a job, or one end of a shipment.
#[derive(Debug, Clone)]
pub(super) struct Task {
    pub kind: TaskKind,
    pub loc: usize,
    pub service: i64,
    /// Sorted, disjoint, never empty.
    pub tws: Vec<TimeWindow>,
    pub unit: usize,
    pub priority: u32,
}

/// What is inserted and removed as a whole: a job, or a shipment's two tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Job(u32),
    Shipment(u32, u32),
}

/// Durations (speed factor applied) and costs shared by vehicles with the same speed factor
/// and hourly cost.
pub(super) struct Profile {
    pub dur: Vec<i64>,
    pub cost: Vec<i64>,
    /// A vehicle of this profile: whose distances it reports.
    pub vehicle: usize,
}

/// A vehicle as the search sees it.
#[derive(Debug, Clone)]
pub(super) struct Veh {
    pub start: Option<usize>,
    pub end: Option<usize>,
    pub cap: Vec<i64>,
    pub tw: TimeWindow,
    pub max_tasks: usize,
    pub fixed: i64,
    pub profile: usize,
    /// (windows, service) per break, in the order they are taken.
    pub breaks: Vec<(Vec<TimeWindow>, i64)>,
    /// Vehicles of one class are interchangeable; only one empty route per class is tried.
    pub class: usize,
}

pub(super) struct Instance<'a> {
    pub problem: &'a Problem,
    pub size: usize,
    pub dims: usize,
    pub tasks: Vec<Task>,
    /// Per task, `dims` values: what the task adds to the load at the route start.
    pub start_load: Vec<i64>,
    /// Per task, `dims` values: how the load changes at the task.
    pub delta: Vec<i64>,
    pub units: Vec<Unit>,
    /// Cost of leaving a unit unserved, in the first objective level.
    pub unit_weight: Vec<i64>,
    pub vehicles: Vec<Veh>,
    pub profiles: Vec<Profile>,
    /// `compat[v * tasks + t]`: vehicle v has every skill task t needs.
    pub compat: Vec<bool>,
    /// Per task, other tasks ordered by distance (durations), nearest first; capped.
    pub neighbours: Vec<Vec<u32>>,
}

/// Sorts and merges windows; no window means "any time".
pub(super) fn normalise_windows(tws: &[TimeWindow]) -> Vec<TimeWindow> {
    if tws.is_empty() {
        return vec![TimeWindow::UNBOUNDED];
    }
    let mut v = tws.to_vec();
    v.sort();
    let mut out: Vec<TimeWindow> = Vec::with_capacity(v.len());
    for tw in v {
        match out.last_mut() {
            Some(last) if tw.start <= last.end => last.end = last.end.max(tw.end),
            _ => out.push(tw),
        }
    }
    out
}

/// When a service can start at the earliest for a vehicle arriving at `arrival`.
#[inline]
pub(super) fn earliest_start(tws: &[TimeWindow], arrival: i64) -> Option<i64> {
    tws.iter()
        .find(|tw| tw.end >= arrival)
        .map(|tw| arrival.max(tw.start))
}

/// The latest arrival from which the service can start no later than `deadline`; `-INF` when
/// none. Because waiting is allowed, every earlier arrival is feasible too.
#[inline]
pub(super) fn latest_arrival(tws: &[TimeWindow], deadline: i64) -> i64 {
    tws.iter()
        .rev()
        .find(|tw| tw.start <= deadline)
        .map_or(-INF, |tw| tw.end.min(deadline))
}

const MAX_NEIGHBOURS: usize = 200;

impl<'a> Instance<'a> {
    pub fn new(problem: &'a Problem) -> Self {
        let size = problem.durations.size();
        let dims = problem.dimensions();
        let mut tasks = Vec::new();
        let mut start_load = Vec::new();
        let mut delta = Vec::new();
        let mut units = Vec::new();
        let mut skills: Vec<&[u32]> = Vec::new();
        let amount = |a: &[i64], i: usize| a.get(i).copied().unwrap_or(0);
        for (j, job) in problem.jobs.iter().enumerate() {
            let unit = units.len();
            units.push(Unit::Job(tasks.len() as u32));
            tasks.push(Task {
                kind: TaskKind::Job(j),
                loc: job.location,
                service: job.service,
                tws: normalise_windows(&job.time_windows),
                unit,
                priority: job.priority,
            });
            skills.push(&job.skills);
            for d in 0..dims {
                start_load.push(amount(&job.delivery, d));
                delta.push(amount(&job.pickup, d) - amount(&job.delivery, d));
            }
        }
        for (s, sh) in problem.shipments.iter().enumerate() {
            let unit = units.len();
            let p = tasks.len() as u32;
            units.push(Unit::Shipment(p, p + 1));
            for (kind, step, sign) in [
                (TaskKind::Pickup(s), &sh.pickup, 1),
                (TaskKind::Delivery(s), &sh.delivery, -1),
            ] {
                tasks.push(Task {
                    kind,
                    loc: step.location,
                    service: step.service,
                    tws: normalise_windows(&step.time_windows),
                    unit,
                    priority: sh.priority,
                });
                skills.push(&sh.skills);
                for d in 0..dims {
                    start_load.push(0);
                    delta.push(sign * amount(&sh.amount, d));
                }
            }
        }
        // One priority point outweighs serving every priority-0 task: VROOM's hierarchy.
        let n_tasks = tasks.len() as i64;
        let unit_weight = units
            .iter()
            .map(|u| match *u {
                Unit::Job(t) => i64::from(tasks[t as usize].priority) * (n_tasks + 1) + 1,
                Unit::Shipment(p, _) => {
                    2 * (i64::from(tasks[p as usize].priority) * (n_tasks + 1) + 1)
                }
            })
            .collect();

        let mut profile_keys: Vec<(u64, i64, usize)> = Vec::new();
        let mut profiles = Vec::new();
        let mut vehicles = Vec::new();
        let mut class_keys: Vec<String> = Vec::new();
        for (vi, v) in problem.vehicles.iter().enumerate() {
            // Vehicles with their own matrices share a profile only with the same matrices.
            let matrices = v.matrices.as_ref().map_or(0, |m| Arc::as_ptr(m) as usize);
            let key = (v.speed_factor.to_bits(), v.costs.per_hour, matrices);
            let durations = problem.durations_for(v);
            let profile = match profile_keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    profile_keys.push(key);
                    let mut dur = Vec::with_capacity(size * size);
                    let mut cost = Vec::with_capacity(size * size);
                    for a in 0..size {
                        for b in 0..size {
                            let d = scaled_duration(durations.at(a, b), v.speed_factor);
                            dur.push(d);
                            cost.push(travel_cost(d, v.costs.per_hour));
                        }
                    }
                    profiles.push(Profile {
                        dur,
                        cost,
                        vehicle: vi,
                    });
                    profiles.len() - 1
                }
            };
            let mut vskills = v.skills.clone();
            vskills.sort_unstable();
            // Everything that makes two vehicles differ, as a comparable key.
            let class_key = format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}",
                v.start,
                v.end,
                v.capacity,
                vskills,
                v.time_window,
                v.max_tasks,
                profile,
                v.costs.fixed,
                v.breaks
                    .iter()
                    .map(|b| (&b.time_windows, b.service))
                    .collect::<Vec<_>>()
            );
            let class = match class_keys.iter().position(|k| *k == class_key) {
                Some(i) => i,
                None => {
                    class_keys.push(class_key);
                    class_keys.len() - 1
                }
            };
            vehicles.push(Veh {
                start: v.start,
                end: v.end,
                cap: v.capacity.clone(),
                tw: v.time_window.unwrap_or(TimeWindow::UNBOUNDED),
                max_tasks: v.max_tasks.unwrap_or(usize::MAX),
                fixed: v.costs.fixed,
                profile,
                breaks: v
                    .breaks
                    .iter()
                    .map(|b| (normalise_windows(&b.time_windows), b.service))
                    .collect(),
                class,
            });
        }
        let mut compat = Vec::with_capacity(vehicles.len() * tasks.len());
        for v in &problem.vehicles {
            for s in &skills {
                compat.push(s.iter().all(|k| v.skills.contains(k)));
            }
        }
        let neighbours = (0..tasks.len())
            .map(|a| {
                let la = tasks[a].loc;
                let mut others: Vec<(i64, u32)> = (0..tasks.len())
                    .filter(|&b| b != a)
                    .map(|b| {
                        let lb = tasks[b].loc;
                        let d = problem.durations.at(la, lb) + problem.durations.at(lb, la);
                        (d, b as u32)
                    })
                    .collect();
                let keep = others.len().min(MAX_NEIGHBOURS);
                if keep < others.len() {
                    others.select_nth_unstable(keep);
                    others.truncate(keep);
                }
                others.sort_unstable();
                others.into_iter().map(|(_, b)| b).collect()
            })
            .collect();
        Self {
            problem,
            size,
            dims,
            tasks,
            start_load,
            delta,
            units,
            unit_weight,
            vehicles,
            profiles,
            compat,
            neighbours,
        }
    }

    /// Whether vehicle `v` may serve task `t` (skills only).
    #[inline]
    pub fn compatible(&self, v: usize, t: usize) -> bool {
        self.compat[v * self.tasks.len() + t]
    }

    #[inline]
    pub fn dur(&self, profile: usize, a: Option<usize>, b: Option<usize>) -> i64 {
        match (a, b) {
            (Some(a), Some(b)) => self.profiles[profile].dur[a * self.size + b],
            _ => 0,
        }
    }

    #[inline]
    pub fn cost(&self, profile: usize, a: Option<usize>, b: Option<usize>) -> i64 {
        match (a, b) {
            (Some(a), Some(b)) => self.profiles[profile].cost[a * self.size + b],
            _ => 0,
        }
    }

    #[inline]
    pub fn distance(&self, profile: usize, a: Option<usize>, b: Option<usize>) -> i64 {
        let vehicle = &self.problem.vehicles[self.profiles[profile].vehicle];
        match (a, b, self.problem.distances_for(vehicle)) {
            (Some(a), Some(b), Some(m)) => m.at(a, b),
            _ => 0,
        }
    }

    /// The tasks of a unit.
    pub fn unit_tasks(&self, u: usize) -> impl Iterator<Item = u32> {
        let (a, b) = match self.units[u] {
            Unit::Job(t) => (t, None),
            Unit::Shipment(p, d) => (p, Some(d)),
        };
        std::iter::once(a).chain(b)
    }

    /// Sum of the absolute amounts a unit moves (for ordering insertions by size).
    pub fn unit_size(&self, u: usize) -> i64 {
        self.unit_tasks(u)
            .map(|t| {
                let t = t as usize;
                (0..self.dims)
                    .map(|d| {
                        self.start_load[t * self.dims + d].abs()
                            + self.delta[t * self.dims + d].abs()
                    })
                    .sum::<i64>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_sorted_and_merged() {
        let tws = normalise_windows(&[
            TimeWindow::new(50, 60),
            TimeWindow::new(10, 20),
            TimeWindow::new(15, 30),
        ]);
        assert_eq!(tws, vec![TimeWindow::new(10, 30), TimeWindow::new(50, 60)]);
        assert_eq!(normalise_windows(&[]), vec![TimeWindow::UNBOUNDED]);
    }

    #[test]
    fn earliest_start_and_latest_arrival_agree() {
        let tws = normalise_windows(&[TimeWindow::new(10, 20), TimeWindow::new(50, 60)]);
        assert_eq!(earliest_start(&tws, 0), Some(10));
        assert_eq!(earliest_start(&tws, 15), Some(15));
        assert_eq!(earliest_start(&tws, 21), Some(50));
        assert_eq!(earliest_start(&tws, 61), None);
        assert_eq!(latest_arrival(&tws, 100), 60);
        assert_eq!(latest_arrival(&tws, 55), 55);
        assert_eq!(latest_arrival(&tws, 30), 20);
        assert_eq!(latest_arrival(&tws, 5), -INF);
        // Every arrival up to latest_arrival(d) starts service by d.
        for d in 0..70 {
            let l = latest_arrival(&tws, d);
            for a in 0..=l.max(-1) {
                assert!(
                    earliest_start(&tws, a).is_some_and(|s| s <= d),
                    "a={a} d={d}"
                );
            }
            if l > -INF {
                assert!(earliest_start(&tws, l + 1).is_none_or(|s| s > d));
            }
        }
    }

    #[test]
    fn costs_scale_with_per_hour() {
        assert_eq!(travel_cost(100, 3600), 100);
        assert_eq!(travel_cost(3600, 7200), 7200);
        assert_eq!(travel_cost(100, 1800), 50);
        assert_eq!(scaled_duration(100, 2.0), 50);
        assert_eq!(scaled_duration(101, 1.0), 101);
    }
}
