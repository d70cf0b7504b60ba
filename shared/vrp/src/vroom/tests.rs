//! The mapping on small inputs, and the round trip through both directions.

use std::time::Duration;

use edgeroute_protocol::vroom::{self, Input, Output, StepType};
use serde_json::json;

use super::*;
use crate::{
    Break, Job, Matrix, Problem, Shipment, ShipmentStep, Solution, SolveOptions, TimeWindow,
    Vehicle, check_feasibility, solve,
};

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

/// A problem using every field the model has: two vehicles (one with skills, a break, a
/// task limit and a speed factor), jobs with windows, amounts and skills, and a shipment.
fn rich_problem() -> Problem {
    let m = Matrix::from_rows(
        "durations",
        &[
            vec![0, 10, 20, 30],
            vec![10, 0, 15, 25],
            vec![20, 15, 0, 12],
            vec![30, 25, 12, 0],
        ],
    )
    .unwrap();
    let mut a = Job::new(7, 1);
    a.delivery = vec![3];
    a.time_windows = vec![TimeWindow::new(0, 100)];
    a.service = 5;
    a.priority = 10;
    let mut b = Job::new(9, 2);
    b.pickup = vec![4];
    b.skills = vec![2];
    let mut v1 = Vehicle::new(42, Some(0), Some(0), vec![10]);
    v1.skills = vec![2];
    v1.time_window = Some(TimeWindow::new(0, 10_000));
    v1.max_tasks = Some(6);
    v1.speed_factor = 1.25;
    v1.breaks = vec![Break {
        id: 3,
        time_windows: vec![TimeWindow::new(10, 50)],
        service: 4,
    }];
    let mut v2 = Vehicle::new(43, Some(3), None, vec![10]);
    v2.costs.fixed = 500;
    v2.costs.per_hour = 7200;
    Problem {
        vehicles: vec![v1, v2],
        jobs: vec![a, b],
        shipments: vec![Shipment {
            pickup: ShipmentStep::new(20, 3),
            delivery: ShipmentStep::new(21, 1),
            amount: vec![2],
            skills: Vec::new(),
            priority: 5,
        }],
        distances: Some(m.clone()),
        durations: m,
    }
}

/// What the agent does with a custom-matrix body: collect, convert, solve, check, shape.
fn serve(input: &Input) -> (Problem, Solution, Output) {
    let places = Places::collect(input).unwrap();
    let (d, dist) = custom_matrices(input).unwrap();
    let problem = to_problem(input, &places, d, dist).unwrap();
    let options = SolveOptions {
        max_iterations: Some(50),
        ..SolveOptions::default()
    };
    let solution = solve(&problem, &options).unwrap();
    let stats = check_feasibility(&problem, &solution).unwrap();
    let output = to_output(
        input,
        &places,
        &problem,
        &solution,
        &stats,
        Times::default(),
    );
    (problem, solution, output)
}

#[test]
fn problems_and_solutions_round_trip_through_vroom_json() {
    let p = rich_problem();
    let input = to_input(&p).unwrap();
    // Through the wire: what the server parses is what was sent.
    let json = serde_json::to_string(&input).unwrap();
    let parsed: Input = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, input);
    let (problem, solution, output) = serve(&parsed);
    assert_eq!(problem, p);
    assert!(solution.routes.iter().any(|r| !r.steps.is_empty()));
    let json = serde_json::to_string(&output).unwrap();
    let back = to_solution(&p, &serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back, solution);
    assert!(check_feasibility(&p, &back).is_ok());
}

#[test]
fn unserved_shipments_and_jobs_map_back_once() {
    let mut p = rich_problem();
    // Nothing fits: every task comes back unassigned, each shipment once.
    for v in &mut p.vehicles {
        v.capacity = vec![1];
    }
    let (_, solution, output) = serve(&to_input(&p).unwrap());
    assert!(output.unassigned.iter().any(|u| u.kind == StepType::Pickup));
    assert!(
        output
            .unassigned
            .iter()
            .any(|u| u.kind == StepType::Delivery)
    );
    assert_eq!(to_solution(&p, &output).unwrap(), solution);
}

#[test]
fn input_carries_ids_indices_amounts_windows_and_matrices() {
    let input = to_input(&rich_problem()).unwrap();
    assert_eq!(input.vehicles[0].id, 42);
    assert_eq!(input.vehicles[0].capacity, Some(vec![10]));
    assert_eq!(input.vehicles[0].speed_factor, Some(1.25));
    assert_eq!(input.vehicles[1].speed_factor, None);
    assert_eq!(input.jobs[0].id, 7);
    assert_eq!(input.jobs[0].location_index, Some(1));
    assert_eq!(input.jobs[0].time_windows, vec![[0, 100]]);
    assert_eq!(input.jobs[0].service, 5);
    assert_eq!(input.shipments[0].pickup.location_index, Some(3));
    let car = &input.matrices.as_ref().unwrap()["car"];
    assert_eq!(car.durations.as_ref().unwrap()[2], vec![20, 15, 0, 12]);
}

#[test]
fn tampered_answers_fail_the_checker_or_the_mapping() {
    let p = rich_problem();
    let (_, _, output) = serve(&to_input(&p).unwrap());
    let route = output
        .routes
        .iter()
        .position(|r| r.steps.len() > 2)
        .unwrap();

    let mut out = output.clone();
    out.routes[route].steps[1].arrival += 1;
    let back = to_solution(&p, &out).unwrap();
    assert!(check_feasibility(&p, &back).is_err());

    let mut out = output.clone();
    out.routes[route].steps[1].id = Some(1234);
    assert!(to_solution(&p, &out).is_err());

    let mut out = output;
    out.routes[route].vehicle = 99;
    assert!(to_solution(&p, &out).is_err());

    let out = Output {
        code: vroom::code::INPUT,
        error: Some("bad".into()),
        ..Output::default()
    };
    assert_eq!(
        to_solution(&p, &out).unwrap_err().to_string(),
        "the output reports code 2: bad"
    );
}
