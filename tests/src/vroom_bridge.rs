//! Carries a benchmark [`Problem`] to the agent's VROOM-compatible `POST /optimize` and the
//! answer back, so the quality benchmark can run end to end over HTTP and still put every
//! solution through the engine's independent feasibility checker.
//!
//! The answer is read back exactly as the agent reported it (arrival, waiting, load,
//! cumulative duration and distance of every step, route cost), so the checker validates
//! what a dispatcher would receive, not a re-derived schedule.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail, ensure};
use edgeroute_engine::vrp::{
    Matrix, Problem, Route, Solution, Step, StepKind, TimeWindow, Unassigned,
};
use edgeroute_protocol::vroom;

/// The problem as a `POST /optimize` body over custom `car` matrices.
///
/// Covers what the benchmark families use: vehicles with start/end indices, capacities,
/// time windows and costs; jobs with location indices, service, delivery/pickup and time
/// windows. Anything else (shipments, skills, breaks, speed factors, task limits) is an
/// error rather than silently dropped, so the benchmark never solves a different problem
/// than it checks.
pub fn to_vroom_input(problem: &Problem) -> Result<vroom::Input> {
    ensure!(
        problem.shipments.is_empty(),
        "shipments are not carried to VROOM input"
    );
    let vehicles = problem
        .vehicles
        .iter()
        .map(|v| {
            ensure!(
                v.skills.is_empty()
                    && v.breaks.is_empty()
                    && v.max_tasks.is_none()
                    && v.speed_factor == 1.0,
                "vehicle {}: skills, breaks, max_tasks and speed_factor are not carried",
                v.id
            );
            Ok(vroom::Vehicle {
                id: v.id,
                start_index: v.start,
                end_index: v.end,
                capacity: Some(v.capacity.clone()),
                time_window: v.time_window.map(window).transpose()?,
                costs: Some(vroom::VehicleCosts {
                    fixed: Some(unsigned("costs.fixed", v.costs.fixed)?),
                    per_hour: Some(unsigned("costs.per_hour", v.costs.per_hour)?),
                }),
                ..vroom::Vehicle::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let jobs = problem
        .jobs
        .iter()
        .map(|j| {
            ensure!(j.skills.is_empty(), "job {}: skills are not carried", j.id);
            Ok(vroom::Job {
                id: j.id,
                location: None,
                location_index: Some(j.location),
                service: unsigned("service", j.service)?,
                delivery: Some(j.delivery.clone()),
                pickup: Some(j.pickup.clone()),
                skills: None,
                priority: j.priority,
                time_windows: j
                    .time_windows
                    .iter()
                    .copied()
                    .map(window)
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let matrices = vroom::Matrices {
        durations: Some(rows(&problem.durations)?),
        distances: problem.distances.as_ref().map(rows).transpose()?,
    };
    Ok(vroom::Input {
        vehicles,
        jobs,
        shipments: Vec::new(),
        matrices: Some(BTreeMap::from([("car".to_owned(), matrices)])),
        options: None,
    })
}

fn unsigned(field: &str, v: i64) -> Result<u64> {
    u64::try_from(v).with_context(|| format!("{field} {v} is negative"))
}

fn window(tw: TimeWindow) -> Result<vroom::TimeWindow> {
    Ok([
        unsigned("time window", tw.start)?,
        unsigned("time window", tw.end)?,
    ])
}

fn rows(m: &Matrix) -> Result<Vec<Vec<u64>>> {
    (0..m.size())
        .map(|i| {
            (0..m.size())
                .map(|j| unsigned("matrix entry", m.at(i, j)))
                .collect()
        })
        .collect()
}

/// The agent's answer to [`to_vroom_input`] as a [`Solution`] over `problem`'s indices,
/// every reported figure kept, ready for
/// [`check_feasibility`](edgeroute_engine::vrp::check_feasibility).
pub fn solution_from_vroom(problem: &Problem, output: &vroom::Output) -> Result<Solution> {
    if output.code != vroom::code::OK {
        bail!(
            "the agent answered code {}: {}",
            output.code,
            output.error.as_deref().unwrap_or("(no message)")
        );
    }
    let vehicle_index = index_by_id(problem.vehicles.iter().map(|v| v.id));
    let job_index = index_by_id(problem.jobs.iter().map(|j| j.id));
    let job = |id: Option<u64>| -> Result<usize> {
        let id = id.context("a job step without an id")?;
        job_index
            .get(&id)
            .copied()
            .with_context(|| format!("unknown job id {id}"))
    };
    let signed = |field: &str, v: u64| -> Result<i64> {
        i64::try_from(v).with_context(|| format!("{field} {v} out of range"))
    };
    let mut routes = Vec::with_capacity(output.routes.len());
    for r in &output.routes {
        let vehicle = *vehicle_index
            .get(&r.vehicle)
            .with_context(|| format!("unknown vehicle id {}", r.vehicle))?;
        let steps = r
            .steps
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    vroom::StepType::Start => StepKind::Start,
                    vroom::StepType::End => StepKind::End,
                    vroom::StepType::Job => StepKind::Job(job(s.id)?),
                    other => bail!("unexpected {other:?} step: the problem has none"),
                };
                Ok(Step {
                    kind,
                    location: s.location_index,
                    arrival: signed("arrival", s.arrival)?,
                    waiting_time: signed("waiting_time", s.waiting_time)?,
                    service: signed("service", s.service)?,
                    load: s.load.clone(),
                    duration: signed("duration", s.duration)?,
                    distance: signed("distance", s.distance)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        routes.push(Route {
            vehicle,
            steps,
            cost: signed("cost", r.cost)?,
        });
    }
    let unassigned = output
        .unassigned
        .iter()
        .map(|u| match u.kind {
            vroom::StepType::Job => Ok(Unassigned::Job(job(Some(u.id))?)),
            other => bail!("unexpected unassigned {other:?}: the problem has no shipments"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Solution { routes, unassigned })
}

/// Position of each id in its list: the answer names vehicles and jobs by id, the
/// [`Solution`] by index.
fn index_by_id(ids: impl Iterator<Item = u64>) -> HashMap<u64, usize> {
    ids.enumerate().map(|(i, id)| (id, i)).collect()
}

#[cfg(test)]
mod tests {
    use edgeroute_engine::vrp::{Job, SolveOptions, Vehicle, check_feasibility, solve};

    use super::*;

    fn problem() -> Problem {
        let m = Matrix::from_rows(
            "durations",
            &[vec![0, 10, 20], vec![10, 0, 15], vec![20, 15, 0]],
        )
        .unwrap();
        let mut a = Job::new(7, 1);
        a.delivery = vec![3];
        a.time_windows = vec![TimeWindow::new(0, 100)];
        a.service = 5;
        let mut b = Job::new(9, 2);
        b.delivery = vec![4];
        Problem {
            vehicles: vec![Vehicle::new(42, Some(0), Some(0), vec![10])],
            jobs: vec![a, b],
            shipments: Vec::new(),
            distances: Some(m.clone()),
            durations: m,
        }
    }

    fn solved() -> (Problem, Solution) {
        let p = problem();
        let options = SolveOptions {
            max_iterations: Some(50),
            ..SolveOptions::default()
        };
        let solution = solve(&p, &options).unwrap();
        (p, solution)
    }

    /// Shapes an engine solution the way the agent's output does, so the round trip can be
    /// checked without a server: ids in, indices out.
    fn as_output(problem: &Problem, solution: &Solution) -> vroom::Output {
        let routes = solution
            .routes
            .iter()
            .map(|r| vroom::Route {
                vehicle: problem.vehicles[r.vehicle].id,
                cost: r.cost as u64,
                steps: r
                    .steps
                    .iter()
                    .map(|s| vroom::Step {
                        kind: match s.kind {
                            StepKind::Start => vroom::StepType::Start,
                            StepKind::End => vroom::StepType::End,
                            _ => vroom::StepType::Job,
                        },
                        id: match s.kind {
                            StepKind::Job(j) => Some(problem.jobs[j].id),
                            _ => None,
                        },
                        location: None,
                        location_index: s.location,
                        arrival: s.arrival as u64,
                        duration: s.duration as u64,
                        load: s.load.clone(),
                        service: s.service as u64,
                        waiting_time: s.waiting_time as u64,
                        distance: s.distance as u64,
                    })
                    .collect(),
                ..vroom::Route::default()
            })
            .collect();
        vroom::Output {
            code: vroom::code::OK,
            routes,
            ..vroom::Output::default()
        }
    }

    #[test]
    fn input_carries_ids_indices_amounts_windows_and_matrices() {
        let input = to_vroom_input(&problem()).unwrap();
        assert_eq!(input.vehicles[0].id, 42);
        assert_eq!(input.vehicles[0].capacity, Some(vec![10]));
        assert_eq!(input.jobs[0].id, 7);
        assert_eq!(input.jobs[0].location_index, Some(1));
        assert_eq!(input.jobs[0].time_windows, vec![[0, 100]]);
        assert_eq!(input.jobs[0].service, 5);
        let car = &input.matrices.as_ref().unwrap()["car"];
        assert_eq!(car.durations.as_ref().unwrap()[2], vec![20, 15, 0]);
        // What the agent parses must be what was sent.
        let json = serde_json::to_string(&input).unwrap();
        assert_eq!(serde_json::from_str::<vroom::Input>(&json).unwrap(), input);
    }

    #[test]
    fn answers_map_back_to_indices_and_pass_the_checker() {
        let (p, solution) = solved();
        let back = solution_from_vroom(&p, &as_output(&p, &solution)).unwrap();
        assert_eq!(back, solution);
        assert!(check_feasibility(&p, &back).is_ok());
    }

    #[test]
    fn tampered_answers_fail_the_checker_or_the_mapping() {
        let (p, solution) = solved();
        let mut out = as_output(&p, &solution);
        out.routes[0].steps[1].arrival += 1;
        let back = solution_from_vroom(&p, &out).unwrap();
        assert!(check_feasibility(&p, &back).is_err());

        let mut out = as_output(&p, &solution);
        out.routes[0].steps[1].id = Some(1234);
        assert!(solution_from_vroom(&p, &out).is_err());

        let out = vroom::Output {
            code: vroom::code::INPUT,
            error: Some("bad".into()),
            ..vroom::Output::default()
        };
        assert!(solution_from_vroom(&p, &out).is_err());
    }
}
