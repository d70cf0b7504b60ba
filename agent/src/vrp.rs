//! Conversion between VROOM's wire shapes ([`edgeroute_protocol::vroom`]) and the engine's
//! VRP model ([`edgeroute_engine::vrp`]). Pure: no I/O, no graph; the caller computes the
//! matrices of coordinate inputs from the [`Places`] collected here.

use std::collections::HashMap;

use edgeroute_engine::vrp::{
    self, Break, InputError, Job, Matrix, Problem, Shipment, ShipmentStep, Solution, SolutionStats,
    StepKind, TimeWindow, Unassigned, Vehicle, VehicleCosts,
};
use edgeroute_protocol::vroom::{self, Input, Location, Output, StepType, UnassignedTask};

/// Why an input cannot be converted: always a caller error (`code: 2`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The engine's validation (or matrix construction) rejected it.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A field is missing, inconsistent or unsupported.
    #[error("{field}: {reason}")]
    Field {
        /// The offending element.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> ConvertError {
    ConvertError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Where every vehicle end and task is, as matrix indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Places {
    /// Whether the input brought its own matrices (locations are `*_index`).
    pub custom: bool,
    /// Coordinate mode: the distinct coordinates, in matrix index order.
    pub points: Vec<Location>,
    /// Coordinate mode: the first element using each point (`jobs[3].location`).
    pub owners: Vec<String>,
    vehicle_start: Vec<Option<usize>>,
    vehicle_end: Vec<Option<usize>>,
    jobs: Vec<usize>,
    shipments: Vec<(usize, usize)>,
}

#[derive(Default)]
struct Collector {
    custom: bool,
    points: Vec<Location>,
    owners: Vec<String>,
    seen: HashMap<[u64; 2], usize>,
}

impl Collector {
    fn place(
        &mut self,
        field: &str,
        location: Option<Location>,
        index: Option<usize>,
        required: bool,
    ) -> Result<Option<usize>, ConvertError> {
        if self.custom {
            return match index {
                Some(i) => Ok(Some(i)),
                None if required || location.is_some() => Err(field_error(
                    format!("{field}_index"),
                    "required with custom matrices",
                )),
                None => Ok(None),
            };
        }
        if index.is_some() {
            return Err(field_error(
                format!("{field}_index"),
                "needs custom `matrices`; give coordinates in `location` instead",
            ));
        }
        let Some(at) = location else {
            return if required {
                Err(field_error(field, "missing coordinates"))
            } else {
                Ok(None)
            };
        };
        if !at.iter().all(|x| x.is_finite()) || at[0].abs() > 180.0 || at[1].abs() > 90.0 {
            return Err(field_error(field, "invalid [lon, lat] coordinates"));
        }
        let key = [at[0].to_bits(), at[1].to_bits()];
        let next = self.points.len();
        let i = *self.seen.entry(key).or_insert(next);
        if i == next {
            self.points.push(at);
            self.owners.push(field.to_owned());
        }
        Ok(Some(i))
    }
}

impl Places {
    /// Resolve every location of `input` to a matrix index: `*_index` with custom matrices,
    /// otherwise distinct coordinates in order of first use.
    pub fn collect(input: &Input) -> Result<Self, ConvertError> {
        let mut c = Collector {
            custom: input.matrices.is_some(),
            ..Collector::default()
        };
        let mut vehicle_start = Vec::with_capacity(input.vehicles.len());
        let mut vehicle_end = Vec::with_capacity(input.vehicles.len());
        for (i, v) in input.vehicles.iter().enumerate() {
            vehicle_start.push(c.place(
                &format!("vehicles[{i}].start"),
                v.start,
                v.start_index,
                false,
            )?);
            vehicle_end.push(c.place(&format!("vehicles[{i}].end"), v.end, v.end_index, false)?);
        }
        let jobs = input
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                c.place(
                    &format!("jobs[{i}].location"),
                    j.location,
                    j.location_index,
                    true,
                )
                .map(|p| p.unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut shipments = Vec::with_capacity(input.shipments.len());
        for (i, s) in input.shipments.iter().enumerate() {
            let p = c.place(
                &format!("shipments[{i}].pickup.location"),
                s.pickup.location,
                s.pickup.location_index,
                true,
            )?;
            let d = c.place(
                &format!("shipments[{i}].delivery.location"),
                s.delivery.location,
                s.delivery.location_index,
                true,
            )?;
            shipments.push((p.unwrap_or_default(), d.unwrap_or_default()));
        }
        Ok(Self {
            custom: c.custom,
            points: c.points,
            owners: c.owners,
            vehicle_start,
            vehicle_end,
            jobs,
            shipments,
        })
    }
}

fn to_i64(field: &str, v: u64) -> Result<i64, ConvertError> {
    i64::try_from(v).map_err(|_| field_error(field, "value too large"))
}

fn window(field: &str, tw: vroom::TimeWindow) -> Result<TimeWindow, ConvertError> {
    Ok(TimeWindow::new(
        to_i64(field, tw[0])?,
        to_i64(field, tw[1])?,
    ))
}

fn windows(field: &str, tws: &[vroom::TimeWindow]) -> Result<Vec<TimeWindow>, ConvertError> {
    tws.iter()
        .enumerate()
        .map(|(i, &tw)| window(&format!("{field}[{i}]"), tw))
        .collect()
}

/// The custom matrices of `input` (`matrices.car`), converted.
pub fn custom_matrices(input: &Input) -> Result<(Matrix, Option<Matrix>), ConvertError> {
    let Some(matrices) = &input.matrices else {
        return Err(field_error("matrices", "missing"));
    };
    if let Some(other) = matrices.keys().find(|k| k.as_str() != "car") {
        return Err(field_error(
            format!("matrices.{other}"),
            "only the `car` profile is served",
        ));
    }
    let car = matrices
        .get("car")
        .ok_or_else(|| field_error("matrices.car", "missing"))?;
    let convert = |name: &str, rows: &[Vec<u64>]| {
        let rows: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| i64::try_from(v).unwrap_or(i64::MAX))
                    .collect()
            })
            .collect();
        Matrix::from_rows(name, &rows)
    };
    let durations = car
        .durations
        .as_deref()
        .ok_or_else(|| field_error("matrices.car.durations", "missing"))?;
    let durations = convert("durations", durations)?;
    let distances = car
        .distances
        .as_deref()
        .map(|d| convert("distances", d))
        .transpose()?;
    Ok((durations, distances))
}

/// The engine problem of `input` over the given matrices.
pub fn to_problem(
    input: &Input,
    places: &Places,
    durations: Matrix,
    distances: Option<Matrix>,
) -> Result<Problem, ConvertError> {
    unique("vehicles", input.vehicles.iter().map(|v| v.id))?;
    unique("jobs", input.jobs.iter().map(|j| j.id))?;
    unique(
        "shipments[].pickup",
        input.shipments.iter().map(|s| s.pickup.id),
    )?;
    unique(
        "shipments[].delivery",
        input.shipments.iter().map(|s| s.delivery.id),
    )?;
    let mut vehicles = Vec::with_capacity(input.vehicles.len());
    for (i, v) in input.vehicles.iter().enumerate() {
        let f = |name: &str| format!("vehicles[{i}].{name}");
        if let Some(p) = v.profile.as_deref()
            && p != "car"
        {
            return Err(field_error(f("profile"), "only `car` is served"));
        }
        let costs = v.costs.unwrap_or_default();
        let breaks = v
            .breaks
            .iter()
            .flatten()
            .enumerate()
            .map(|(b, br)| {
                Ok(Break {
                    id: br.id,
                    time_windows: windows(
                        &f(&format!("breaks[{b}].time_windows")),
                        &br.time_windows,
                    )?,
                    service: to_i64(&f(&format!("breaks[{b}].service")), br.service)?,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        vehicles.push(Vehicle {
            id: v.id,
            start: places.vehicle_start[i],
            end: places.vehicle_end[i],
            capacity: v.capacity.clone().unwrap_or_default(),
            skills: v.skills.clone().unwrap_or_default(),
            time_window: v
                .time_window
                .map(|tw| window(&f("time_window"), tw))
                .transpose()?,
            max_tasks: v.max_tasks,
            speed_factor: v.speed_factor.unwrap_or(1.0),
            costs: VehicleCosts {
                fixed: to_i64(&f("costs.fixed"), costs.fixed.unwrap_or(0))?,
                per_hour: to_i64(&f("costs.per_hour"), costs.per_hour.unwrap_or(3600))?,
            },
            breaks,
        });
    }
    let jobs = input
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let f = |name: &str| format!("jobs[{i}].{name}");
            Ok(Job {
                id: j.id,
                location: places.jobs[i],
                service: to_i64(&f("service"), j.service)?,
                delivery: j.delivery.clone().unwrap_or_default(),
                pickup: j.pickup.clone().unwrap_or_default(),
                skills: j.skills.clone().unwrap_or_default(),
                priority: j.priority,
                time_windows: windows(&f("time_windows"), &j.time_windows)?,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let shipments = input
        .shipments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let step = |side: &str, st: &vroom::ShipmentStep, location: usize| {
                let f = |name: &str| format!("shipments[{i}].{side}.{name}");
                Ok::<_, ConvertError>(ShipmentStep {
                    id: st.id,
                    location,
                    service: to_i64(&f("service"), st.service)?,
                    time_windows: windows(&f("time_windows"), &st.time_windows)?,
                })
            };
            let (p, d) = places.shipments[i];
            Ok(Shipment {
                pickup: step("pickup", &s.pickup, p)?,
                delivery: step("delivery", &s.delivery, d)?,
                amount: s.amount.clone().unwrap_or_default(),
                skills: s.skills.clone().unwrap_or_default(),
                priority: s.priority,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let problem = Problem {
        vehicles,
        jobs,
        shipments,
        durations,
        distances,
    };
    problem.validate()?;
    Ok(problem)
}

/// Ids must identify their element in the output: no duplicates within a kind (VROOM).
fn unique(kind: &str, ids: impl Iterator<Item = u64>) -> Result<(), ConvertError> {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            let field = match kind.split_once("[]") {
                Some((list, rest)) => format!("{list}[{i}]{rest}.id"),
                None => format!("{kind}[{i}].id"),
            };
            return Err(field_error(field, format!("duplicate id {id}")));
        }
    }
    Ok(())
}

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

/// Matrix indices visited by a route, in order (consecutive repeats removed).
pub fn route_points(route: &vrp::Route) -> Vec<usize> {
    let mut points: Vec<usize> = Vec::with_capacity(route.steps.len());
    for p in route.steps.iter().filter_map(|s| s.location) {
        if points.last() != Some(&p) {
            points.push(p);
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edgeroute_engine::vrp::{SolveOptions, check_feasibility, solve};
    use serde_json::json;

    use super::*;

    fn input(value: serde_json::Value) -> Input {
        serde_json::from_value(value).unwrap()
    }

    fn solve_input(input: &Input) -> Output {
        let places = Places::collect(input).unwrap();
        let (d, dist) = custom_matrices(input).unwrap();
        let problem = to_problem(input, &places, d, dist).unwrap();
        let options = SolveOptions {
            time_limit: Duration::from_millis(200),
            max_iterations: Some(200),
            ..SolveOptions::default()
        };
        let solution = solve(&problem, &options).unwrap();
        let stats = check_feasibility(&problem, &solution).unwrap();
        to_output(
            input,
            &places,
            &problem,
            &solution,
            &stats,
            Times::default(),
        )
    }

    #[test]
    fn custom_matrix_problem_maps_ids_types_and_totals() {
        let input = input(json!({
            "vehicles": [{"id": 7, "start_index": 0, "end_index": 0, "capacity": [2]}],
            "jobs": [
                {"id": 10, "location_index": 1, "delivery": [1], "service": 5},
                {"id": 11, "location_index": 2, "delivery": [1]},
                {"id": 12, "location_index": 3, "delivery": [5]}
            ],
            "shipments": [{"pickup": {"id": 20, "location_index": 1},
                           "delivery": {"id": 21, "location_index": 2}, "amount": [9]}],
            "matrices": {"car": {
                "durations": [[0, 10, 20, 30], [10, 0, 10, 20], [20, 10, 0, 10], [30, 20, 10, 0]],
                "distances": [[0, 100, 200, 300], [100, 0, 100, 200], [200, 100, 0, 100], [300, 200, 100, 0]]
            }}
        }));
        let out = solve_input(&input);
        assert_eq!(out.code, 0);
        assert_eq!(out.routes.len(), 1);
        let route = &out.routes[0];
        assert_eq!(route.vehicle, 7);
        let types: Vec<_> = route.steps.iter().map(|s| s.kind).collect();
        assert_eq!(types.first(), Some(&StepType::Start));
        assert_eq!(types.last(), Some(&StepType::End));
        let mut ids: Vec<_> = route.steps.iter().filter_map(|s| s.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [10, 11]);
        // 0 -> 1 -> 2 -> 0 in either direction.
        assert_eq!(route.duration, 40);
        assert_eq!(route.distance, 400);
        assert_eq!(route.service, 5);
        assert_eq!(route.delivery, [2]);
        assert_eq!(route.steps[0].location_index, Some(0));
        // Job 12 exceeds the capacity, the shipment too: both ends are reported.
        let mut unassigned: Vec<_> = out.unassigned.iter().map(|u| (u.id, u.kind)).collect();
        unassigned.sort_unstable_by_key(|u| u.0);
        assert_eq!(
            unassigned,
            [
                (12, StepType::Job),
                (20, StepType::Pickup),
                (21, StepType::Delivery)
            ]
        );
        let summary = out.summary.unwrap();
        assert_eq!(summary.unassigned, 3);
        assert_eq!(summary.cost, 40);
        assert_eq!(summary.duration, 40);
        assert_eq!(summary.distance, 400);
        assert_eq!(summary.routes, 1);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let base = json!({
            "vehicles": [{"id": 1, "start_index": 0}],
            "jobs": [{"id": 1, "location_index": 1}],
            "matrices": {"car": {"durations": [[0, 1], [1, 0]]}}
        });
        let err = |v: serde_json::Value| {
            let input = input(v);
            Places::collect(&input)
                .and_then(|p| {
                    let (d, dist) = custom_matrices(&input)?;
                    to_problem(&input, &p, d, dist)
                })
                .unwrap_err()
                .to_string()
        };
        let mut v = base.clone();
        v["jobs"][0]["location_index"] = json!(5);
        assert!(err(v).contains("jobs[0].location_index"));
        let mut v = base.clone();
        v["jobs"][0] = json!({"id": 1, "location": [7.4, 43.7]});
        assert!(err(v).contains("jobs[0].location_index"));
        let mut v = base.clone();
        v["matrices"]["car"]["durations"] = json!([[0, 1], [1]]);
        assert!(err(v).contains("durations"));
        let mut v = base.clone();
        v["jobs"][0]["time_windows"] = json!([[10, 5]]);
        assert!(err(v).contains("jobs[0].time_windows[0]"));
        let mut v = base.clone();
        v["jobs"] = json!([{"id": 4, "location_index": 1}, {"id": 4, "location_index": 0}]);
        assert_eq!(err(v), "jobs[1].id: duplicate id 4");
        let mut v = base;
        v["vehicles"] = json!([]);
        assert!(err(v).contains("vehicles must not be empty"));
    }

    #[test]
    fn coordinates_are_deduplicated_in_order_of_first_use() {
        let input = input(json!({
            "vehicles": [{"id": 1, "start": [7.42, 43.73], "end": [7.42, 43.73]}],
            "jobs": [{"id": 1, "location": [7.41, 43.74]}, {"id": 2, "location": [7.42, 43.73]}]
        }));
        let places = Places::collect(&input).unwrap();
        assert!(!places.custom);
        assert_eq!(places.points, [[7.42, 43.73], [7.41, 43.74]]);
        assert_eq!(places.owners, ["vehicles[0].start", "jobs[0].location"]);
        assert_eq!(places.jobs, [1, 0]);
        let bad = serde_json::from_value::<Input>(json!({
            "vehicles": [{"id": 1, "start_index": 0}], "jobs": []
        }))
        .unwrap();
        assert!(
            Places::collect(&bad)
                .unwrap_err()
                .to_string()
                .contains("matrices")
        );
    }
}
