//! Vehicle routing: capacitated, time-windowed, multi-vehicle (VROOM's model), over
//! matrices the caller computes. No road graph, no I/O, no serde: the agent builds the
//! matrices with the routing engine, the benchmarks read them from instance files.
//!
//! # Layout
//! - [`model`]: the [`Problem`] (vehicles, jobs, shipments, matrices) and its validation.
//! - [`solution`]: the [`Solution`] (routes step by step, unassigned tasks).
//! - `solver` (private): preprocessing, route caches with O(1) insertion checks, an exact
//!   break scheduler, and the ruin-and-recreate search behind [`solve`].
//! - [`check`]: [`check_feasibility`], an independent checker that recomputes everything
//!   from the problem and the matrices, one module per concern.
//! - `vroom` (feature `vroom`): VROOM's JSON shapes (from `edgeroute-protocol`) to and
//!   from the model, both directions in one place so they are tested against each other.
//! - `error` (private): [`Error`], the one error type, and [`Result`].
//!
//! The objective is VROOM's: first serve as much as possible (priorities first), then
//! minimise cost = fixed cost of every used vehicle + travel cost, where the travel cost of
//! a leg is its duration (speed factor applied) scaled by `per_hour / 3600`.

pub mod check;
mod error;
pub mod model;
pub mod solution;
mod solver;
#[cfg(feature = "vroom")]
pub mod vroom;

pub use check::{SolutionStats, Violation, check_feasibility};
pub use error::{Error, Result};
pub use model::{
    Break, Job, Matrix, Problem, ProfileMatrices, Shipment, ShipmentStep, TimeWindow, Vehicle,
    VehicleCosts,
};
pub use solution::{Route, Solution, Step, StepKind, Unassigned};
pub use solver::{SolveOptions, solve};

#[cfg(test)]
mod tests;
