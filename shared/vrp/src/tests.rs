//! Solver tests on small hand-made problems; every solution also passes the checker.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Points on a line at 0, 10, 20, ...: travel time (and distance) is 10 per step.
fn line(n: usize) -> Matrix {
    let data = (0..n * n)
        .map(|k| 10 * ((k / n) as i64 - (k % n) as i64).abs())
        .collect();
    Matrix::new("durations", n, data).unwrap()
}

fn problem(n: usize, vehicles: Vec<Vehicle>, jobs: Vec<Job>) -> Problem {
    Problem {
        vehicles,
        jobs,
        shipments: Vec::new(),
        durations: line(n),
        distances: Some(line(n)),
    }
}

fn job(id: u64, loc: usize, delivery: i64) -> Job {
    let mut j = Job::new(id, loc);
    j.delivery = vec![delivery];
    j
}

fn opts(iterations: u64) -> SolveOptions {
    SolveOptions {
        time_limit: Duration::from_secs(20),
        seed: 7,
        threads: 1,
        max_iterations: Some(iterations),
    }
}

fn solve_checked(p: &Problem, iterations: u64) -> (Solution, SolutionStats) {
    let s = solve(p, &opts(iterations)).unwrap();
    let stats = check_feasibility(p, &s).unwrap_or_else(|v| panic!("{v}\n{s:#?}"));
    (s, stats)
}

fn served_jobs(route: &Route) -> Vec<usize> {
    route
        .steps
        .iter()
        .filter_map(|s| match s.kind {
            StepKind::Job(j) => Some(j),
            _ => None,
        })
        .collect()
}

#[test]
fn a_small_problem_stops_once_converged_not_at_its_time_limit() {
    let p = problem(
        3,
        vec![Vehicle::new(1, Some(0), Some(0), vec![10])],
        vec![job(1, 1, 1), job(2, 2, 1)],
    );
    let options = SolveOptions {
        time_limit: Duration::from_secs(20),
        seed: 7,
        threads: 2,
        max_iterations: None,
    };
    let started = std::time::Instant::now();
    let s = solve(&p, &options).unwrap();
    // Generous for a debug build on a busy machine; without the early stop it takes 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let stats = check_feasibility(&p, &s).unwrap();
    assert_eq!(stats.cost, 40, "0 -> 1 -> 2 -> 0 on the line");
}

#[test]
fn capacity_limits_what_one_vehicle_serves() {
    let jobs = vec![job(1, 1, 4), job(2, 2, 4), job(3, 3, 4)];
    let p = problem(
        4,
        vec![Vehicle::new(1, Some(0), Some(0), vec![10])],
        jobs.clone(),
    );
    let (s, stats) = solve_checked(&p, 200);
    assert_eq!(stats.served, 2);
    assert_eq!(s.unassigned.len(), 1);
    // The farthest job costs most: it is the one left out.
    assert_eq!(s.unassigned, vec![Unassigned::Job(2)]);
    // Two vehicles serve everything.
    let p = problem(
        4,
        vec![
            Vehicle::new(1, Some(0), Some(0), vec![10]),
            Vehicle::new(2, Some(0), Some(0), vec![10]),
        ],
        jobs,
    );
    let (s, stats) = solve_checked(&p, 200);
    assert!(s.unassigned.is_empty());
    assert_eq!(stats.routes, 2);
    // Optimal: one route to 3 and back (60) with two jobs, one to 1 or 2: 60 + 20 or 40.
    assert_eq!(stats.cost, 80);
}

#[test]
fn pickups_and_deliveries_share_the_capacity() {
    // Delivering 5 to 1 and picking up 5 at 2 fits a capacity of 5 only in that order.
    let mut pick = Job::new(2, 2);
    pick.pickup = vec![5];
    let p = problem(
        3,
        vec![Vehicle::new(1, Some(0), Some(0), vec![5])],
        vec![job(1, 1, 5), pick],
    );
    let (s, _) = solve_checked(&p, 100);
    assert!(s.unassigned.is_empty());
    assert_eq!(served_jobs(&s.routes[0]), vec![0, 1]);
    let loads: Vec<i64> = s.routes[0].steps.iter().map(|st| st.load[0]).collect();
    assert_eq!(loads, vec![5, 0, 5, 5]);
}

#[test]
fn time_windows_order_the_route_and_exclude_the_impossible() {
    let mut late = job(1, 1, 0);
    late.time_windows = vec![TimeWindow::new(100, 110)];
    late.service = 5;
    let mut early = job(2, 3, 0);
    early.time_windows = vec![TimeWindow::new(0, 40)];
    let mut impossible = job(3, 4, 0);
    impossible.time_windows = vec![TimeWindow::new(0, 10)]; // 40 away
    let p = problem(
        5,
        vec![Vehicle::new(1, Some(0), Some(0), vec![1])],
        vec![late, early, impossible],
    );
    let (s, stats) = solve_checked(&p, 200);
    assert_eq!(s.unassigned, vec![Unassigned::Job(2)]);
    assert_eq!(served_jobs(&s.routes[0]), vec![1, 0]);
    let steps = &s.routes[0].steps;
    assert_eq!(steps[1].arrival, 30);
    assert_eq!(steps[2].arrival, 50);
    assert_eq!(steps[2].waiting_time, 50);
    assert_eq!(stats.waiting_time, 50);
    assert_eq!(steps[3].arrival, 115);
}

#[test]
fn several_time_windows_per_job() {
    let mut j = job(1, 1, 0);
    j.time_windows = vec![TimeWindow::new(0, 5), TimeWindow::new(50, 60)];
    let p = problem(2, vec![Vehicle::new(1, Some(0), None, vec![1])], vec![j]);
    let (s, _) = solve_checked(&p, 50);
    let st = &s.routes[0].steps[1];
    assert_eq!((st.arrival, st.waiting_time), (10, 40));
    assert_eq!(
        s.routes[0].steps.len(),
        2,
        "no end step without an end location"
    );
}

#[test]
fn vehicle_time_window_bounds_the_route() {
    let mut v = Vehicle::new(1, Some(0), Some(0), vec![1]);
    v.time_window = Some(TimeWindow::new(0, 45));
    // Job at 2 (round trip 40) fits, job at 3 (round trip 60) does not.
    let p = problem(4, vec![v], vec![job(1, 2, 0), job(2, 3, 0)]);
    let (s, _) = solve_checked(&p, 100);
    assert_eq!(s.unassigned, vec![Unassigned::Job(1)]);
}

#[test]
fn skills_pick_the_vehicle() {
    let mut v2 = Vehicle::new(2, Some(0), Some(0), vec![10]);
    v2.skills = vec![7];
    let mut needs7 = job(1, 1, 1);
    needs7.skills = vec![7];
    let mut needs8 = job(2, 1, 1);
    needs8.skills = vec![8];
    let p = problem(
        2,
        vec![Vehicle::new(1, Some(0), Some(0), vec![10]), v2],
        vec![needs7, needs8],
    );
    let (s, _) = solve_checked(&p, 100);
    assert_eq!(s.unassigned, vec![Unassigned::Job(1)]);
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].vehicle, 1);
}

#[test]
fn max_tasks_caps_a_route() {
    let mut v = Vehicle::new(1, Some(0), Some(0), vec![10]);
    v.max_tasks = Some(2);
    let p = problem(4, vec![v], vec![job(1, 1, 0), job(2, 2, 0), job(3, 3, 0)]);
    let (s, stats) = solve_checked(&p, 100);
    assert_eq!(stats.served, 2);
    assert_eq!(s.unassigned.len(), 1);
}

#[test]
fn priorities_come_before_cost() {
    // Room for one job: the far one has priority and wins.
    let near = job(1, 1, 5);
    let mut far = job(2, 3, 5);
    far.priority = 10;
    let p = problem(
        4,
        vec![Vehicle::new(1, Some(0), Some(0), vec![5])],
        vec![near, far],
    );
    let (s, stats) = solve_checked(&p, 100);
    assert_eq!(s.unassigned, vec![Unassigned::Job(0)]);
    assert_eq!(stats.priority, 10);
    // Without priorities the near one is cheaper.
    let p = problem(
        4,
        vec![Vehicle::new(1, Some(0), Some(0), vec![5])],
        vec![job(1, 1, 5), job(2, 3, 5)],
    );
    let (s, _) = solve_checked(&p, 100);
    assert_eq!(s.unassigned, vec![Unassigned::Job(1)]);
}

#[test]
fn shipments_stay_on_one_vehicle_pickup_first() {
    let ship = |from: usize, to: usize, amount: i64| Shipment {
        pickup: ShipmentStep::new(from as u64, from),
        delivery: ShipmentStep::new(100 + to as u64, to),
        amount: vec![amount],
        skills: Vec::new(),
        priority: 0,
    };
    let mut p = problem(
        5,
        vec![Vehicle::new(1, Some(0), Some(0), vec![4])],
        vec![job(1, 2, 0)],
    );
    p.shipments = vec![ship(3, 1, 3), ship(4, 2, 2), ship(1, 4, 5)];
    let (s, stats) = solve_checked(&p, 300);
    // The third is bigger than the vehicle.
    assert_eq!(s.unassigned, vec![Unassigned::Shipment(2)]);
    assert_eq!(stats.served, 3);
    let kinds: Vec<StepKind> = s.routes[0].steps.iter().map(|st| st.kind).collect();
    let at = |k: StepKind| kinds.iter().position(|x| *x == k).unwrap();
    assert!(at(StepKind::Pickup(0)) < at(StepKind::Delivery(0)));
    assert!(at(StepKind::Pickup(1)) < at(StepKind::Delivery(1)));
    // Carrying both at once would exceed 4: they are done one after the other.
    assert!(s.routes[0].steps.iter().all(|st| st.load[0] <= 4));
}

#[test]
fn breaks_are_scheduled_inside_their_windows() {
    let mut v = Vehicle::new(1, Some(0), Some(0), vec![10]);
    v.breaks = vec![Break {
        id: 9,
        time_windows: vec![TimeWindow::new(25, 35)],
        service: 15,
    }];
    let jobs = (1..4).map(|l| job(l as u64, l, 1)).collect();
    let p = problem(4, vec![v.clone()], jobs);
    let (s, stats) = solve_checked(&p, 200);
    assert!(s.unassigned.is_empty());
    let steps = &s.routes[0].steps;
    let b = steps
        .iter()
        .find(|st| st.kind == StepKind::Break(0))
        .unwrap();
    let start = b.arrival + b.waiting_time;
    assert!((25..=35).contains(&start), "{steps:#?}");
    assert_eq!(stats.service, 15);
    assert_eq!(stats.duration, 60);
    // A break that cannot fit before the working day ends makes the vehicle unusable.
    v.time_window = Some(TimeWindow::new(0, 30));
    v.breaks[0].time_windows = vec![TimeWindow::new(100, 200)];
    let p = problem(2, vec![v], vec![job(1, 1, 1)]);
    let (s, _) = solve_checked(&p, 50);
    assert_eq!(s.unassigned, vec![Unassigned::Job(0)]);
}

#[test]
fn unreachable_jobs_are_unassigned_not_errors() {
    let mut d = vec![0, 10, 10, 10, 0, 10, 1 << 40, 1 << 40, 0];
    d[2] = 1 << 40; // 0 -> 2 unreachable
    let m = Matrix::new("durations", 3, d).unwrap();
    let mut v = Vehicle::new(1, Some(0), Some(0), vec![10]);
    v.time_window = Some(TimeWindow::new(0, 1000));
    let p = Problem {
        vehicles: vec![v],
        jobs: vec![job(1, 1, 1), job(2, 2, 1)],
        shipments: Vec::new(),
        durations: m,
        distances: None,
    };
    let (s, _) = solve_checked(&p, 50);
    assert_eq!(s.unassigned, vec![Unassigned::Job(1)]);
}

#[test]
fn fixed_costs_and_hourly_costs_shape_the_choice() {
    let mut dear = Vehicle::new(1, Some(0), Some(0), vec![10]);
    dear.costs = VehicleCosts {
        fixed: 1000,
        per_hour: 3600,
    };
    let mut cheap = Vehicle::new(2, Some(0), Some(0), vec![10]);
    cheap.costs = VehicleCosts {
        fixed: 10,
        per_hour: 7200,
    };
    let p = problem(3, vec![dear, cheap], vec![job(1, 2, 1)]);
    let (s, stats) = solve_checked(&p, 50);
    assert_eq!(s.routes[0].vehicle, 1);
    // 40 time units at 7200/h cost 80, plus 10 fixed.
    assert_eq!(stats.cost, 90);
    assert_eq!(stats.duration, 40);
    let mut fast = Vehicle::new(1, Some(0), Some(0), vec![10]);
    fast.speed_factor = 2.0;
    let p = problem(3, vec![fast], vec![job(1, 2, 1)]);
    let (_, stats) = solve_checked(&p, 50);
    assert_eq!(stats.duration, 20);
    assert_eq!(stats.distance, 40);
}

#[test]
fn open_routes_without_start_or_end() {
    let p = problem(
        5,
        vec![Vehicle::new(1, None, None, vec![10])],
        vec![job(1, 1, 1), job(2, 4, 1), job(3, 2, 1)],
    );
    let (s, stats) = solve_checked(&p, 100);
    assert!(s.unassigned.is_empty());
    assert_eq!(stats.duration, 30);
    assert!(
        !s.routes[0]
            .steps
            .iter()
            .any(|st| matches!(st.kind, StepKind::Start | StepKind::End))
    );
}

#[test]
fn invalid_input_is_an_error_not_a_panic() {
    let mut p = problem(
        2,
        vec![Vehicle::new(1, Some(0), Some(0), vec![10, 1])],
        vec![job(1, 1, 1)],
    );
    let e = solve(&p, &opts(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "jobs[0].delivery has 1 dimensions but vehicles have 2"
    );
    p.vehicles.clear();
    assert_eq!(solve(&p, &opts(10)), Err(Error::NoVehicles));
}

/// A random problem using every feature, on random points.
fn random_problem(rng: &mut SmallRng, n_jobs: usize, n_ship: usize) -> Problem {
    let n = n_jobs + 2 * n_ship + 2;
    let pts: Vec<(i64, i64)> = (0..n)
        .map(|_| (rng.random_range(0..100), rng.random_range(0..100)))
        .collect();
    let mut data = Vec::with_capacity(n * n);
    for a in &pts {
        for b in &pts {
            let d = (((a.0 - b.0).pow(2) + (a.1 - b.1).pow(2)) as f64).sqrt();
            data.push(d.round() as i64);
        }
    }
    let m = Matrix::new("durations", n, data).unwrap();
    let tw = |rng: &mut SmallRng| {
        let s = rng.random_range(0..400);
        TimeWindow::new(s, s + rng.random_range(20..200))
    };
    let vehicles = (0..4)
        .map(|v| {
            let mut veh = Vehicle::new(
                v,
                Some(0),
                if v == 3 { None } else { Some(1) },
                vec![15, 10],
            );
            veh.skills = if v % 2 == 0 { vec![1] } else { vec![2] };
            veh.time_window = Some(TimeWindow::new(0, 700));
            veh.max_tasks = Some(8);
            veh.costs.fixed = 50 * v as i64;
            if v == 1 {
                veh.speed_factor = 1.25;
                veh.costs.per_hour = 5400;
            }
            if v >= 2 {
                veh.breaks = vec![Break {
                    id: 1,
                    time_windows: vec![TimeWindow::new(150, 250)],
                    service: 30,
                }];
            }
            veh
        })
        .collect();
    let jobs = (0..n_jobs)
        .map(|j| {
            let mut job = Job::new(j as u64, j + 2);
            job.service = rng.random_range(0..20);
            job.delivery = vec![rng.random_range(0..5), rng.random_range(0..3)];
            job.pickup = vec![rng.random_range(0..4), 0];
            if rng.random_bool(0.2) {
                job.skills = vec![rng.random_range(1..3)];
            }
            job.priority = if rng.random_bool(0.2) { 5 } else { 0 };
            job.time_windows = (0..rng.random_range(0..3)).map(|_| tw(rng)).collect();
            job
        })
        .collect();
    let shipments = (0..n_ship)
        .map(|s| {
            let mut pick = ShipmentStep::new(s as u64, n_jobs + 2 + 2 * s);
            let mut drop = ShipmentStep::new(s as u64, n_jobs + 3 + 2 * s);
            pick.service = 5;
            drop.time_windows = vec![tw(rng)];
            Shipment {
                pickup: pick,
                delivery: drop,
                amount: vec![rng.random_range(1..6), 1],
                skills: Vec::new(),
                priority: 0,
            }
        })
        .collect();
    Problem {
        vehicles,
        jobs,
        shipments,
        durations: m.clone(),
        distances: Some(m),
    }
}

#[test]
fn random_problems_with_every_feature_pass_the_checker() {
    let mut rng = SmallRng::seed_from_u64(42);
    for round in 0..25 {
        let p = random_problem(&mut rng, 8 + round % 20, round % 5);
        let s = solve(
            &p,
            &SolveOptions {
                seed: round as u64,
                ..opts(150)
            },
        )
        .unwrap();
        if let Err(v) = check_feasibility(&p, &s) {
            panic!("round {round}: {v}\n{s:#?}");
        }
    }
}

#[test]
fn same_seed_same_solution() {
    let mut rng = SmallRng::seed_from_u64(3);
    let p = random_problem(&mut rng, 25, 3);
    for threads in [1, 2] {
        let o = SolveOptions {
            threads,
            ..opts(300)
        };
        let a = solve(&p, &o).unwrap();
        let b = solve(&p, &o).unwrap();
        assert_eq!(a, b, "threads = {threads}");
    }
}

#[test]
fn search_improves_on_the_construction() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut p = random_problem(&mut rng, 40, 0);
    // Plain CVRP: one skill-less, break-less vehicle type with room for everything.
    for v in &mut p.vehicles {
        v.skills = vec![1, 2];
        v.breaks.clear();
        v.max_tasks = None;
        v.time_window = None;
        v.capacity = vec![40, 40];
    }
    for j in &mut p.jobs {
        j.time_windows.clear();
    }
    let (_, first) = solve_checked(&p, 1);
    let (_, later) = solve_checked(&p, 2000);
    assert_eq!(later.unassigned, 0);
    assert_eq!(first.unassigned, 0);
    assert!(later.cost < first.cost, "{} !< {}", later.cost, first.cost);
}

#[test]
fn large_problems_use_granular_insertion_and_stay_feasible() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut p = random_problem(&mut rng, 170, 4);
    let base = p.vehicles.clone();
    for k in 0..12 {
        let mut v = base[k % base.len()].clone();
        v.id = 10 + k as u64;
        v.max_tasks = Some(20);
        p.vehicles.push(v);
    }
    let (s, stats) = solve_checked(&p, 100);
    assert!(stats.served > 60, "{} served", stats.served);
    assert_eq!(stats.served + s.unassigned.len(), 174);
}

#[test]
fn a_vehicle_with_its_own_matrices_travels_and_reports_on_them() {
    // Two depots at 0; the car's matrix is the line, the truck's makes every leg 5x longer
    // (a detour round a low bridge, say) but its distances 2x. Both must be used as given:
    // the checker recomputes each route on the vehicle's own matrices.
    let n = 4;
    let scaled = |name: &str, factor: i64| {
        let data = (0..n * n)
            .map(|k| factor * 10 * ((k / n) as i64 - (k % n) as i64).abs())
            .collect();
        Matrix::new(name, n, data).unwrap()
    };
    let car = Vehicle::new(1, Some(0), Some(0), vec![1]);
    let mut truck = Vehicle::new(2, Some(0), Some(0), vec![1]);
    truck.matrices = Some(std::sync::Arc::new(ProfileMatrices {
        durations: scaled("durations", 5),
        distances: Some(scaled("distances", 2)),
    }));
    let p = problem(n, vec![car, truck], vec![job(1, 1, 1), job(2, 3, 1)]);
    let (s, stats) = solve_checked(&p, 200);
    assert!(s.unassigned.is_empty());
    // The car takes the far job (60 there and back) and the truck the near one (100 on
    // its matrix), rather than the other way round (20 + 300).
    let by_vehicle = |v: usize| s.routes.iter().find(|r| r.vehicle == v).unwrap();
    assert_eq!(served_jobs(by_vehicle(0)), [1]);
    assert_eq!(served_jobs(by_vehicle(1)), [0]);
    assert_eq!(stats.duration, 60 + 100);
    assert_eq!(stats.distance, 60 + 40);

    // Matrices of the wrong size are refused.
    let mut bad = p.clone();
    bad.vehicles[1].matrices = Some(std::sync::Arc::new(ProfileMatrices {
        durations: line(3),
        distances: None,
    }));
    assert!(matches!(bad.validate(), Err(Error::MatrixShape { .. })));
}
