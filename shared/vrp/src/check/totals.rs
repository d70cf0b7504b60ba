//! Costs and totals: each route's reported cost must be its vehicle's fixed cost plus the
//! travel cost of its legs; the [`SolutionStats`] add up what the other checks recomputed.

use super::timing::Clock;
use super::{SolutionStats, Violation};
use crate::model::{Problem, Vehicle};
use crate::solution::{Route, Solution};

/// Route `ri`, checked by the other concerns and timed by `clock`: its cost, then its
/// share of the totals.
pub(super) fn route(
    stats: &mut SolutionStats,
    vehicle: &Vehicle,
    ri: usize,
    route: &Route,
    clock: &Clock<'_>,
) -> Result<(), Violation> {
    let expected = vehicle.costs.fixed + clock.travel_cost;
    if route.cost != expected {
        return Err(Violation::Cost {
            route: ri,
            reported: route.cost,
            expected,
        });
    }
    stats.cost += expected;
    stats.duration += clock.duration;
    stats.distance += clock.distance;
    stats.routes += 1;
    Ok(())
}

/// Served and unassigned counts, once every task is known to appear exactly once.
pub(super) fn finish(stats: &mut SolutionStats, problem: &Problem, solution: &Solution) {
    stats.unassigned = solution.unassigned.len();
    stats.served = problem.jobs.len() + problem.shipments.len() - stats.unassigned;
}
