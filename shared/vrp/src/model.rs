//! The problem a caller hands to the solver: VROOM's model over custom matrices.
//!
//! Locations are indices into square, row-major matrices. Times and durations are integer
//! seconds (or whatever unit the matrix uses, consistently), amounts are non-negative
//! integers in as many dimensions as the vehicles' capacities.

use std::sync::Arc;

use crate::Error;

/// A square, row-major matrix of non-negative travel values (durations or distances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    size: usize,
    data: Vec<i64>,
}

impl Matrix {
    /// Largest entry accepted (2^40): large enough to mark a pair unreachable, small enough
    /// that sums along any route cannot overflow.
    pub const MAX_ENTRY: i64 = 1 << 40;

    /// A `size` x `size` matrix from its row-major entries.
    ///
    /// `name` (e.g. `"durations"`) only serves the error message.
    pub fn new(name: &str, size: usize, data: Vec<i64>) -> Result<Self, Error> {
        if data.len() != size.saturating_mul(size) {
            return Err(Error::MatrixShape {
                matrix: name.to_owned(),
                detail: format!("{} entries for a {size}x{size} matrix", data.len()),
            });
        }
        if let Some(pos) = data.iter().position(|&v| v < 0) {
            return Err(Error::Negative {
                field: format!("{name}[{}][{}]", pos / size, pos % size),
            });
        }
        if let Some(pos) = data.iter().position(|&v| v > Self::MAX_ENTRY) {
            return Err(Error::Invalid {
                field: format!("{name}[{}][{}]", pos / size, pos % size),
                reason: format!("must not exceed {}", Self::MAX_ENTRY),
            });
        }
        Ok(Self { size, data })
    }

    /// A matrix from rows, which must all have as many entries as there are rows.
    pub fn from_rows(name: &str, rows: &[Vec<i64>]) -> Result<Self, Error> {
        let size = rows.len();
        let mut data = Vec::with_capacity(size * size);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != size {
                return Err(Error::MatrixShape {
                    matrix: name.to_owned(),
                    detail: format!("row {i} has {} entries, expected {size}", row.len()),
                });
            }
            data.extend_from_slice(row);
        }
        Self::new(name, size, data)
    }

    /// Number of rows (and columns).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The value from `from` to `to`.
    ///
    /// # Panics
    /// If either index is out of range; [`Problem::validate`] rules that out for every index
    /// a problem refers to.
    pub fn at(&self, from: usize, to: usize) -> i64 {
        self.data[from * self.size + to]
    }
}

/// Travel duration of a leg for a vehicle with `speed_factor`, from the matrix duration `d`:
/// `round(d / speed_factor)`, as VROOM scales durations.
pub fn scaled_duration(d: i64, speed_factor: f64) -> i64 {
    if speed_factor == 1.0 {
        d
    } else {
        (d as f64 / speed_factor).round() as i64
    }
}

/// Travel cost of a leg of (scaled) duration `d` for a vehicle paying `per_hour` per 3600
/// time units, rounded to the nearest integer; with the default 3600 it equals `d`.
pub fn travel_cost(d: i64, per_hour: i64) -> i64 {
    if per_hour == 3600 {
        d
    } else {
        ((i128::from(d) * i128::from(per_hour) + 1800) / 3600) as i64
    }
}

/// A closed interval `[start, end]` in which a service (or a route) may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeWindow {
    /// Earliest start.
    pub start: i64,
    /// Latest start.
    pub end: i64,
}

impl TimeWindow {
    /// The window every unconstrained task and vehicle gets. Far below `i64::MAX` so that
    /// sums of times never overflow.
    pub const UNBOUNDED: TimeWindow = TimeWindow {
        start: 0,
        end: 1 << 50,
    };

    /// `[start, end]`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// Whether `t` lies in the window.
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t <= self.end
    }
}

/// Travel cost settings of a vehicle, as VROOM's `costs` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VehicleCosts {
    /// Paid once when the vehicle is used.
    pub fixed: i64,
    /// Cost of one hour (3600 time units) of travel. VROOM's default, 3600, makes the travel
    /// cost equal to the travel duration.
    pub per_hour: i64,
}

impl Default for VehicleCosts {
    fn default() -> Self {
        Self {
            fixed: 0,
            per_hour: 3600,
        }
    }
}

/// A break a vehicle must take during its route (if it is used). Breaks have no location:
/// they are taken where the vehicle is, before or after a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Caller's id, echoed in the solution.
    pub id: u64,
    /// Windows in which the break may start; empty means any time.
    pub time_windows: Vec<TimeWindow>,
    /// Length of the break.
    pub service: i64,
}

/// A vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    /// Caller's id, echoed in the solution.
    pub id: u64,
    /// Matrix index the route starts from; `None` starts at the first task.
    pub start: Option<usize>,
    /// Matrix index the route ends at; `None` ends at the last task.
    pub end: Option<usize>,
    /// Capacity in every amount dimension; all vehicles have the same number of dimensions.
    pub capacity: Vec<i64>,
    /// Skills the vehicle has; a task requiring a skill not in here cannot be served by it.
    pub skills: Vec<u32>,
    /// When the route may start (leave `start`) and must end (arrive at `end`).
    pub time_window: Option<TimeWindow>,
    /// Maximum number of jobs, pickups and deliveries in the route.
    pub max_tasks: Option<usize>,
    /// Travel durations are divided by this (VROOM: `0 < speed_factor <= 5`).
    pub speed_factor: f64,
    /// Fixed and per-hour costs.
    pub costs: VehicleCosts,
    /// Breaks, taken in this order.
    pub breaks: Vec<Break>,
    /// The vehicle's own travel matrices (VROOM: those of its `profile`, a truck's beside
    /// the cars'); `None` travels on the problem's.
    pub matrices: Option<Arc<ProfileMatrices>>,
}

/// The travel matrices of one profile, indexed like the problem's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileMatrices {
    /// Travel durations (before the vehicle's speed factor).
    pub durations: Matrix,
    /// Travel distances; `None` reports zero distances.
    pub distances: Option<Matrix>,
}

impl Vehicle {
    /// A vehicle with the given id and depot and VROOM's defaults for everything else.
    pub fn new(id: u64, start: Option<usize>, end: Option<usize>, capacity: Vec<i64>) -> Self {
        Self {
            id,
            start,
            end,
            capacity,
            skills: Vec::new(),
            time_window: None,
            max_tasks: None,
            speed_factor: 1.0,
            costs: VehicleCosts::default(),
            breaks: Vec::new(),
            matrices: None,
        }
    }
}

/// A single-stop task: deliver goods loaded at the start and/or pick up goods brought to the
/// end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Caller's id, echoed in the solution.
    pub id: u64,
    /// Matrix index of the stop.
    pub location: usize,
    /// Service duration at the stop.
    pub service: i64,
    /// Amount delivered (loaded at the start); empty means zero.
    pub delivery: Vec<i64>,
    /// Amount picked up (carried to the end); empty means zero.
    pub pickup: Vec<i64>,
    /// Skills a vehicle needs to serve it.
    pub skills: Vec<u32>,
    /// 0..=100; higher priorities are served first when not everything fits.
    pub priority: u32,
    /// Windows in which the service may start; empty means any time.
    pub time_windows: Vec<TimeWindow>,
}

impl Job {
    /// A job at `location` with VROOM's defaults for everything else.
    pub fn new(id: u64, location: usize) -> Self {
        Self {
            id,
            location,
            service: 0,
            delivery: Vec::new(),
            pickup: Vec::new(),
            skills: Vec::new(),
            priority: 0,
            time_windows: Vec::new(),
        }
    }
}

/// One end of a shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentStep {
    /// Caller's id, echoed in the solution.
    pub id: u64,
    /// Matrix index of the stop.
    pub location: usize,
    /// Service duration at the stop.
    pub service: i64,
    /// Windows in which the service may start; empty means any time.
    pub time_windows: Vec<TimeWindow>,
}

impl ShipmentStep {
    /// A stop at `location` with no service time and no time window.
    pub fn new(id: u64, location: usize) -> Self {
        Self {
            id,
            location,
            service: 0,
            time_windows: Vec::new(),
        }
    }
}

/// Goods carried from `pickup` to `delivery` by one vehicle, pickup first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// Where the goods are loaded.
    pub pickup: ShipmentStep,
    /// Where they are unloaded.
    pub delivery: ShipmentStep,
    /// Amount carried; empty means zero.
    pub amount: Vec<i64>,
    /// Skills a vehicle needs to carry it.
    pub skills: Vec<u32>,
    /// 0..=100, as for jobs.
    pub priority: u32,
}

/// A complete vehicle-routing problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The fleet; at least one vehicle.
    pub vehicles: Vec<Vehicle>,
    /// Single-stop tasks.
    pub jobs: Vec<Job>,
    /// Pickup/delivery pairs.
    pub shipments: Vec<Shipment>,
    /// Travel durations between matrix indices (before a vehicle's speed factor).
    pub durations: Matrix,
    /// Travel distances, reported in the solution; `None` reports zero distances.
    pub distances: Option<Matrix>,
}

impl Problem {
    /// Number of amount dimensions (that of the first vehicle's capacity).
    pub fn dimensions(&self) -> usize {
        self.vehicles.first().map_or(0, |v| v.capacity.len())
    }

    /// The durations `vehicle` travels on: its own profile's, or the problem's.
    pub fn durations_for<'a>(&'a self, vehicle: &'a Vehicle) -> &'a Matrix {
        vehicle
            .matrices
            .as_ref()
            .map_or(&self.durations, |m| &m.durations)
    }

    /// The distances `vehicle` travels on: its own profile's, or the problem's.
    pub fn distances_for<'a>(&'a self, vehicle: &'a Vehicle) -> Option<&'a Matrix> {
        match &vehicle.matrices {
            Some(m) => m.distances.as_ref(),
            None => self.distances.as_ref(),
        }
    }

    /// Checks everything the solver relies on; [`crate::solve`] calls it first.
    pub fn validate(&self) -> Result<(), Error> {
        if self.vehicles.is_empty() {
            return Err(Error::NoVehicles);
        }
        let size = self.durations.size();
        for (i, v) in self.vehicles.iter().enumerate() {
            let Some(m) = &v.matrices else { continue };
            for (name, matrix) in [
                ("durations", Some(&m.durations)),
                ("distances", m.distances.as_ref()),
            ] {
                if let Some(matrix) = matrix
                    && matrix.size() != size
                {
                    return Err(Error::MatrixShape {
                        matrix: format!("vehicles[{i}].{name}"),
                        detail: format!("{0}x{0} but durations is {size}x{size}", matrix.size()),
                    });
                }
            }
        }
        if let Some(d) = &self.distances
            && d.size() != size
        {
            return Err(Error::MatrixShape {
                matrix: "distances".into(),
                detail: format!("{0}x{0} but durations is {size}x{size}", d.size()),
            });
        }
        let dims = self.dimensions();
        let index = |field: String, index: usize| {
            if index < size {
                Ok(())
            } else {
                Err(Error::IndexOutOfRange { field, index, size })
            }
        };
        let amount = |field: String, a: &[i64], allow_empty: bool| {
            if a.is_empty() && allow_empty {
                return Ok(());
            }
            if a.len() != dims {
                return Err(Error::Dimensions {
                    field,
                    got: a.len(),
                    expected: dims,
                });
            }
            if let Some(i) = a.iter().position(|&x| x > Matrix::MAX_ENTRY) {
                return Err(Error::Invalid {
                    field: format!("{field}[{i}]"),
                    reason: format!("must not exceed {}", Matrix::MAX_ENTRY),
                });
            }
            match a.iter().position(|&x| x < 0) {
                Some(i) => Err(Error::Negative {
                    field: format!("{field}[{i}]"),
                }),
                None => Ok(()),
            }
        };
        let windows = |field: String, tws: &[TimeWindow]| {
            for (i, tw) in tws.iter().enumerate() {
                if tw.end > TimeWindow::UNBOUNDED.end {
                    return Err(Error::Invalid {
                        field: format!("{field}[{i}]"),
                        reason: format!("must end by {}", TimeWindow::UNBOUNDED.end),
                    });
                }
                if tw.start < 0 {
                    return Err(Error::Negative {
                        field: format!("{field}[{i}]"),
                    });
                }
                if tw.start > tw.end {
                    return Err(Error::TimeWindow {
                        field: format!("{field}[{i}]"),
                        start: tw.start,
                        end: tw.end,
                    });
                }
            }
            Ok(())
        };
        let non_negative = |field: String, v: i64| {
            if v < 0 {
                Err(Error::Negative { field })
            } else if v > Matrix::MAX_ENTRY {
                Err(Error::Invalid {
                    field,
                    reason: format!("must not exceed {}", Matrix::MAX_ENTRY),
                })
            } else {
                Ok(())
            }
        };
        let priority = |field: String, p: u32| {
            if p > 100 {
                Err(Error::Invalid {
                    field,
                    reason: format!("priority must be within 0..=100, got {p}"),
                })
            } else {
                Ok(())
            }
        };
        for (i, v) in self.vehicles.iter().enumerate() {
            let f = |name: &str| format!("vehicles[{i}].{name}");
            if let Some(s) = v.start {
                index(f("start_index"), s)?;
            }
            if let Some(e) = v.end {
                index(f("end_index"), e)?;
            }
            amount(f("capacity"), &v.capacity, false)?;
            if let Some(tw) = v.time_window {
                windows(f("time_window"), &[tw])?;
            }
            if !(v.speed_factor > 0.0 && v.speed_factor <= 5.0) {
                return Err(Error::Invalid {
                    field: f("speed_factor"),
                    reason: format!("must be within (0, 5], got {}", v.speed_factor),
                });
            }
            non_negative(f("costs.fixed"), v.costs.fixed)?;
            non_negative(f("costs.per_hour"), v.costs.per_hour)?;
            for (b, br) in v.breaks.iter().enumerate() {
                non_negative(f(&format!("breaks[{b}].service")), br.service)?;
                windows(f(&format!("breaks[{b}].time_windows")), &br.time_windows)?;
            }
        }
        for (i, j) in self.jobs.iter().enumerate() {
            let f = |name: &str| format!("jobs[{i}].{name}");
            index(f("location_index"), j.location)?;
            non_negative(f("service"), j.service)?;
            amount(f("delivery"), &j.delivery, true)?;
            amount(f("pickup"), &j.pickup, true)?;
            priority(f("priority"), j.priority)?;
            windows(f("time_windows"), &j.time_windows)?;
        }
        for (i, s) in self.shipments.iter().enumerate() {
            let f = |name: &str| format!("shipments[{i}].{name}");
            for (side, step) in [("pickup", &s.pickup), ("delivery", &s.delivery)] {
                index(f(&format!("{side}.location_index")), step.location)?;
                non_negative(f(&format!("{side}.service")), step.service)?;
                windows(f(&format!("{side}.time_windows")), &step.time_windows)?;
            }
            amount(f("amount"), &s.amount, true)?;
            priority(f("priority"), s.priority)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            vehicles: vec![Vehicle::new(1, Some(0), Some(0), vec![10, 5])],
            jobs: vec![Job::new(7, 1)],
            shipments: vec![],
            durations: Matrix::new("durations", 2, vec![0, 1, 1, 0]).unwrap(),
            distances: None,
        }
    }

    #[test]
    fn validation_names_the_offending_element() {
        assert_eq!(problem().validate(), Ok(()));
        let mut p = problem();
        p.jobs[0].delivery = vec![1, 2, 3];
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "jobs[0].delivery has 3 dimensions but vehicles have 2"
        );
        let mut p = problem();
        p.jobs[0].location = 2;
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "jobs[0].location_index = 2 is out of range for a 2x2 matrix"
        );
        let mut p = problem();
        p.vehicles[0].time_window = Some(TimeWindow::new(5, 3));
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("vehicles[0].time_window")
        );
        let mut p = problem();
        p.jobs[0].pickup = vec![1, -1];
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "jobs[0].pickup[1] must not be negative"
        );
        let mut p = problem();
        p.vehicles.clear();
        assert_eq!(p.validate(), Err(Error::NoVehicles));
        let mut p = problem();
        p.jobs[0].priority = 101;
        assert!(p.validate().is_err());
    }

    #[test]
    fn matrices_must_be_square_and_non_negative() {
        assert!(Matrix::new("durations", 2, vec![0, 1, 1]).is_err());
        assert!(Matrix::from_rows("durations", &[vec![0, 1], vec![1]]).is_err());
        let e = Matrix::new("distances", 2, vec![0, -1, 1, 0]).unwrap_err();
        assert_eq!(e.to_string(), "distances[0][1] must not be negative");
        let e = Matrix::new("durations", 2, vec![0, 1, i64::MAX, 0]).unwrap_err();
        assert!(e.to_string().starts_with("durations[1][0] is invalid"));
    }
}
