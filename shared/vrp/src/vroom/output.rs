//! A solved (and checked) problem as VROOM output: ids instead of indices, locations as
//! the input gave them, per-route and overall totals.

use edgeroute_protocol::vroom::{self, Input, Location, Output, StepType, UnassignedTask};

use super::Places;
use crate::{Problem, Solution, SolutionStats, StepKind, Unassigned};

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn add(into: &mut [i64], amount: &[i64]) {
    for (a, b) in into.iter_mut().zip(amount) {
        *a += b;
    }
}

/// Milliseconds per phase, for `summary.computing_times`.
pub type Times = vroom::ComputingTimes;

/// The VROOM output of a solved (and checked) problem.
pub fn to_output(
    input: &Input,
    places: &Places,
    problem: &Problem,
    solution: &Solution,
    stats: &SolutionStats,
    times: Times,
) -> Output {
    let dims = problem.dimensions();
    let at = |index: Option<usize>, given: Option<Location>| -> (Option<Location>, Option<usize>) {
        match index {
            None => (None, None),
            Some(i) if places.custom => (given, Some(i)),
            Some(i) => (places.points.get(i).copied(), None),
        }
    };
    let mut total_delivery = vec![0; dims];
    let mut total_pickup = vec![0; dims];
    let mut total_priority = 0u64;
    let mut routes = Vec::with_capacity(solution.routes.len());
    for r in &solution.routes {
        let vehicle = &problem.vehicles[r.vehicle];
        let input_vehicle = &input.vehicles[r.vehicle];
        let mut delivery = vec![0; dims];
        let mut pickup = vec![0; dims];
        let mut priority = 0u64;
        let mut steps = Vec::with_capacity(r.steps.len());
        for s in &r.steps {
            let (kind, id, given) = match s.kind {
                StepKind::Start => (StepType::Start, None, input_vehicle.start),
                StepKind::End => (StepType::End, None, input_vehicle.end),
                StepKind::Job(j) => {
                    let job = &problem.jobs[j];
                    add(&mut delivery, &job.delivery);
                    add(&mut pickup, &job.pickup);
                    priority += u64::from(job.priority);
                    (StepType::Job, Some(job.id), input.jobs[j].location)
                }
                StepKind::Pickup(k) => {
                    let sh = &problem.shipments[k];
                    add(&mut pickup, &sh.amount);
                    priority += u64::from(sh.priority);
                    (
                        StepType::Pickup,
                        Some(sh.pickup.id),
                        input.shipments[k].pickup.location,
                    )
                }
                StepKind::Delivery(k) => {
                    let sh = &problem.shipments[k];
                    add(&mut delivery, &sh.amount);
                    (
                        StepType::Delivery,
                        Some(sh.delivery.id),
                        input.shipments[k].delivery.location,
                    )
                }
                StepKind::Break(b) => (StepType::Break, vehicle.breaks.get(b).map(|b| b.id), None),
            };
            let (location, location_index) = at(s.location, given);
            steps.push(vroom::Step {
                kind,
                id,
                location,
                location_index,
                arrival: unsigned(s.arrival),
                duration: unsigned(s.duration),
                load: s.load.clone(),
                service: unsigned(s.service),
                waiting_time: unsigned(s.waiting_time),
                distance: unsigned(s.distance),
            });
        }
        let last = r.steps.last();
        add(&mut total_delivery, &delivery);
        add(&mut total_pickup, &pickup);
        total_priority += priority;
        routes.push(vroom::Route {
            vehicle: vehicle.id,
            cost: unsigned(r.cost),
            delivery,
            pickup,
            service: r.steps.iter().map(|s| unsigned(s.service)).sum(),
            duration: last.map_or(0, |s| unsigned(s.duration)),
            waiting_time: r.steps.iter().map(|s| unsigned(s.waiting_time)).sum(),
            priority,
            distance: last.map_or(0, |s| unsigned(s.distance)),
            steps,
            geometry: None,
        });
    }
    let mut unassigned = Vec::new();
    for u in &solution.unassigned {
        match *u {
            Unassigned::Job(j) => {
                let (location, location_index) = at(Some(places.jobs[j]), input.jobs[j].location);
                unassigned.push(UnassignedTask {
                    id: problem.jobs[j].id,
                    kind: StepType::Job,
                    location,
                    location_index,
                });
            }
            Unassigned::Shipment(k) => {
                let (p, d) = places.shipments[k];
                let s = &input.shipments[k];
                for (kind, id, index, given) in [
                    (StepType::Pickup, s.pickup.id, p, s.pickup.location),
                    (StepType::Delivery, s.delivery.id, d, s.delivery.location),
                ] {
                    let (location, location_index) = at(Some(index), given);
                    unassigned.push(UnassignedTask {
                        id,
                        kind,
                        location,
                        location_index,
                    });
                }
            }
        }
    }
    Output {
        code: vroom::code::OK,
        error: None,
        summary: Some(vroom::Summary {
            cost: unsigned(stats.cost),
            routes: stats.routes,
            unassigned: unassigned.len(),
            delivery: total_delivery,
            pickup: total_pickup,
            service: unsigned(stats.service),
            duration: unsigned(stats.duration),
            waiting_time: unsigned(stats.waiting_time),
            priority: total_priority,
            distance: unsigned(stats.distance),
            computing_times: times,
        }),
        unassigned,
        routes,
    }
}
