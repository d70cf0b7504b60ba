//! Time along a route: services as the problem says, no negative waiting, idle gaps that
//! add up to each leg's matrix travel time, services inside their windows and the route
//! inside the vehicle's, and the cumulative duration and distance every step reports.

use super::Violation;
use super::structure::Task;
use crate::model::{Problem, TimeWindow, Vehicle, scaled_duration, travel_cost};
use crate::solution::Step;

fn within(tws: &[TimeWindow], t: i64) -> bool {
    tws.is_empty() || tws.iter().any(|tw| tw.contains(t))
}

/// The time flow of one route, advanced step by step.
pub(super) struct Clock<'p> {
    problem: &'p Problem,
    vehicle: &'p Vehicle,
    route: usize,
    window: TimeWindow,
    last_location: Option<usize>,
    /// Idle time between the steps of the current leg (breaks sit on legs).
    gap_sum: i64,
    prev_depart: i64,
    /// Travel duration so far (speed factor applied).
    pub duration: i64,
    /// Travel distance so far.
    pub distance: i64,
    /// Travel cost so far.
    pub travel_cost: i64,
}

impl<'p> Clock<'p> {
    pub(super) fn new(problem: &'p Problem, vehicle: &'p Vehicle, route: usize) -> Self {
        Self {
            problem,
            vehicle,
            route,
            window: vehicle.time_window.unwrap_or(TimeWindow::UNBOUNDED),
            last_location: None,
            gap_sum: 0,
            prev_depart: 0,
            duration: 0,
            distance: 0,
            travel_cost: 0,
        }
    }

    /// Step `k`, which serves `task`.
    pub(super) fn step(&mut self, k: usize, s: &Step, task: &Task<'_>) -> Result<(), Violation> {
        let route = self.route;
        let timing = |detail: String| Violation::Timing {
            route,
            step: k,
            detail,
        };
        if s.service != task.service {
            return Err(timing(format!(
                "service {} instead of {}",
                s.service, task.service
            )));
        }
        if s.waiting_time < 0 {
            return Err(timing("negative waiting time".into()));
        }
        if k > 0 {
            let gap = s.arrival - self.prev_depart;
            if gap < 0 {
                return Err(timing(format!(
                    "arrives {} before the previous step ends",
                    -gap
                )));
            }
            self.gap_sum += gap;
        } else if s.arrival < self.window.start {
            return Err(Violation::TimeWindow {
                route,
                step: k,
                start: s.arrival,
            });
        }
        if let Some(location) = task.location {
            self.leg(k, s, location)?;
        }
        let start = s.arrival + s.waiting_time;
        if !within(task.time_windows, start) {
            return Err(Violation::TimeWindow {
                route,
                step: k,
                start,
            });
        }
        self.prev_depart = start + s.service;
        Ok(())
    }

    /// Arrival at `location` at step `k`: the leg from the last location is travelled.
    fn leg(&mut self, k: usize, s: &Step, location: usize) -> Result<(), Violation> {
        let travel = match self.last_location {
            Some(prev) => scaled_duration(
                self.problem.durations_for(self.vehicle).at(prev, location),
                self.vehicle.speed_factor,
            ),
            None => 0,
        };
        if k > 0 && self.gap_sum != travel {
            return Err(Violation::Timing {
                route: self.route,
                step: k,
                detail: format!("{} between steps for a {travel} leg", self.gap_sum),
            });
        }
        self.duration += travel;
        self.travel_cost += travel_cost(travel, self.vehicle.costs.per_hour);
        if let (Some(prev), Some(m)) =
            (self.last_location, self.problem.distances_for(self.vehicle))
        {
            self.distance += m.at(prev, location);
        }
        self.gap_sum = 0;
        self.last_location = Some(location);
        for (what, reported, expected) in [
            ("duration", s.duration, self.duration),
            ("distance", s.distance, self.distance),
        ] {
            if reported != expected {
                return Err(Violation::Cumulative {
                    route: self.route,
                    step: k,
                    what,
                    reported,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// After the last of `steps` steps: the route must be over by the end of the vehicle's
    /// window.
    pub(super) fn finish(&self, steps: usize) -> Result<(), Violation> {
        if self.prev_depart > self.window.end {
            return Err(Violation::TimeWindow {
                route: self.route,
                step: steps.saturating_sub(1),
                start: self.prev_depart,
            });
        }
        Ok(())
    }
}
