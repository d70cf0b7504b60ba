//! VROOM-compatible `POST /optimize` input and output shapes.
//!
//! Only the documented subset of VROOM's API is accepted: every input type denies unknown
//! fields, so a request using anything else fails to deserialise with serde's message
//! naming the field (`unknown field `setup`, expected one of ...`), which the agent turns
//! into a 400 with `code: 2`. Coordinates are `[lon, lat]`; times are seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A `[lon, lat]` pair.
pub type Location = [f64; 2];

/// A `[start, end]` pair of seconds.
pub type TimeWindow = [u64; 2];

/// The request body of `POST /optimize`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The fleet.
    pub vehicles: Vec<Vehicle>,
    /// Single-stop tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<Job>,
    /// Pickup/delivery pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipments: Vec<Shipment>,
    /// Custom matrices by profile (`car`); when given, locations are `*_index` into them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrices: Option<BTreeMap<String, Matrices>>,
    /// Output options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
}

/// Custom matrices of one profile.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrices {
    /// Travel durations in seconds, row-major square.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<Vec<Vec<u64>>>,
    /// Travel distances in metres, row-major square.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<Vec<u64>>>,
}

/// Request options.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Return route geometries.
    #[serde(default)]
    pub g: bool,
}

/// A vehicle.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vehicle {
    /// Caller's id.
    pub id: u64,
    /// Routing profile: picks the matrix the vehicle travels on (`car`, the default, or any
    /// profile the agent serves, such as `truck`), as in VROOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Start coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub start: Option<Location>,
    /// Start as an index into the custom matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<usize>,
    /// End coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub end: Option<Location>,
    /// End as an index into the custom matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_index: Option<usize>,
    /// Capacity per dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Vec<i64>>,
    /// Skills the vehicle has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<u32>>,
    /// Working hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<u64>>))]
    pub time_window: Option<TimeWindow>,
    /// Maximum number of tasks in the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<usize>,
    /// Durations are divided by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_factor: Option<f64>,
    /// Fixed and hourly costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<VehicleCosts>,
    /// Breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaks: Option<Vec<Break>>,
}

/// A vehicle's costs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleCosts {
    /// Cost of using the vehicle at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<u64>,
    /// Cost of one hour of travel (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
}

/// A vehicle break.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Break {
    /// Caller's id.
    pub id: u64,
    /// When the break may start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<u64>>))]
    pub time_windows: Vec<TimeWindow>,
    /// Break duration.
    #[serde(default)]
    pub service: u64,
}

/// A single-stop task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Caller's id.
    pub id: u64,
    /// Coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub location: Option<Location>,
    /// Index into the custom matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_index: Option<usize>,
    /// Service duration.
    #[serde(default)]
    pub service: u64,
    /// Amount delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Vec<i64>>,
    /// Amount picked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup: Option<Vec<i64>>,
    /// Skills required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<u32>>,
    /// 0..=100.
    #[serde(default)]
    pub priority: u32,
    /// When the service may start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<u64>>))]
    pub time_windows: Vec<TimeWindow>,
}

/// One end of a shipment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentStep {
    /// Caller's id.
    pub id: u64,
    /// Coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub location: Option<Location>,
    /// Index into the custom matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_index: Option<usize>,
    /// Service duration.
    #[serde(default)]
    pub service: u64,
    /// When the service may start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<u64>>))]
    pub time_windows: Vec<TimeWindow>,
}

/// A pickup/delivery pair served by one vehicle, pickup first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    /// Where the goods are loaded.
    pub pickup: ShipmentStep,
    /// Where they are unloaded.
    pub delivery: ShipmentStep,
    /// Amount carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Vec<i64>>,
    /// Skills required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<u32>>,
    /// 0..=100.
    #[serde(default)]
    pub priority: u32,
}

/// `code` values of the output.
pub mod code {
    /// Solved (possibly with unassigned tasks).
    pub const OK: u32 = 0;
    /// Internal error.
    pub const INTERNAL: u32 = 1;
    /// Bad input.
    pub const INPUT: u32 = 2;
    /// The matrix could not be computed.
    pub const ROUTING: u32 = 3;
}

/// The response body of `POST /optimize`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Output {
    /// See [`code`].
    pub code: u32,
    /// Error message when `code != 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Totals; absent on error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Tasks not served.
    #[serde(default)]
    pub unassigned: Vec<UnassignedTask>,
    /// One route per used vehicle.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// The agent's `POST /optimize` answer: VROOM's output plus the id of the plan it was
/// stored as (`GET /plans/{plan_id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizeResponse {
    /// The VROOM output, its fields at the top level.
    #[serde(flatten)]
    pub output: Output,
    /// `<node>-<seq>`.
    pub plan_id: String,
}

/// Totals over all routes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Total cost.
    pub cost: u64,
    /// Number of routes.
    pub routes: usize,
    /// Number of unassigned tasks.
    pub unassigned: usize,
    /// Total delivered amount.
    #[serde(default)]
    pub delivery: Vec<i64>,
    /// Total picked-up amount.
    #[serde(default)]
    pub pickup: Vec<i64>,
    /// Total service time.
    pub service: u64,
    /// Total travel time.
    pub duration: u64,
    /// Total waiting time.
    pub waiting_time: u64,
    /// Sum of the priorities served.
    #[serde(default)]
    pub priority: u64,
    /// Total distance (metres).
    #[serde(default)]
    pub distance: u64,
    /// Milliseconds spent per phase.
    #[serde(default)]
    pub computing_times: ComputingTimes,
}

/// Milliseconds spent per phase.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ComputingTimes {
    /// Parsing and validation.
    pub loading: u64,
    /// Search.
    pub solving: u64,
    /// Matrix computation.
    pub routing: u64,
}

/// Kind of an unassigned task or of a step.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    /// Route start.
    Start,
    /// A job.
    Job,
    /// A shipment's pickup.
    Pickup,
    /// A shipment's delivery.
    Delivery,
    /// A break.
    Break,
    /// Route end.
    End,
}

/// A task no vehicle serves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignedTask {
    /// The task's id.
    pub id: u64,
    /// `job`, `pickup` or `delivery`.
    #[serde(rename = "type")]
    pub kind: StepType,
    /// Its coordinates, when given in the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub location: Option<Location>,
    /// Its matrix index, when given in the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_index: Option<usize>,
}

/// A vehicle's route.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Route {
    /// Vehicle id.
    pub vehicle: u64,
    /// Fixed plus travel cost.
    pub cost: u64,
    /// Delivered amount.
    #[serde(default)]
    pub delivery: Vec<i64>,
    /// Picked-up amount.
    #[serde(default)]
    pub pickup: Vec<i64>,
    /// Service time.
    pub service: u64,
    /// Travel time.
    pub duration: u64,
    /// Waiting time.
    pub waiting_time: u64,
    /// Sum of the priorities served.
    #[serde(default)]
    pub priority: u64,
    /// Distance (metres).
    #[serde(default)]
    pub distance: u64,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Encoded polyline of the route, when `options.g` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<String>,
}

/// One step of a route.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What happens.
    #[serde(rename = "type")]
    pub kind: StepType,
    /// Task or break id (absent for start and end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Coordinates, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<f64>>))]
    pub location: Option<Location>,
    /// Matrix index, when given in the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_index: Option<usize>,
    /// Arrival time.
    pub arrival: u64,
    /// Cumulative travel time.
    pub duration: u64,
    /// Load after the step.
    #[serde(default)]
    pub load: Vec<i64>,
    /// Service time.
    #[serde(default)]
    pub service: u64,
    /// Waiting time.
    #[serde(default)]
    pub waiting_time: u64,
    /// Cumulative distance.
    #[serde(default)]
    pub distance: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vroom_input_round_trips() {
        let json = serde_json::json!({
            "vehicles": [{
                "id": 1, "profile": "car", "start_index": 0, "end_index": 0,
                "capacity": [10, 3], "skills": [1, 4], "time_window": [0, 36000],
                "max_tasks": 12, "speed_factor": 1.5, "costs": {"fixed": 100, "per_hour": 1800},
                "breaks": [{"id": 9, "time_windows": [[7200, 9000]], "service": 600}]
            }, {"id": 2, "start": [7.42, 43.73]}],
            "jobs": [{
                "id": 5, "location_index": 1, "service": 300, "delivery": [2, 0], "pickup": [0, 1],
                "skills": [1], "priority": 50, "time_windows": [[0, 100], [200, 300]]
            }, {"id": 6, "location": [7.41, 43.74]}],
            "shipments": [{
                "pickup": {"id": 7, "location_index": 2, "service": 60, "time_windows": [[0, 500]]},
                "delivery": {"id": 8, "location_index": 0},
                "amount": [1, 1], "skills": [4], "priority": 10
            }],
            "matrices": {"car": {"durations": [[0, 5, 6], [5, 0, 7], [6, 7, 0]],
                                 "distances": [[0, 50, 60], [50, 0, 70], [60, 70, 0]]}},
            "options": {"g": true}
        });
        let input: Input = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(input.vehicles[0].costs.unwrap().per_hour, Some(1800));
        assert_eq!(input.jobs[0].time_windows, vec![[0, 100], [200, 300]]);
        assert_eq!(input.shipments[0].pickup.id, 7);
        let back = serde_json::to_value(&input).unwrap();
        // Defaults (service 0, priority 0) come back explicitly; nothing else changes.
        assert_eq!(back["vehicles"], json["vehicles"]);
        assert_eq!(back["matrices"], json["matrices"]);
        assert_eq!(back["jobs"][0], json["jobs"][0]);
        assert_eq!(back["jobs"][1]["service"], 0);
        let again: Input = serde_json::from_value(back).unwrap();
        assert_eq!(again, input);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = serde_json::from_str::<Input>(r#"{"vehicles": [{"id": 1, "setup": 5}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `setup`"), "{err}");
        let err = serde_json::from_str::<Input>(r#"{"vehicles": [], "algorithm": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `algorithm`"), "{err}");
        let err = serde_json::from_str::<Input>(
            r#"{"vehicles": [], "jobs": [{"id": 1, "location_index": 0, "setup": 3}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `setup`"), "{err}");
        let err = serde_json::from_str::<Input>(
            r#"{"vehicles": [], "jobs": [{"id": 1, "delivery": [-1.5]}]}"#,
        );
        assert!(err.is_err());
    }

    #[test]
    fn vroom_output_round_trips_with_vroom_field_names() {
        let out = Output {
            code: code::OK,
            error: None,
            summary: Some(Summary {
                cost: 20,
                routes: 1,
                unassigned: 1,
                delivery: vec![2],
                pickup: vec![0],
                service: 300,
                duration: 20,
                waiting_time: 0,
                priority: 0,
                distance: 200,
                computing_times: ComputingTimes::default(),
            }),
            unassigned: vec![UnassignedTask {
                id: 6,
                kind: StepType::Job,
                location: None,
                location_index: Some(2),
            }],
            routes: vec![Route {
                vehicle: 1,
                cost: 20,
                steps: vec![
                    Step {
                        kind: StepType::Start,
                        id: None,
                        location: None,
                        location_index: Some(0),
                        arrival: 0,
                        duration: 0,
                        load: vec![2],
                        service: 0,
                        waiting_time: 0,
                        distance: 0,
                    },
                    Step {
                        kind: StepType::Job,
                        id: Some(5),
                        location: Some([7.41, 43.74]),
                        location_index: Some(1),
                        arrival: 10,
                        duration: 10,
                        load: vec![0],
                        service: 300,
                        waiting_time: 0,
                        distance: 100,
                    },
                ],
                ..Route::default()
            }],
        };
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["routes"][0]["steps"][1]["type"], "job");
        assert_eq!(v["unassigned"][0]["type"], "job");
        assert_eq!(v["summary"]["computing_times"]["solving"], 0);
        assert!(v["routes"][0]["steps"][0].get("id").is_none());
        let back: Output = serde_json::from_value(v).unwrap();
        assert_eq!(back, out);
        let err = Output {
            code: code::INPUT,
            error: Some("jobs[3].delivery has 2 dimensions but vehicles have 3".into()),
            ..Output::default()
        };
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(v["code"], 2);
        assert!(v.get("summary").is_none());
    }

    #[test]
    fn optimize_response_is_the_output_plus_plan_id_at_the_top_level() {
        let response = OptimizeResponse {
            output: Output {
                code: code::OK,
                ..Output::default()
            },
            plan_id: "abc-1".into(),
        };
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 0, "unassigned": [], "routes": [], "plan_id": "abc-1"})
        );
        let back: OptimizeResponse = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, response);
        // A VROOM client reading it as plain output ignores the extra field.
        assert_eq!(
            serde_json::from_value::<Output>(v).unwrap(),
            response.output
        );
    }
}
