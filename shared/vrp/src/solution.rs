//! What the solver returns: one route per used vehicle, step by step, and what it could not
//! serve. Every task and vehicle is referred to by its index in the [`crate::Problem`].

/// What a step of a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Leaving the vehicle's start location.
    Start,
    /// Serving `problem.jobs[i]`.
    Job(usize),
    /// Loading `problem.shipments[i]`.
    Pickup(usize),
    /// Unloading `problem.shipments[i]`.
    Delivery(usize),
    /// Taking `vehicle.breaks[i]`.
    Break(usize),
    /// Arriving at the vehicle's end location.
    End,
}

/// One step of a route. Times are absolute; `arrival + waiting_time` is when the service
/// starts and `arrival + waiting_time + service` when the vehicle moves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What happens.
    pub kind: StepKind,
    /// Matrix index where it happens (`None` for breaks).
    pub location: Option<usize>,
    /// When the vehicle gets there (for a break, when it is ready to take it).
    pub arrival: i64,
    /// Time spent waiting for a time window to open.
    pub waiting_time: i64,
    /// Service (or break) duration.
    pub service: i64,
    /// Load on board after the step, per dimension.
    pub load: Vec<i64>,
    /// Travel duration so far (speed factor applied).
    pub duration: i64,
    /// Travel distance so far.
    pub distance: i64,
}

/// The route of one vehicle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into `problem.vehicles`.
    pub vehicle: usize,
    /// Steps in order, `Start` first and `End` last when the vehicle has them.
    pub steps: Vec<Step>,
    /// Fixed cost plus travel cost.
    pub cost: i64,
}

impl Route {
    /// Matrix indices the route visits, in order, consecutive repeats removed: the legs a
    /// caller draws the route's geometry along.
    pub fn visited(&self) -> Vec<usize> {
        let mut points: Vec<usize> = Vec::with_capacity(self.steps.len());
        for p in self.steps.iter().filter_map(|s| s.location) {
            if points.last() != Some(&p) {
                points.push(p);
            }
        }
        points
    }
}

/// A task that is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unassigned {
    /// `problem.jobs[i]`.
    Job(usize),
    /// `problem.shipments[i]` (both its pickup and delivery).
    Shipment(usize),
}

/// A solution: routes of the used vehicles and the unserved tasks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Solution {
    /// One route per used vehicle.
    pub routes: Vec<Route>,
    /// Tasks no vehicle serves.
    pub unassigned: Vec<Unassigned>,
}

impl Solution {
    /// Total cost: the sum of the route costs.
    pub fn cost(&self) -> i64 {
        self.routes.iter().map(|r| r.cost).sum()
    }

    /// Total travel distance (cumulative distance at the last step of every route).
    pub fn distance(&self) -> i64 {
        self.routes
            .iter()
            .filter_map(|r| r.steps.last())
            .map(|s| s.distance)
            .sum()
    }
}
