//! The other direction, for clients of a VROOM-compatible server (the benchmarks, the
//! end-to-end tests): a [`Problem`] as a `POST /optimize` body over custom `car` matrices,
//! and the server's answer back as a [`Solution`] over the problem's indices, ready for
//! [`check_feasibility`](crate::check_feasibility).
//!
//! The answer is read back exactly as the server reported it (arrival, waiting, load,
//! cumulative duration and distance of every step, route cost), so the checker validates
//! what a dispatcher would receive, not a re-derived schedule.

use std::collections::{BTreeMap, HashMap};

use edgeroute_protocol::vroom;

use super::input::field_error;
use crate::{Error, Matrix, Problem, Result, Route, Solution, Step, StepKind, TimeWindow};

/// `problem` as a `POST /optimize` body over custom `car` matrices: every field of the
/// model is carried, so [`super::to_problem`] of it gives `problem` back.
pub fn to_input(problem: &Problem) -> Result<vroom::Input> {
    let vehicles = problem
        .vehicles
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = |name: &str| format!("vehicles[{i}].{name}");
            let breaks = v
                .breaks
                .iter()
                .enumerate()
                .map(|(b, br)| {
                    Ok(vroom::Break {
                        id: br.id,
                        time_windows: windows(&f(&format!("breaks[{b}]")), &br.time_windows)?,
                        service: unsigned(&f(&format!("breaks[{b}].service")), br.service)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(vroom::Vehicle {
                id: v.id,
                start_index: v.start,
                end_index: v.end,
                capacity: Some(v.capacity.clone()),
                skills: non_empty(&v.skills),
                time_window: v
                    .time_window
                    .map(|tw| window(&f("time_window"), tw))
                    .transpose()?,
                max_tasks: v.max_tasks,
                speed_factor: (v.speed_factor != 1.0).then_some(v.speed_factor),
                costs: Some(vroom::VehicleCosts {
                    fixed: Some(unsigned(&f("costs.fixed"), v.costs.fixed)?),
                    per_hour: Some(unsigned(&f("costs.per_hour"), v.costs.per_hour)?),
                }),
                breaks: (!breaks.is_empty()).then_some(breaks),
                ..vroom::Vehicle::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let jobs = problem
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let f = |name: &str| format!("jobs[{i}].{name}");
            Ok(vroom::Job {
                id: j.id,
                location: None,
                location_index: Some(j.location),
                service: unsigned(&f("service"), j.service)?,
                delivery: Some(j.delivery.clone()),
                pickup: Some(j.pickup.clone()),
                skills: non_empty(&j.skills),
                priority: j.priority,
                time_windows: windows(&f("time_windows"), &j.time_windows)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let shipments = problem
        .shipments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let step = |side: &str, st: &crate::ShipmentStep| {
                let f = |name: &str| format!("shipments[{i}].{side}.{name}");
                Ok::<_, Error>(vroom::ShipmentStep {
                    id: st.id,
                    location: None,
                    location_index: Some(st.location),
                    service: unsigned(&f("service"), st.service)?,
                    time_windows: windows(&f("time_windows"), &st.time_windows)?,
                })
            };
            Ok(vroom::Shipment {
                pickup: step("pickup", &s.pickup)?,
                delivery: step("delivery", &s.delivery)?,
                amount: Some(s.amount.clone()),
                skills: non_empty(&s.skills),
                priority: s.priority,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let matrices = vroom::Matrices {
        durations: Some(rows("matrices.car.durations", &problem.durations)?),
        distances: problem
            .distances
            .as_ref()
            .map(|m| rows("matrices.car.distances", m))
            .transpose()?,
    };
    Ok(vroom::Input {
        vehicles,
        jobs,
        shipments,
        matrices: Some(BTreeMap::from([("car".to_owned(), matrices)])),
        options: None,
    })
}

fn non_empty(skills: &[u32]) -> Option<Vec<u32>> {
    (!skills.is_empty()).then(|| skills.to_vec())
}

fn unsigned(field: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| field_error(field, format!("{v} is negative")))
}

fn window(field: &str, tw: TimeWindow) -> Result<vroom::TimeWindow> {
    Ok([unsigned(field, tw.start)?, unsigned(field, tw.end)?])
}

fn windows(field: &str, tws: &[TimeWindow]) -> Result<Vec<vroom::TimeWindow>> {
    tws.iter()
        .enumerate()
        .map(|(i, &tw)| window(&format!("{field}[{i}]"), tw))
        .collect()
}

fn rows(field: &str, m: &Matrix) -> Result<Vec<Vec<u64>>> {
    (0..m.size())
        .map(|i| {
            (0..m.size())
                .map(|j| unsigned(&format!("{field}[{i}][{j}]"), m.at(i, j)))
                .collect()
        })
        .collect()
}

/// The answer to [`to_input`] as a [`Solution`] over `problem`'s indices, every reported
/// figure kept. Tasks are found by id, breaks by id within their vehicle.
pub fn to_solution(problem: &Problem, output: &vroom::Output) -> Result<Solution> {
    if output.code != vroom::code::OK {
        return Err(Error::Failed {
            code: output.code,
            message: output
                .error
                .clone()
                .unwrap_or_else(|| "(no message)".to_owned()),
        });
    }
    let ids = Ids::new(problem);
    let mut routes = Vec::with_capacity(output.routes.len());
    for (ri, r) in output.routes.iter().enumerate() {
        let f = |name: &str| format!("routes[{ri}].{name}");
        let vehicle = *ids
            .vehicles
            .get(&r.vehicle)
            .ok_or_else(|| field_error(f("vehicle"), format!("unknown id {}", r.vehicle)))?;
        let steps = r
            .steps
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let f = |name: &str| f(&format!("steps[{k}].{name}"));
                let kind = ids.step(problem, vehicle, s.kind, s.id, &f("id"))?;
                Ok(Step {
                    kind,
                    location: s.location_index,
                    arrival: signed(&f("arrival"), s.arrival)?,
                    waiting_time: signed(&f("waiting_time"), s.waiting_time)?,
                    service: signed(&f("service"), s.service)?,
                    load: s.load.clone(),
                    duration: signed(&f("duration"), s.duration)?,
                    distance: signed(&f("distance"), s.distance)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        routes.push(Route {
            vehicle,
            steps,
            cost: signed(&f("cost"), r.cost)?,
        });
    }
    let mut unassigned = output
        .unassigned
        .iter()
        .enumerate()
        .map(|(i, u)| ids.unassigned(u, &format!("unassigned[{i}].id")))
        .collect::<Result<Vec<_>>>()?;
    // Both ends of an unserved shipment are listed; the model lists the shipment once.
    unassigned.sort_unstable();
    unassigned.dedup();
    Ok(Solution { routes, unassigned })
}

fn signed(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| field_error(field, format!("{v} out of range")))
}

/// Position of each id in its list: the answer names vehicles and tasks by id, the
/// [`Solution`] by index.
struct Ids {
    vehicles: HashMap<u64, usize>,
    jobs: HashMap<u64, usize>,
    pickups: HashMap<u64, usize>,
    deliveries: HashMap<u64, usize>,
}

fn index_by_id(ids: impl Iterator<Item = u64>) -> HashMap<u64, usize> {
    ids.enumerate().map(|(i, id)| (id, i)).collect()
}

impl Ids {
    fn new(problem: &Problem) -> Self {
        Self {
            vehicles: index_by_id(problem.vehicles.iter().map(|v| v.id)),
            jobs: index_by_id(problem.jobs.iter().map(|j| j.id)),
            pickups: index_by_id(problem.shipments.iter().map(|s| s.pickup.id)),
            deliveries: index_by_id(problem.shipments.iter().map(|s| s.delivery.id)),
        }
    }

    fn find(map: &HashMap<u64, usize>, id: Option<u64>, field: &str, what: &str) -> Result<usize> {
        let id = id.ok_or_else(|| field_error(field, format!("missing on a {what} step")))?;
        map.get(&id)
            .copied()
            .ok_or_else(|| field_error(field, format!("unknown {what} id {id}")))
    }

    fn step(
        &self,
        problem: &Problem,
        vehicle: usize,
        kind: vroom::StepType,
        id: Option<u64>,
        field: &str,
    ) -> Result<StepKind> {
        Ok(match kind {
            vroom::StepType::Start => StepKind::Start,
            vroom::StepType::End => StepKind::End,
            vroom::StepType::Job => StepKind::Job(Self::find(&self.jobs, id, field, "job")?),
            vroom::StepType::Pickup => {
                StepKind::Pickup(Self::find(&self.pickups, id, field, "pickup")?)
            }
            vroom::StepType::Delivery => {
                StepKind::Delivery(Self::find(&self.deliveries, id, field, "delivery")?)
            }
            vroom::StepType::Break => {
                let breaks = index_by_id(problem.vehicles[vehicle].breaks.iter().map(|b| b.id));
                StepKind::Break(Self::find(&breaks, id, field, "break")?)
            }
        })
    }

    fn unassigned(&self, u: &vroom::UnassignedTask, field: &str) -> Result<crate::Unassigned> {
        use crate::Unassigned;
        let id = Some(u.id);
        Ok(match u.kind {
            vroom::StepType::Job => Unassigned::Job(Self::find(&self.jobs, id, field, "job")?),
            vroom::StepType::Pickup => {
                Unassigned::Shipment(Self::find(&self.pickups, id, field, "pickup")?)
            }
            vroom::StepType::Delivery => {
                Unassigned::Shipment(Self::find(&self.deliveries, id, field, "delivery")?)
            }
            other => {
                return Err(field_error(
                    field,
                    format!("{other:?} is not a task that can be unassigned"),
                ));
            }
        })
    }
}
