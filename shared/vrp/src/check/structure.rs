//! The shape of a solution: each route on its own existing vehicle, start and end steps
//! where the vehicle has those locations, steps that refer to existing tasks at their
//! locations with the skills they need, every break taken once, and every job and shipment
//! served or unassigned exactly once (shipments pickup first, on one route).

use super::Violation;
use crate::model::{Problem, TimeWindow, Vehicle};
use crate::solution::{Solution, Step, StepKind, Unassigned};

/// What the problem says about the task a step serves.
pub(super) struct Task<'a> {
    /// Where it happens (`None` for breaks, and for start/end without that location).
    pub location: Option<usize>,
    /// Its service (or break) duration.
    pub service: i64,
    /// Windows in which it may start; empty means any time.
    pub time_windows: &'a [TimeWindow],
    /// Priority counted when it is served (pickups carry the shipment's).
    pub priority: u32,
}

/// Route-independent bookkeeping: which vehicles have a route, and where every job and
/// shipment end was seen.
pub(super) struct Served {
    vehicle_used: Vec<bool>,
    job_seen: Vec<usize>,
    /// (route, step) of each shipment's pickups and deliveries.
    pickups: Vec<Vec<(usize, usize)>>,
    deliveries: Vec<Vec<(usize, usize)>>,
}

impl Served {
    pub(super) fn new(problem: &Problem) -> Self {
        Self {
            vehicle_used: vec![false; problem.vehicles.len()],
            job_seen: vec![0; problem.jobs.len()],
            pickups: vec![Vec::new(); problem.shipments.len()],
            deliveries: vec![Vec::new(); problem.shipments.len()],
        }
    }

    /// The vehicle of route `ri`, which must exist and have no other route.
    pub(super) fn vehicle<'p>(
        &mut self,
        problem: &'p Problem,
        ri: usize,
        vi: usize,
    ) -> Result<&'p Vehicle, Violation> {
        let Some(vehicle) = problem.vehicles.get(vi) else {
            return Err(Violation::UnknownVehicle {
                route: ri,
                vehicle: vi,
            });
        };
        if std::mem::replace(&mut self.vehicle_used[vi], true) {
            return Err(Violation::VehicleReused {
                route: ri,
                vehicle: vi,
            });
        }
        Ok(vehicle)
    }

    /// Counts the task (or break) of step `k` of route `ri`; [`tasks`] has checked that it
    /// exists.
    pub(super) fn record(&mut self, ri: usize, k: usize, kind: StepKind, breaks: &mut [usize]) {
        match kind {
            StepKind::Job(j) => self.job_seen[j] += 1,
            StepKind::Pickup(x) => self.pickups[x].push((ri, k)),
            StepKind::Delivery(x) => self.deliveries[x].push((ri, k)),
            StepKind::Break(b) => breaks[b] += 1,
            StepKind::Start | StepKind::End => {}
        }
    }

    /// After every route: each job and shipment served or unassigned exactly once.
    pub(super) fn finish(
        mut self,
        problem: &Problem,
        solution: &Solution,
    ) -> Result<(), Violation> {
        let mut ship_unassigned = vec![0usize; problem.shipments.len()];
        for u in &solution.unassigned {
            match *u {
                Unassigned::Job(j) if j < problem.jobs.len() => self.job_seen[j] += 1,
                Unassigned::Shipment(x) if x < problem.shipments.len() => {
                    ship_unassigned[x] += 1;
                }
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
        for (j, &seen) in self.job_seen.iter().enumerate() {
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
        for (x, &unassigned) in ship_unassigned.iter().enumerate() {
            let task = format!("shipments[{x}]");
            match (
                self.pickups[x].as_slice(),
                self.deliveries[x].as_slice(),
                unassigned,
            ) {
                ([], [], 0) => return Err(Violation::Missing { task }),
                ([], [], 1) => {}
                ([p], [d], 0) => {
                    if p.0 != d.0 || p.1 >= d.1 {
                        return Err(Violation::ShipmentOrder { shipment: x });
                    }
                }
                ([], [], _) | ([_], [_], _) => return Err(Violation::Duplicate { task }),
                (p, d, _) if p.len() > 1 || d.len() > 1 => {
                    return Err(Violation::Duplicate { task });
                }
                _ => return Err(Violation::ShipmentOrder { shipment: x }),
            }
        }
        Ok(())
    }
}

/// A start step first exactly when the vehicle has a start, an end step last exactly when
/// it has an end, and no others.
pub(super) fn start_end(vehicle: &Vehicle, ri: usize, steps: &[Step]) -> Result<(), Violation> {
    let n = steps.len();
    let starts: Vec<usize> = (0..n)
        .filter(|&k| steps[k].kind == StepKind::Start)
        .collect();
    let ends: Vec<usize> = (0..n).filter(|&k| steps[k].kind == StepKind::End).collect();
    let start_ok = match vehicle.start {
        Some(_) => starts == [0],
        None => starts.is_empty(),
    };
    let end_ok = match vehicle.end {
        Some(_) => n > 0 && ends == [n - 1],
        None => ends.is_empty(),
    };
    if !start_ok || !end_ok {
        return Err(Violation::StartEnd { route: ri });
    }
    Ok(())
}

/// Every step refers to an existing task or break, and the route serves at least one and
/// at most `max_tasks` tasks. The other checks index the problem only after this one.
pub(super) fn tasks(
    problem: &Problem,
    vehicle: &Vehicle,
    ri: usize,
    steps: &[Step],
) -> Result<(), Violation> {
    let mut tasks = 0usize;
    for (k, s) in steps.iter().enumerate() {
        let exists = match s.kind {
            StepKind::Job(j) => j < problem.jobs.len(),
            StepKind::Pickup(x) | StepKind::Delivery(x) => x < problem.shipments.len(),
            StepKind::Break(b) => b < vehicle.breaks.len(),
            StepKind::Start | StepKind::End => true,
        };
        if !exists {
            return Err(Violation::UnknownTask { route: ri, step: k });
        }
        if matches!(
            s.kind,
            StepKind::Job(_) | StepKind::Pickup(_) | StepKind::Delivery(_)
        ) {
            tasks += 1;
        }
    }
    if tasks == 0 {
        return Err(Violation::EmptyRoute { route: ri });
    }
    if let Some(max) = vehicle.max_tasks
        && tasks > max
    {
        return Err(Violation::MaxTasks {
            route: ri,
            tasks,
            max,
        });
    }
    Ok(())
}

/// The task of step `k`, which must be where the step says and need no skill the vehicle
/// lacks.
pub(super) fn step<'p>(
    problem: &'p Problem,
    vehicle: &'p Vehicle,
    ri: usize,
    k: usize,
    step: &Step,
) -> Result<Task<'p>, Violation> {
    let (task, skills): (Task<'p>, &[u32]) = match step.kind {
        StepKind::Start => (Task::depot(vehicle.start), &[]),
        StepKind::End => (Task::depot(vehicle.end), &[]),
        StepKind::Job(j) => {
            let job = &problem.jobs[j];
            let task = Task {
                location: Some(job.location),
                service: job.service,
                time_windows: &job.time_windows,
                priority: job.priority,
            };
            (task, &job.skills)
        }
        StepKind::Pickup(x) => {
            let sh = &problem.shipments[x];
            let task = Task {
                location: Some(sh.pickup.location),
                service: sh.pickup.service,
                time_windows: &sh.pickup.time_windows,
                priority: sh.priority,
            };
            (task, &sh.skills)
        }
        StepKind::Delivery(x) => {
            let sh = &problem.shipments[x];
            let task = Task {
                location: Some(sh.delivery.location),
                service: sh.delivery.service,
                time_windows: &sh.delivery.time_windows,
                priority: 0,
            };
            (task, &sh.skills)
        }
        StepKind::Break(b) => {
            let br = &vehicle.breaks[b];
            let task = Task {
                location: None,
                service: br.service,
                time_windows: &br.time_windows,
                priority: 0,
            };
            (task, &[])
        }
    };
    if step.location != task.location {
        return Err(Violation::Location { route: ri, step: k });
    }
    if !skills.iter().all(|x| vehicle.skills.contains(x)) {
        return Err(Violation::Skills { route: ri, step: k });
    }
    Ok(task)
}

impl Task<'_> {
    fn depot(location: Option<usize>) -> Self {
        Self {
            location,
            service: 0,
            time_windows: &[],
            priority: 0,
        }
    }
}

/// Every break of a used vehicle taken exactly once (`taken[b]` times).
pub(super) fn breaks(ri: usize, taken: &[usize]) -> Result<(), Violation> {
    match taken.iter().enumerate().find(|(_, t)| **t != 1) {
        Some((brk, &times)) => Err(Violation::Break {
            route: ri,
            brk,
            times,
        }),
        None => Ok(()),
    }
}
