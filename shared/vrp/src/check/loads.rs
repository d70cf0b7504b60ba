//! What is on board: the route starts with everything its jobs deliver, every step changes
//! the load by its task's amounts, the load stays within `[0, capacity]`, and each step
//! reports the load it leaves with.

use super::Violation;
use crate::model::{Problem, Vehicle};
use crate::solution::{Step, StepKind};

fn amount(a: &[i64], d: usize) -> i64 {
    a.get(d).copied().unwrap_or(0)
}

/// The load of one route, advanced step by step.
pub(super) struct Loads<'p> {
    problem: &'p Problem,
    capacity: &'p [i64],
    route: usize,
    load: Vec<i64>,
}

impl<'p> Loads<'p> {
    /// The start load of `steps`, whose tasks [`super::structure::tasks`] has checked.
    pub(super) fn new(
        problem: &'p Problem,
        vehicle: &'p Vehicle,
        route: usize,
        steps: &[Step],
    ) -> Self {
        let mut load = vec![0i64; problem.dimensions()];
        for s in steps {
            if let StepKind::Job(j) = s.kind {
                for (d, l) in load.iter_mut().enumerate() {
                    *l += amount(&problem.jobs[j].delivery, d);
                }
            }
        }
        Self {
            problem,
            capacity: &vehicle.capacity,
            route,
            load,
        }
    }

    /// Step `k`: the load after it, within capacity and as reported.
    pub(super) fn step(&mut self, k: usize, s: &Step) -> Result<(), Violation> {
        let p = self.problem;
        for (d, l) in self.load.iter_mut().enumerate() {
            *l += match s.kind {
                StepKind::Job(j) => amount(&p.jobs[j].pickup, d) - amount(&p.jobs[j].delivery, d),
                StepKind::Pickup(x) => amount(&p.shipments[x].amount, d),
                StepKind::Delivery(x) => -amount(&p.shipments[x].amount, d),
                _ => 0,
            };
        }
        if self
            .load
            .iter()
            .zip(self.capacity)
            .any(|(l, c)| *l > *c || *l < 0)
        {
            return Err(Violation::Capacity {
                route: self.route,
                step: k,
                load: self.load.clone(),
                capacity: self.capacity.to_vec(),
            });
        }
        if s.load != self.load {
            return Err(Violation::Load {
                route: self.route,
                step: k,
                reported: s.load.clone(),
                expected: self.load.clone(),
            });
        }
        Ok(())
    }
}
