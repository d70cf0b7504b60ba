//! The checker against a solved fixture and one tampered copy per rule.

use std::time::Duration;

use super::*;
use crate::model::{Break, Job, Matrix, Shipment, ShipmentStep, TimeWindow, Vehicle};
use crate::solution::{Step, StepKind, Unassigned};
use crate::{SolveOptions, solve};

/// Points on a line, 10 apart; one vehicle with a break, three jobs (one with a time
/// window and a skill) and a zero-amount shipment whose ends share a location.
fn fixture() -> (Problem, Solution) {
    let n = 5;
    let data = (0..n * n)
        .map(|k| 10 * ((k / n) as i64 - (k % n) as i64).abs())
        .collect();
    let m = Matrix::new("durations", n, data).unwrap();
    let mut v = Vehicle::new(1, Some(0), Some(0), vec![10]);
    v.skills = vec![3];
    v.time_window = Some(TimeWindow::new(0, 1000));
    v.breaks = vec![Break {
        id: 1,
        time_windows: vec![TimeWindow::new(20, 40)],
        service: 5,
    }];
    let mut jobs: Vec<Job> = (1..4)
        .map(|l| {
            let mut j = Job::new(l as u64, l);
            j.delivery = vec![2];
            j.service = 1;
            j
        })
        .collect();
    jobs[1].time_windows = vec![TimeWindow::new(0, 500)];
    jobs[2].skills = vec![3];
    let p = Problem {
        vehicles: vec![v],
        jobs,
        shipments: vec![Shipment {
            pickup: ShipmentStep::new(10, 4),
            delivery: ShipmentStep::new(11, 4),
            amount: vec![0],
            skills: Vec::new(),
            priority: 0,
        }],
        durations: m.clone(),
        distances: Some(m),
    };
    let s = solve(
        &p,
        &SolveOptions {
            time_limit: Duration::from_secs(10),
            max_iterations: Some(100),
            ..SolveOptions::default()
        },
    )
    .unwrap();
    assert!(s.unassigned.is_empty());
    (p, s)
}

fn step_of(s: &Solution, kind: StepKind) -> usize {
    s.routes[0]
        .steps
        .iter()
        .position(|st| st.kind == kind)
        .unwrap()
}

fn steps(s: &mut Solution) -> &mut Vec<Step> {
    &mut s.routes[0].steps
}

#[test]
fn the_fixture_is_feasible() {
    let (p, s) = fixture();
    let stats = check_feasibility(&p, &s).unwrap();
    assert_eq!(stats.served, 4);
    assert_eq!(stats.routes, 1);
    assert_eq!(stats.duration, 80);
    assert_eq!(stats.distance, 80);
    assert_eq!(stats.cost, 80);
    assert_eq!(stats.service, 3 + 5);
}

#[test]
fn catches_every_kind_of_violation() {
    let (p, s) = fixture();
    let job1 = step_of(&s, StepKind::Job(1));
    let check = |p: &Problem, s: &Solution| check_feasibility(p, s).unwrap_err();

    let mut bad = s.clone();
    bad.routes[0].vehicle = 9;
    assert!(matches!(check(&p, &bad), Violation::UnknownVehicle { .. }));

    let mut bad = s.clone();
    bad.routes.push(bad.routes[0].clone());
    assert!(matches!(check(&p, &bad), Violation::VehicleReused { .. }));

    let mut bad = s.clone();
    steps(&mut bad).pop();
    assert!(matches!(check(&p, &bad), Violation::StartEnd { .. }));

    let mut bad = s.clone();
    let keep: Vec<Step> = steps(&mut bad)
        .iter()
        .filter(|st| matches!(st.kind, StepKind::Start | StepKind::End))
        .cloned()
        .collect();
    *steps(&mut bad) = keep;
    assert!(matches!(check(&p, &bad), Violation::EmptyRoute { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].location = Some(0);
    assert!(matches!(check(&p, &bad), Violation::Location { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].kind = StepKind::Job(7);
    assert!(matches!(check(&p, &bad), Violation::UnknownTask { .. }));

    let mut q = p.clone();
    q.vehicles[0].capacity = vec![5];
    assert!(matches!(check(&q, &s), Violation::Capacity { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].load = vec![9];
    assert!(matches!(check(&p, &bad), Violation::Load { .. }));

    let mut q = p.clone();
    q.jobs[1].time_windows = vec![TimeWindow::new(0, 1)];
    assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

    let mut q = p.clone();
    q.vehicles[0].time_window = Some(TimeWindow::new(0, 50));
    assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

    let mut q = p.clone();
    q.vehicles[0].breaks[0].time_windows = vec![TimeWindow::new(500, 600)];
    assert!(matches!(check(&q, &s), Violation::TimeWindow { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].arrival += 1;
    assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].waiting_time = -1;
    assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].service = 0;
    assert!(matches!(check(&p, &bad), Violation::Timing { .. }));

    let mut bad = s.clone();
    steps(&mut bad)[job1].duration += 1;
    assert!(matches!(
        check(&p, &bad),
        Violation::Cumulative {
            what: "duration",
            ..
        }
    ));

    let mut bad = s.clone();
    steps(&mut bad)[job1].distance += 1;
    assert!(matches!(
        check(&p, &bad),
        Violation::Cumulative {
            what: "distance",
            ..
        }
    ));

    let mut q = p.clone();
    q.jobs[0].skills = vec![4];
    assert!(matches!(check(&q, &s), Violation::Skills { .. }));

    let mut q = p.clone();
    q.vehicles[0].max_tasks = Some(4);
    assert!(matches!(
        check(&q, &s),
        Violation::MaxTasks {
            tasks: 5,
            max: 4,
            ..
        }
    ));

    let mut q = p.clone();
    q.jobs.push(Job::new(99, 1));
    assert!(matches!(check(&q, &s), Violation::Missing { .. }));

    let mut bad = s.clone();
    bad.unassigned.push(Unassigned::Job(0));
    assert!(matches!(check(&p, &bad), Violation::Duplicate { .. }));

    let mut bad = s.clone();
    bad.unassigned.push(Unassigned::Shipment(0));
    assert!(matches!(check(&p, &bad), Violation::Duplicate { .. }));

    // Delivery before pickup (same location, zero amount, so only the order is wrong).
    let mut bad = s.clone();
    let (pi, di) = (
        step_of(&s, StepKind::Pickup(0)),
        step_of(&s, StepKind::Delivery(0)),
    );
    steps(&mut bad)[pi].kind = StepKind::Delivery(0);
    steps(&mut bad)[di].kind = StepKind::Pickup(0);
    assert!(matches!(
        check(&p, &bad),
        Violation::ShipmentOrder { shipment: 0 }
    ));

    let mut q = p.clone();
    q.vehicles[0].breaks.push(Break {
        id: 2,
        time_windows: Vec::new(),
        service: 0,
    });
    assert!(matches!(
        check(&q, &s),
        Violation::Break {
            brk: 1,
            times: 0,
            ..
        }
    ));

    let mut bad = s.clone();
    bad.routes[0].cost += 1;
    assert!(matches!(check(&p, &bad), Violation::Cost { .. }));

    let mut q = p.clone();
    q.vehicles[0].costs.fixed = 5;
    assert!(matches!(check(&q, &s), Violation::Cost { .. }));
}
