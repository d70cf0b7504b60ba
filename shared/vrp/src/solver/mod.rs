//! The solver entry point: validation, preprocessing, one search per thread, the best
//! result turned into a [`Solution`].

mod instance;
mod route;
mod search;

use std::time::{Duration, Instant};

use crate::Result;
use crate::model::Problem;
use crate::solution::{Route, Solution, Unassigned};
use instance::{Instance, Unit};
use search::{Objective, Search, State};

/// How long and how the solver searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolveOptions {
    /// Wall-clock budget, construction included.
    pub time_limit: Duration,
    /// Seed of the random choices.
    pub seed: u64,
    /// Independent searches run in parallel (different seeds); the best wins, ties going to
    /// the lowest thread index. At least 1.
    pub threads: usize,
    /// Stop after this many ruin-and-recreate iterations per thread. With it, and a time
    /// limit that is not reached first, the result depends only on the problem, `seed` and
    /// `threads`; without it, on how many iterations the clock allowed.
    pub max_iterations: Option<u64>,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            time_limit: Duration::from_secs(1),
            seed: 0,
            threads: 1,
            max_iterations: None,
        }
    }
}

/// Solves `problem`: serves as many tasks as possible (highest priorities first), then
/// minimises the cost, never violating a hard constraint; what cannot be served is listed in
/// [`Solution::unassigned`].
pub fn solve(problem: &Problem, options: &SolveOptions) -> Result<Solution> {
    let start = Instant::now();
    problem.validate()?;
    let inst = Instance::new(problem);
    let deadline = start + options.time_limit;
    let threads = options.threads.max(1);
    // Seeds of different threads are far apart in the generator's seed space.
    let seed_of = |k: usize| options.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let run =
        |k: usize| Search::new(&inst, seed_of(k)).run(start, deadline, options.max_iterations);
    let results: Vec<State> = if threads == 1 {
        vec![run(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads).map(|k| scope.spawn(move || run(k))).collect();
            let mut out = vec![run(0)];
            for h in handles {
                // A panicking search thread is a bug; re-raise it rather than hide it.
                out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            out
        })
    };
    let mut best: Option<(Objective, State)> = None;
    for state in results {
        let obj = state.objective(&inst);
        if best.as_ref().is_none_or(|(b, _)| obj < *b) {
            best = Some((obj, state));
        }
    }
    let state = match best {
        Some((_, s)) => s,
        None => State::empty(&inst),
    };
    Ok(to_solution(&inst, &state))
}

fn to_solution(inst: &Instance<'_>, state: &State) -> Solution {
    let mut routes = Vec::new();
    let mut unassigned: Vec<Unassigned> = Vec::new();
    for r in &state.routes {
        if r.tasks.is_empty() {
            continue;
        }
        match route::schedule(inst, r.vehicle, &r.tasks) {
            Some(timing) => routes.push(Route {
                vehicle: r.vehicle,
                steps: route::build_steps(inst, r.vehicle, &r.tasks, &timing),
                cost: r.cost(inst),
            }),
            None => {
                // Unreachable when the caches and the scheduler agree; never emit an
                // infeasible route, report its tasks as unserved instead.
                debug_assert!(
                    false,
                    "route passed the insertion checks but not the scheduler"
                );
                unassigned.extend(
                    r.tasks
                        .iter()
                        .map(|&t| unit_of(inst, inst.tasks[t as usize].unit)),
                );
            }
        }
    }
    unassigned.extend(state.unassigned.iter().map(|&u| unit_of(inst, u)));
    unassigned.sort_unstable();
    unassigned.dedup();
    Solution { routes, unassigned }
}

fn unit_of(inst: &Instance<'_>, u: usize) -> Unassigned {
    match inst.units[u] {
        Unit::Job(t) | Unit::Shipment(t, _) => match inst.tasks[t as usize].kind {
            instance::TaskKind::Job(j) => Unassigned::Job(j),
            instance::TaskKind::Pickup(s) | instance::TaskKind::Delivery(s) => {
                Unassigned::Shipment(s)
            }
        },
    }
}
