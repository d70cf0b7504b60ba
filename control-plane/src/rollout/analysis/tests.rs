use edgeroute_protocol::sync::{EndpointCounts, ShadowCounts};

use super::*;

fn policy() -> RolloutSpec {
    RolloutSpec {
        min_requests: 100,
        max_error_rate: 0.01,
        max_p99_latency_ms: 250,
        max_shadow_diff_rate: 0.02,
        ..RolloutSpec::default()
    }
}

/// An arm of `nodes` nodes that served `requests` route requests, `errors` of them 5xx,
/// each taking `ms`.
fn arm(nodes: u32, requests: u64, errors: u64, ms: f64) -> Arm {
    let mut window = MetricsWindow::default();
    window.endpoints.insert(
        "route".into(),
        EndpointCounts {
            requests,
            server_errors: errors,
            ..EndpointCounts::default()
        },
    );
    for _ in 0..requests {
        window.latency.observe(ms);
    }
    Arm {
        window,
        nodes,
        reporting_nodes: nodes,
    }
}

fn judge_graph(canary: &Arm, stable: &Arm) -> Verdict {
    judge(&policy(), RolloutTarget::Graph, canary, stable, 42)
}

#[test]
fn a_healthy_canary_passes_with_its_figures() {
    let v = judge_graph(&arm(1, 1000, 1, 3.0), &arm(3, 3000, 2, 3.0));
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
    assert_eq!(v.at_ms, 42);
    assert_eq!(v.canary.requests, 1000);
    assert_eq!(v.stable.errors, 2);
    assert_eq!(v.canary.p99_ms, Some(3.0));
    assert!(
        v.reason.contains("shadow check skipped"),
        "no shadow counts must be said: {}",
        v.reason
    );
}

#[test]
fn a_raised_error_rate_fails() {
    let v = judge_graph(&arm(1, 1000, 80, 3.0), &arm(3, 3000, 3, 3.0));
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
    assert!(v.reason.contains("error rate canary 8.00%"), "{}", v.reason);
}

#[test]
fn no_segment_answers_count_as_errors_for_graphs_only() {
    let mut canary = arm(1, 500, 0, 3.0);
    if let Some(route) = canary.window.endpoints.get_mut("route") {
        route.client_errors = 500;
        route.codes.insert("NoSegment".into(), 500);
    }
    let stable = arm(2, 1000, 0, 3.0);
    let v = judge_graph(&canary, &stable);
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
    assert_eq!(v.canary.errors, 500);
    let v = judge(&policy(), RolloutTarget::Agent, &canary, &stable, 1);
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
}

#[test]
fn one_error_in_fifty_against_none_is_not_a_failure() {
    let p = RolloutSpec {
        min_requests: 50,
        ..policy()
    };
    let v = judge(
        &p,
        RolloutTarget::Graph,
        &arm(1, 50, 1, 3.0),
        &arm(1, 50, 0, 3.0),
        1,
    );
    assert_ne!(v.kind, VerdictKind::Fail, "{}", v.reason);
}

#[test]
fn a_tiny_significant_difference_on_a_huge_sample_passes() {
    // 0.30% vs 0.20% on millions is significant, but far under the 1% budget.
    let v = judge_graph(
        &arm(1, 2_000_000, 6_000, 3.0),
        &arm(3, 6_000_000, 12_000, 3.0),
    );
    assert!(two_proportion_z(6_000, 2_000_000, 12_000, 6_000_000) > Z_99);
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
    // A region already over the limit everywhere does not fail the canary for it either.
    let v = judge_graph(
        &arm(1, 2_000_000, 61_000, 3.0),
        &arm(3, 6_000_000, 180_000, 3.0),
    );
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
}

#[test]
fn a_slow_p99_fails_only_over_both_the_ceiling_and_stable() {
    let v = judge_graph(&arm(1, 1000, 0, 900.0), &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
    assert!(v.reason.contains("p99 canary 1000 ms"), "{}", v.reason);
    // Slower than stable but under the ceiling: fine.
    let v = judge_graph(&arm(1, 1000, 0, 150.0), &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
    // Over the ceiling but no slower than stable: the canary is not the cause.
    let v = judge_graph(&arm(1, 1000, 0, 900.0), &arm(3, 3000, 0, 900.0));
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
}

#[test]
fn too_few_requests_in_either_arm_is_inconclusive() {
    let v = judge_graph(&arm(1, 99, 99, 3.0), &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!(v.reason.contains("too few requests"), "{}", v.reason);
    let v = judge_graph(&arm(1, 1000, 0, 3.0), &arm(3, 10, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    // Enough requests but too few latencies for a p99.
    let p = RolloutSpec {
        min_requests: 20,
        ..policy()
    };
    let v = judge(
        &p,
        RolloutTarget::Graph,
        &arm(1, 50, 0, 3.0),
        &arm(1, 500, 0, 3.0),
        1,
    );
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!(v.reason.contains("p99 needs"), "{}", v.reason);
}

#[test]
fn a_silent_canary_holds_and_never_passes() {
    let mut canary = arm(2, 0, 0, 3.0);
    canary.reporting_nodes = 0;
    let v = judge_graph(&canary, &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Silent, "{}", v.reason);
    // One of two canaries silent, the other healthy: still not a pass.
    let mut canary = arm(2, 1000, 0, 3.0);
    canary.reporting_nodes = 1;
    let v = judge_graph(&canary, &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Silent, "{}", v.reason);
    // ... but clear evidence from the one that reports fails it.
    let mut canary = arm(2, 1000, 300, 3.0);
    canary.reporting_nodes = 1;
    let v = judge_graph(&canary, &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
}

#[test]
fn shadow_differences_fail_graph_rollouts() {
    let mut canary = arm(1, 1000, 0, 3.0);
    canary.window.shadow = Some(ShadowCounts {
        against_version: "v1".into(),
        compared: 200,
        differ: 30,
        lost_routes: 10,
    });
    let v = judge_graph(&canary, &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
    assert_eq!(
        (v.canary.shadow_compared, v.canary.shadow_differ),
        (200, 30)
    );
    // 1 in 200 is within the 2% budget.
    canary.window.shadow = Some(ShadowCounts {
        against_version: "v1".into(),
        compared: 200,
        differ: 1,
        lost_routes: 0,
    });
    let v = judge_graph(&canary, &arm(3, 3000, 0, 3.0));
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
    assert!(v.reason.contains("shadow answers differ"), "{}", v.reason);
}

#[test]
fn without_a_stable_arm_the_ceilings_decide() {
    let none = Arm::default();
    let v = judge_graph(&arm(4, 1000, 2, 3.0), &none);
    assert_eq!(v.kind, VerdictKind::Pass, "{}", v.reason);
    let v = judge_graph(&arm(4, 1000, 50, 3.0), &none);
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
    let v = judge_graph(&arm(4, 1000, 0, 600.0), &none);
    assert_eq!(v.kind, VerdictKind::Fail, "{}", v.reason);
}

#[test]
fn the_statistics_match_known_values() {
    // Wilson 99% (one-sided z = 2.326) of 0/100 and 50/100, checked against the closed form.
    assert!(wilson_lower(0, 100, Z_99) < 1e-12);
    let w = wilson_lower(50, 100, Z_99);
    assert!((w - 0.3866).abs() < 1e-3, "{w}");
    assert_eq!(wilson_lower(1, 0, Z_99), 0.0);
    // z of 10% vs 5% on 1000 each: 0.05 / sqrt(0.075 * 0.925 * 0.002) = 4.24.
    let z = two_proportion_z(100, 1000, 50, 1000);
    assert!((z - 4.24).abs() < 0.01, "{z}");
    assert_eq!(two_proportion_z(0, 10, 0, 10), 0.0);
}
