//! An independent feasibility checker: everything a [`Solution`] claims is recomputed from
//! the [`Problem`] and its matrices, without any of the solver's caches or scheduling code.
//!
//! Timing rule: between two located steps the vehicle travels the matrix duration (speed
//! factor applied); breaks may sit anywhere on that leg, so the idle gaps between
//! consecutive steps of the leg (arrival minus previous departure) must add up to exactly
//! the travel duration. Waiting is explicit in `waiting_time`.
//!
//! One module per concern, each reporting its own [`Violation`]s: `structure` (vehicles,
//! start/end steps, task references, locations, skills, breaks, every task served or
//! unassigned exactly once), `timing` (services, waiting, travel, time windows,
//! cumulative figures), `loads` (capacity and reported loads) and `totals` (costs and
//! the [`SolutionStats`]). [`check_feasibility`] runs them step by step, so the violation
//! reported is the first one along the solution, routes in order, steps in order.

mod loads;
mod structure;
mod timing;
mod totals;

use crate::model::Problem;
use crate::solution::Solution;

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

/// Checks every hard constraint of `problem` on `solution` and recomputes its totals.
pub fn check_feasibility(
    problem: &Problem,
    solution: &Solution,
) -> Result<SolutionStats, Violation> {
    let mut stats = SolutionStats::default();
    let mut served = structure::Served::new(problem);
    for (ri, route) in solution.routes.iter().enumerate() {
        let vehicle = served.vehicle(problem, ri, route.vehicle)?;
        structure::start_end(vehicle, ri, &route.steps)?;
        structure::tasks(problem, vehicle, ri, &route.steps)?;
        let mut clock = timing::Clock::new(problem, vehicle, ri);
        let mut loads = loads::Loads::new(problem, vehicle, ri, &route.steps);
        let mut breaks = vec![0usize; vehicle.breaks.len()];
        for (k, step) in route.steps.iter().enumerate() {
            let task = structure::step(problem, vehicle, ri, k, step)?;
            served.record(ri, k, step.kind, &mut breaks);
            stats.priority += u64::from(task.priority);
            clock.step(k, step, &task)?;
            loads.step(k, step)?;
            stats.waiting_time += step.waiting_time;
            stats.service += step.service;
        }
        clock.finish(route.steps.len())?;
        structure::breaks(ri, &breaks)?;
        totals::route(&mut stats, vehicle, ri, route, &clock)?;
    }
    served.finish(problem, solution)?;
    totals::finish(&mut stats, problem, solution);
    Ok(stats)
}

#[cfg(test)]
mod tests;
