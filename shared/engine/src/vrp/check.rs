//! An independent feasibility checker: everything a [`Solution`] claims is recomputed from
//! the [`Problem`] and its matrices, without any of the solver's caches or scheduling code.
//!
//! Timing rule: between two located steps the vehicle travels the matrix duration (speed
//! factor applied); breaks may sit anywhere on that leg, so the idle gaps between
//! consecutive steps of the leg (arrival minus previous departure) must add up to exactly
//! the travel duration. Waiting is explicit in `waiting_time`.

use super::model::{Problem, TimeWindow, scaled_duration, travel_cost};
use super::solution::{Solution, StepKind, Unassigned};

/// Totals of a feasible solution, recomputed from the matrices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SolutionStats {
    /// Fixed plus travel cost over all routes.
    pub cost: i64,
    /// Used vehicles.
    pub routes: usize,
    /// Jobs plus shipments served.
    pub served: usize,
    /// Jobs plus shipments not served.
    pub unassigned: usize,
    /// Sum of the priorities of the served jobs and shipments.
    pub priority: u64,
    /// Travel duration.
    pub duration: i64,
    /// Travel distance (zero without a distance matrix).
    pub distance: i64,
    /// Waiting time.
    pub waiting_time: i64,
    /// Service time, breaks included.
    pub service: i64,
}

/// The first broken rule found. `route` and `step` are indices into the solution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A route names a vehicle that does not exist.
    #[error("route {route}: vehicle index {vehicle} does not exist")]
    UnknownVehicle {
        /// Route index.
        route: usize,
        /// The vehicle index it names.
        vehicle: usize,
    },
    /// Two routes use the same vehicle.
    #[error("route {route}: vehicle {vehicle} already has a route")]
    VehicleReused {
        /// Route index.
        route: usize,
        /// Vehicle index.
        vehicle: usize,
    },
    /// A route serves no task.
    #[error("route {route} serves no task")]
    EmptyRoute {
        /// Route index.
        route: usize,
    },
    /// A step refers to a task or break that does not exist.
    #[error("route {route} step {step}: refers to a task or break that does not exist")]
    UnknownTask {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
    },
    /// Start/end steps missing, misplaced, or present for a vehicle without that location.
    #[error("route {route}: start/end steps do not match the vehicle")]
    StartEnd {
        /// Route index.
        route: usize,
    },
    /// A step's location differs from its task's.
    #[error("route {route} step {step}: wrong location")]
    Location {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
    },
    /// A job is served twice, or both served and unassigned.
    #[error("{task} appears more than once")]
    Duplicate {
        /// E.g. `jobs[3]`.
        task: String,
    },
    /// A job or shipment is neither served nor unassigned.
    #[error("{task} is neither served nor unassigned")]
    Missing {
        /// E.g. `shipments[0]`.
        task: String,
    },
    /// A shipment's pickup and delivery are not on the same route in that order.
    #[error("shipments[{shipment}]: pickup and delivery not on one route, pickup first")]
    ShipmentOrder {
        /// Shipment index.
        shipment: usize,
    },
    /// A task needs a skill the vehicle lacks.
    #[error("route {route} step {step}: vehicle lacks a required skill")]
    Skills {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
    },
    /// More tasks than the vehicle's max_tasks.
    #[error("route {route}: {tasks} tasks exceed max_tasks {max}")]
    MaxTasks {
        /// Route index.
        route: usize,
        /// Tasks served.
        tasks: usize,
        /// The limit.
        max: usize,
    },
    /// Load above capacity (or below zero) after a step.
    #[error("route {route} step {step}: load {load:?} outside capacity {capacity:?}")]
    Capacity {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
        /// Recomputed load.
        load: Vec<i64>,
        /// The vehicle's capacity.
        capacity: Vec<i64>,
    },
    /// The load a step reports differs from the recomputed one.
    #[error("route {route} step {step}: reported load {reported:?}, recomputed {expected:?}")]
    Load {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
        /// Reported.
        reported: Vec<i64>,
        /// Recomputed.
        expected: Vec<i64>,
    },
    /// A service (or break) starts outside its time windows, or the route outside the
    /// vehicle's.
    #[error("route {route} step {step}: starts at {start}, outside its time windows")]
    TimeWindow {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
        /// Service start.
        start: i64,
    },
    /// Times inconsistent with the matrix, negative waiting, or a wrong service duration.
    #[error("route {route} step {step}: timing inconsistent with the matrix ({detail})")]
    Timing {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
        /// What disagrees.
        detail: String,
    },
    /// A reported cumulative duration or distance differs from the matrix sum.
    #[error("route {route} step {step}: cumulative {what} {reported}, recomputed {expected}")]
    Cumulative {
        /// Route index.
        route: usize,
        /// Step index.
        step: usize,
        /// `duration` or `distance`.
        what: &'static str,
        /// Reported.
        reported: i64,
        /// Recomputed.
        expected: i64,
    },
    /// A used vehicle's break is missing or taken twice.
    #[error("route {route}: break {brk} taken {times} times, expected once")]
    Break {
        /// Route index.
        route: usize,
        /// Break index in the vehicle.
        brk: usize,
        /// How often it appears.
        times: usize,
    },
    /// The route cost differs from fixed + travel cost.
    #[error("route {route}: reported cost {reported}, recomputed {expected}")]
    Cost {
        /// Route index.
        route: usize,
        /// Reported.
        reported: i64,
        /// Recomputed.
        expected: i64,
    },
}

fn within(tws: &[TimeWindow], t: i64) -> bool {
    tws.is_empty() || tws.iter().any(|tw| tw.contains(t))
}

/// Checks every hard constraint of `problem` on `solution` and recomputes its totals.
pub fn check_feasibility(
    problem: &Problem,
    solution: &Solution,
) -> Result<SolutionStats, Violation> {
    let dims = problem.dimensions();
    let amount = |a: &[i64], d: usize| a.get(d).copied().unwrap_or(0);
    let mut stats = SolutionStats::default();
    let mut vehicle_used = vec![false; problem.vehicles.len()];
    let mut job_seen = vec![0usize; problem.jobs.len()];
    // (route, step) of each shipment's pickup and delivery.
    let mut pick: Vec<Vec<(usize, usize)>> = vec![Vec::new(); problem.shipments.len()];
    let mut drop: Vec<Vec<(usize, usize)>> = vec![Vec::new(); problem.shipments.len()];

    for (ri, route) in solution.routes.iter().enumerate() {
        let vi = route.vehicle;
        let Some(veh) = problem.vehicles.get(vi) else {
            return Err(Violation::UnknownVehicle {
                route: ri,
                vehicle: vi,
            });
        };
        if std::mem::replace(&mut vehicle_used[vi], true) {
            return Err(Violation::VehicleReused {
                route: ri,
                vehicle: vi,
            });
        }
        let steps = &route.steps;
        let n = steps.len();
        // Start/end placement.
        let starts: Vec<usize> = (0..n)
            .filter(|&k| steps[k].kind == StepKind::Start)
            .collect();
        let ends: Vec<usize> = (0..n).filter(|&k| steps[k].kind == StepKind::End).collect();
        let start_ok = match veh.start {
            Some(_) => starts == [0],
            None => starts.is_empty(),
        };
        let end_ok = match veh.end {
            Some(_) => n > 0 && ends == [n - 1],
            None => ends.is_empty(),
        };
        if !start_ok || !end_ok {
            return Err(Violation::StartEnd { route: ri });
        }
        // Start load: everything the route's jobs deliver.
        let mut load = vec![0i64; dims];
        let mut tasks = 0usize;
        for (k, s) in steps.iter().enumerate() {
            match s.kind {
                StepKind::Job(j) => {
                    let Some(job) = problem.jobs.get(j) else {
                        return Err(Violation::UnknownTask { route: ri, step: k });
                    };
                    for (d, l) in load.iter_mut().enumerate() {
                        *l += amount(&job.delivery, d);
                    }
                    tasks += 1;
                }
                StepKind::Pickup(x) | StepKind::Delivery(x) => {
                    if x >= problem.shipments.len() {
                        return Err(Violation::UnknownTask { route: ri, step: k });
                    }
                    tasks += 1;
                }
                StepKind::Break(b) if b >= veh.breaks.len() => {
                    return Err(Violation::UnknownTask { route: ri, step: k });
                }
                _ => {}
            }
        }
        if tasks == 0 {
            return Err(Violation::EmptyRoute { route: ri });
        }
        if let Some(max) = veh.max_tasks
            && tasks > max
        {
            return Err(Violation::MaxTasks {
                route: ri,
                tasks,
                max,
            });
        }
        let vtw = veh.time_window.unwrap_or(TimeWindow::UNBOUNDED);
        let mut breaks_taken = vec![0usize; veh.breaks.len()];
        let mut last_loc: Option<usize> = None;
        let mut gap_sum = 0i64;
        let mut prev_depart = 0i64;
        let (mut cum_dur, mut cum_dist, mut travel_cost_sum) = (0i64, 0i64, 0i64);
        for (k, s) in steps.iter().enumerate() {
            let timing = |detail: String| Violation::Timing {
                route: ri,
                step: k,
                detail,
            };
            let (location, service, tws, skills, priority): (
                Option<usize>,
                i64,
                &[TimeWindow],
                &[u32],
                u32,
            ) = match s.kind {
                StepKind::Start => (veh.start, 0, &[], &[], 0),
                StepKind::End => (veh.end, 0, &[], &[], 0),
                StepKind::Job(j) => {
                    let job = &problem.jobs[j];
                    job_seen[j] += 1;
                    (
                        Some(job.location),
                        job.service,
                        &job.time_windows,
                        &job.skills,
                        job.priority,
                    )
                }
                StepKind::Pickup(x) => {
                    let sh = &problem.shipments[x];
                    pick[x].push((ri, k));
                    (
                        Some(sh.pickup.location),
                        sh.pickup.service,
                        &sh.pickup.time_windows,
                        &sh.skills,
                        sh.priority,
                    )
                }
                StepKind::Delivery(x) => {
                    let sh = &problem.shipments[x];
                    drop[x].push((ri, k));
                    (
                        Some(sh.delivery.location),
                        sh.delivery.service,
                        &sh.delivery.time_windows,
                        &sh.skills,
                        0,
                    )
                }
                StepKind::Break(b) => {
                    breaks_taken[b] += 1;
                    let br = &veh.breaks[b];
                    (None, br.service, &br.time_windows, &[], 0)
                }
            };
            if s.location != location {
                return Err(Violation::Location { route: ri, step: k });
            }
            if !skills.iter().all(|x| veh.skills.contains(x)) {
                return Err(Violation::Skills { route: ri, step: k });
            }
            stats.priority += u64::from(priority);
            if s.service != service {
                return Err(timing(format!(
                    "service {} instead of {service}",
                    s.service
                )));
            }
            if s.waiting_time < 0 {
                return Err(timing("negative waiting time".into()));
            }
            // Time flow.
            if k > 0 {
                let gap = s.arrival - prev_depart;
                if gap < 0 {
                    return Err(timing(format!(
                        "arrives {} before the previous step ends",
                        -gap
                    )));
                }
                gap_sum += gap;
            } else if s.arrival < vtw.start {
                return Err(Violation::TimeWindow {
                    route: ri,
                    step: k,
                    start: s.arrival,
                });
            }
            if let Some(loc) = location {
                let travel = match last_loc {
                    Some(prev) => {
                        scaled_duration(problem.durations.at(prev, loc), veh.speed_factor)
                    }
                    None => 0,
                };
                if k > 0 && gap_sum != travel {
                    return Err(timing(format!(
                        "{gap_sum} between steps for a {travel} leg"
                    )));
                }
                cum_dur += travel;
                travel_cost_sum += travel_cost(travel, veh.costs.per_hour);
                if let (Some(prev), Some(m)) = (last_loc, &problem.distances) {
                    cum_dist += m.at(prev, loc);
                }
                gap_sum = 0;
                last_loc = Some(loc);
                for (what, reported, expected) in [
                    ("duration", s.duration, cum_dur),
                    ("distance", s.distance, cum_dist),
                ] {
                    if reported != expected {
                        return Err(Violation::Cumulative {
                            route: ri,
                            step: k,
                            what,
                            reported,
                            expected,
                        });
                    }
                }
            }
            let start = s.arrival + s.waiting_time;
            if !within(tws, start) {
                return Err(Violation::TimeWindow {
                    route: ri,
                    step: k,
                    start,
                });
            }
            prev_depart = start + s.service;
            // Loads.
            for (d, l) in load.iter_mut().enumerate() {
                *l += match s.kind {
                    StepKind::Job(j) => {
                        amount(&problem.jobs[j].pickup, d) - amount(&problem.jobs[j].delivery, d)
                    }
                    StepKind::Pickup(x) => amount(&problem.shipments[x].amount, d),
                    StepKind::Delivery(x) => -amount(&problem.shipments[x].amount, d),
                    _ => 0,
                };
            }
            if load
                .iter()
                .zip(&veh.capacity)
                .any(|(l, c)| *l > *c || *l < 0)
            {
                return Err(Violation::Capacity {
                    route: ri,
                    step: k,
                    load: load.clone(),
                    capacity: veh.capacity.clone(),
                });
            }
            if s.load != load {
                return Err(Violation::Load {
                    route: ri,
                    step: k,
                    reported: s.load.clone(),
                    expected: load.clone(),
                });
            }
            stats.waiting_time += s.waiting_time;
            stats.service += s.service;
        }
        // The route must be over by the end of the vehicle's window.
        if prev_depart > vtw.end {
            return Err(Violation::TimeWindow {
                route: ri,
                step: n - 1,
                start: prev_depart,
            });
        }
        if let Some((brk, &times)) = breaks_taken.iter().enumerate().find(|(_, t)| **t != 1) {
            return Err(Violation::Break {
                route: ri,
                brk,
                times,
            });
        }
        let expected = veh.costs.fixed + travel_cost_sum;
        if route.cost != expected {
            return Err(Violation::Cost {
                route: ri,
                reported: route.cost,
                expected,
            });
        }
        stats.cost += expected;
        stats.duration += cum_dur;
        stats.distance += cum_dist;
        stats.routes += 1;
    }

    let mut ship_unassigned = vec![0usize; problem.shipments.len()];
    for u in &solution.unassigned {
        match *u {
            Unassigned::Job(j) if j < problem.jobs.len() => job_seen[j] += 1,
            Unassigned::Shipment(x) if x < problem.shipments.len() => ship_unassigned[x] += 1,
            Unassigned::Job(j) => {
                return Err(Violation::Missing {
                    task: format!("unassigned jobs[{j}] (no such job)"),
                });
            }
            Unassigned::Shipment(x) => {
                return Err(Violation::Missing {
                    task: format!("unassigned shipments[{x}] (no such shipment)"),
                });
            }
        }
    }
    for (j, &seen) in job_seen.iter().enumerate() {
        match seen {
            0 => {
                return Err(Violation::Missing {
                    task: format!("jobs[{j}]"),
                });
            }
            1 => {}
            _ => {
                return Err(Violation::Duplicate {
                    task: format!("jobs[{j}]"),
                });
            }
        }
    }
    for x in 0..problem.shipments.len() {
        let task = format!("shipments[{x}]");
        match (pick[x].as_slice(), drop[x].as_slice(), ship_unassigned[x]) {
            ([], [], 0) => return Err(Violation::Missing { task }),
            ([], [], 1) => {}
            ([p], [d], 0) => {
                if p.0 != d.0 || p.1 >= d.1 {
                    return Err(Violation::ShipmentOrder { shipment: x });
                }
            }
            ([], [], _) | ([_], [_], _) => return Err(Violation::Duplicate { task }),
            (p, d, _) if p.len() > 1 || d.len() > 1 => return Err(Violation::Duplicate { task }),
            _ => return Err(Violation::ShipmentOrder { shipment: x }),
        }
    }
    stats.unassigned = solution.unassigned.len();
    stats.served = job_seen.len() + problem.shipments.len() - stats.unassigned;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vrp::model::{Break, Job, Matrix, Shipment, ShipmentStep, Vehicle};
    use crate::vrp::solution::Step;
    use crate::vrp::{SolveOptions, solve};

    /// Points on a line, 10 apart; one vehicle with a break, three jobs (one with a time
    /// window and a skill) and a zero-amount shipment whose ends share a location.
    fn fixture() -> (Problem, Solution) {
        let n = 5;
        let data = (0..n * n)
            .map(|k| 10 * ((k / n) as i64 - (k % n) as i64).abs())
            .collect();
        let m = Matrix::new("durations", n, data).unwrap();
        let mut v = Vehicle::new(1, Some(0), Some(0), vec![10]);
        v.skills = vec![3];
        v.time_window = Some(TimeWindow::new(0, 1000));
        v.breaks = vec![Break {
            id: 1,
            time_windows: vec![TimeWindow::new(20, 40)],
            service: 5,
        }];
        let mut jobs: Vec<Job> = (1..4)
            .map(|l| {
                let mut j = Job::new(l as u64, l);
                j.delivery = vec![2];
                j.service = 1;
                j
            })
            .collect();
        jobs[1].time_windows = vec![TimeWindow::new(0, 500)];
        jobs[2].skills = vec![3];
        let p = Problem {
            vehicles: vec![v],
            jobs,
            shipments: vec![Shipment {
                pickup: ShipmentStep::new(10, 4),
                delivery: ShipmentStep::new(11, 4),
                amount: vec![0],
                skills: Vec::new(),
                priority: 0,
            }],
            durations: m.clone(),
            distances: Some(m),
        };
        let s = solve(
            &p,
            &SolveOptions {
                time_limit: Duration::from_secs(10),
                max_iterations: Some(100),
                ..SolveOptions::default()
            },
        )
        .unwrap();
        assert!(s.unassigned.is_empty());
        (p, s)
    }

    fn step_of(s: &Solution, kind: StepKind) -> usize {
        s.routes[0]
            .steps
            .iter()
            .position(|st| st.kind == kind)
            .unwrap()
    }

    fn steps(s: &mut Solution) -> &mut Vec<Step> {
        &mut s.routes[0].steps
    }

    #[test]
    fn the_fixture_is_feasible() {
        let (p, s) = fixture();
        let stats = check_feasibility(&p, &s).unwrap();
        assert_eq!(stats.served, 4);
        assert_eq!(stats.routes, 1);
        assert_eq!(stats.duration, 80);
        assert_eq!(stats.distance, 80);
        assert_eq!(stats.cost, 80);
        assert_eq!(stats.service, 3 + 5);
    }

    #[test]
    fn catches_every_kind_of_violation() {
        let (p, s) = fixture();
        let job1 = step_of(&s, StepKind::Job(1));
        let check = |p: &Problem, s: &Solution| check_feasibility(p, s).unwrap_err();

        let mut bad = s.clone();
        bad.routes[0].vehicle = 9;
        assert!(matches!(check(&p, &bad), Violation::UnknownVehicle { .. }));

        let mut bad = s.clone();
        bad.routes.push(bad.routes[0].clone());
        assert!(matches!(check(&p, &bad), Violation::VehicleReused { .. }));

        let mut bad = s.clone();
        steps(&mut bad).pop();
        assert!(matches!(check(&p, &bad), Violation::StartEnd { .. }));

        let mut bad = s.clone();
        let keep: Vec<Step> = steps(&mut bad)
            .iter()
            .filter(|st| matches!(st.kind, StepKind::Start | StepKind::End))
            .cloned()
            .collect();
        *steps(&mut bad) = keep;
        assert!(matches!(check(&p, &bad), Violation::EmptyRoute { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].location = Some(0);
        assert!(matches!(check(&p, &bad), Violation::Location { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].kind = StepKind::Job(7);
        assert!(matches!(check(&p, &bad), Violation::UnknownTask { .. }));

        let mut q = p.clone();
        q.vehicles[0].capacity = vec![5];
        assert!(matches!(check(&q, &s), Violation::Capacity { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].load = vec![9];
        assert!(matches!(check(&p, &bad), Violation::Load { .. }));

        let mut q = p.clone();
        q.jobs[1].time_windows = vec![TimeWindow::new(0, 1)];
        assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

        let mut q = p.clone();
        q.vehicles[0].time_window = Some(TimeWindow::new(0, 50));
        assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

        let mut q = p.clone();
        q.vehicles[0].breaks[0].time_windows = vec![TimeWindow::new(500, 600)];
        assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].arrival += 1;
        assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].waiting_time = -1;
        assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].service = 0;
        assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

        let mut bad = s.clone();
        steps(&mut bad)[job1].duration += 1;
        assert!(matches!(
            check(&p, &bad),
            Violation::Cumulative {
                what: "duration",
                ..
            }
        ));

        let mut bad = s.clone();
        steps(&mut bad)[job1].distance += 1;
        assert!(matches!(
            check(&p, &bad),
            Violation::Cumulative {
                what: "distance",
                ..
            }
        ));

        let mut q = p.clone();
        q.jobs[0].skills = vec![4];
        assert!(matches!(check(&q, &s), Violation::Skills { .. }));

        let mut q = p.clone();
        q.vehicles[0].max_tasks = Some(4);
        assert!(matches!(
            check(&q, &s),
            Violation::MaxTasks {
                tasks: 5,
                max: 4,
                ..
            }
        ));

        let mut q = p.clone();
        q.jobs.push(Job::new(99, 1));
        assert!(matches!(check(&q, &s), Violation::Missing { .. }));

        let mut bad = s.clone();
        bad.unassigned.push(Unassigned::Job(0));
        assert!(matches!(check(&p, &bad), Violation::Duplicate { .. }));

        let mut bad = s.clone();
        bad.unassigned.push(Unassigned::Shipment(0));
        assert!(matches!(check(&p, &bad), Violation::Duplicate { .. }));

        // Delivery before pickup (same location, zero amount, so only the order is wrong).
        let mut bad = s.clone();
        let (pi, di) = (
            step_of(&s, StepKind::Pickup(0)),
            step_of(&s, StepKind::Delivery(0)),
        );
        steps(&mut bad)[pi].kind = StepKind::Delivery(0);
        steps(&mut bad)[di].kind = StepKind::Pickup(0);
        assert!(matches!(
            check(&p, &bad),
            Violation::ShipmentOrder { shipment: 0 }
        ));

        let mut q = p.clone();
        q.vehicles[0].breaks.push(Break {
            id: 2,
            time_windows: Vec::new(),
            service: 0,
        });
        assert!(matches!(
            check(&q, &s),
            Violation::Break {
                brk: 1,
                times: 0,
                ..
            }
        ));

        let mut bad = s.clone();
        bad.routes[0].cost += 1;
        assert!(matches!(check(&p, &bad), Violation::Cost { .. }));

        let mut q = p.clone();
        q.vehicles[0].costs.fixed = 5;
        assert!(matches!(check(&q, &s), Violation::Cost { .. }));
    }
}
