//! Solves a few real Solomon instances briefly and runs each solution through the
//! independent feasibility checker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edgeroute_tests::data::shared_data;
use edgeroute_tests::vrp_instances::{BenchInstance, Family, load, load_bks};
use edgeroute_vrp::{SolveOptions, check_feasibility, solve};

#[test]
fn solomon_instances_solve_feasibly_near_the_best_known() {
    let (Some(solomon), Some(bks)) = (
        shared_data("vrp/solomon"),
        shared_data("vrp/solomon_bks_distance_objective.csv"),
    ) else {
        return;
    };
    let bks = load_bks(&bks).unwrap();
    for name in ["C101", "R101", "RC104", "R201"] {
        let inst = load(&solomon.join(format!("{name}.txt")), Family::Solomon).unwrap();
        let options = SolveOptions {
            time_limit: Duration::from_millis(800),
            seed: 1,
            threads: 2,
            max_iterations: None,
        };
        let solution = solve(&inst.problem, &options).unwrap();
        let stats =
            check_feasibility(&inst.problem, &solution).unwrap_or_else(|v| panic!("{name}: {v}"));
        assert_eq!(stats.unassigned, 0, "{name}");
        let gap = inst.distance(&solution) / bks[name].distance - 1.0;
        // A loose bound: the test is about feasibility, the benchmark about quality; it
        // still fails if the search stops improving on the construction.
        assert!(
            gap < 0.08,
            "{name}: gap {:.2}% with {} vehicles",
            100.0 * gap,
            BenchInstance::vehicles_used(&solution)
        );
    }
}
