//! VROOM input to the model: every location resolved to a matrix index ([`Places`]),
//! custom matrices converted, and the [`Problem`] built and validated. The caller computes
//! the matrices of coordinate inputs from [`Places::points`].

use std::collections::HashMap;

use edgeroute_protocol::vroom::{self, Input, Location};

use crate::{
    Break, Error, Job, Matrix, Problem, Result, Shipment, ShipmentStep, TimeWindow, Vehicle,
    VehicleCosts,
};

pub(super) fn field_error(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Field {
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
    pub(super) vehicle_start: Vec<Option<usize>>,
    pub(super) vehicle_end: Vec<Option<usize>>,
    pub(super) jobs: Vec<usize>,
    pub(super) shipments: Vec<(usize, usize)>,
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
    ) -> Result<Option<usize>> {
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
    pub fn collect(input: &Input) -> Result<Self> {
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

fn to_i64(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| field_error(field, "value too large"))
}

fn window(field: &str, tw: vroom::TimeWindow) -> Result<TimeWindow> {
    Ok(TimeWindow::new(
        to_i64(field, tw[0])?,
        to_i64(field, tw[1])?,
    ))
}

fn windows(field: &str, tws: &[vroom::TimeWindow]) -> Result<Vec<TimeWindow>> {
    tws.iter()
        .enumerate()
        .map(|(i, &tw)| window(&format!("{field}[{i}]"), tw))
        .collect()
}

/// The custom matrices of `input` (`matrices.car`), converted.
pub fn custom_matrices(input: &Input) -> Result<(Matrix, Option<Matrix>)> {
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

/// The problem of `input` over the given matrices.
pub fn to_problem(
    input: &Input,
    places: &Places,
    durations: Matrix,
    distances: Option<Matrix>,
) -> Result<Problem> {
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
            .collect::<Result<Vec<_>, Error>>()?;
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
            matrices: None,
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
        .collect::<Result<Vec<_>, Error>>()?;
    let shipments = input
        .shipments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let step = |side: &str, st: &vroom::ShipmentStep, location: usize| {
                let f = |name: &str| format!("shipments[{i}].{side}.{name}");
                Ok::<_, Error>(ShipmentStep {
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
        .collect::<Result<Vec<_>, Error>>()?;
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
fn unique(kind: &str, ids: impl Iterator<Item = u64>) -> Result<()> {
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
