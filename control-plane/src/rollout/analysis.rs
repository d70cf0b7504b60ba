//! The judge of one analysis window: pure, so the center's graph rollouts and the
//! Kubernetes controller's agent rollouts (through `POST /api/v1/regions/{region}/analysis`)
//! decide the same way on the same figures.
//!
//! # The rules
//! Checks run in this order; the first that decides wins.
//! 1. **Silence.** No canary node reported during the window: [`VerdictKind::Silent`].
//! 2. **Minimum sample.** Fewer than `min_requests` requests in either arm (the stable arm
//!    only when it has nodes): [`VerdictKind::Inconclusive`]. Nothing is failed on a
//!    handful of requests.
//! 3. **Error rate** (5xx; for graph rollouts also `NoRoute` and `NoSegment` answers). With
//!    a stable arm: a one-sided two-proportion z-test at 99% confidence (z > 2.326) says
//!    whether the canary is worse at all, and the difference must also matter: the canary
//!    crosses `max_error_rate` while stable stays under it, or it adds at least
//!    `max_error_rate` on top of stable's rate. So a tiny but significant difference on a
//!    huge sample, or a region that is uniformly bad, does not fail the canary. Without a
//!    stable arm (the last step, or a one-node region): the 99% Wilson lower bound of the
//!    canary's rate must exceed `max_error_rate`.
//! 4. **p99 latency**, from the merged histograms, only with at least
//!    [`MIN_LATENCY_SAMPLES`] latencies in each arm (a p99 of fewer is one request's
//!    latency): the canary fails when its p99 exceeds `max(stable p99 x`
//!    [`P99_FACTOR`]`, max_p99_latency_ms)`: it must be both clearly slower than stable and
//!    over the policy's ceiling. Without a stable arm, over the ceiling alone. Too few
//!    latencies leaves the verdict inconclusive.
//! 5. **Shadow answers** (graph rollouts, when the canary reported [`ShadowCounts`]): the
//!    99% Wilson lower bound of `differ / compared` above `max_shadow_diff_rate` fails.
//!    Without shadow counts (agents that do not shadow) the check is skipped and the
//!    reason says so.
//!
//! A check that fails with enough data fails the window even when other canary nodes are
//! silent (that is evidence, not silence); a window with silent canary nodes never passes.
//!
//! [`ShadowCounts`]: edgeroute_protocol::sync::ShadowCounts

use edgeroute_protocol::{
    crd::RolloutSpec,
    rollout::{ArmFigures, RolloutTarget, Verdict, VerdictKind},
    sync::MetricsWindow,
};

/// One-sided z for 99% confidence.
pub const Z_99: f64 = 2.326_347_874;
/// Latencies each arm needs before its p99 is judged.
pub const MIN_LATENCY_SAMPLES: u64 = 100;
/// How much slower than stable's p99 the canary's may be (together with the ceiling).
pub const P99_FACTOR: f64 = 1.5;
/// The OSRM codes a graph rollout counts as errors: a graph that lost roads answers these.
pub const GRAPH_ERROR_CODES: [&str; 2] = ["NoRoute", "NoSegment"];

/// What one arm served during the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arm {
    /// Every window its nodes reported, merged.
    pub window: MetricsWindow,
    /// Nodes in the arm.
    pub nodes: u32,
    /// Nodes that reported during the window.
    pub reporting_nodes: u32,
}

/// Errors of a window as a rollout of `target` counts them.
pub fn errors(window: &MetricsWindow, target: RolloutTarget) -> u64 {
    window
        .endpoints
        .values()
        .map(|e| {
            let codes = match target {
                RolloutTarget::Graph => GRAPH_ERROR_CODES
                    .iter()
                    .map(|c| e.codes.get(*c).copied().unwrap_or(0))
                    .sum(),
                RolloutTarget::Agent => 0,
            };
            e.server_errors.saturating_add(codes).min(e.requests)
        })
        .sum()
}

fn figures(arm: &Arm, target: RolloutTarget) -> ArmFigures {
    let shadow = arm.window.shadow.as_ref();
    ArmFigures {
        nodes: arm.nodes,
        reporting_nodes: arm.reporting_nodes,
        requests: arm.window.requests(),
        errors: errors(&arm.window, target),
        p99_ms: arm.window.latency.quantile_ms(0.99),
        shadow_compared: shadow.map_or(0, |s| s.compared),
        shadow_differ: shadow.map_or(0, |s| s.differ),
    }
}

/// The lower bound of the Wilson score interval of `k` successes in `n` at one-sided `z`.
pub fn wilson_lower(k: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p) = (n as f64, k.min(n) as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The z statistic of "the first proportion is larger than the second" (pooled variance);
/// zero when neither arm has an error (nothing to tell apart).
pub fn two_proportion_z(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 0.0;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 { 0.0 } else { (p1 - p2) / se }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

/// Judge one window: is the canary arm worse than the stable arm under `policy`?
///
/// `canary` and `stable` hold what each arm's nodes reported since the step started;
/// `stable.nodes == 0` means there is no stable arm to compare with (the last step, or a
/// one-node region), and the canary is then judged on the policy's ceilings alone. The
/// verdict carries both arms' figures and a reason naming the statistic that decided.
/// Stable API: the Kubernetes controller calls it too.
pub fn judge(
    policy: &RolloutSpec,
    target: RolloutTarget,
    canary: &Arm,
    stable: &Arm,
    now_ms: u64,
) -> Verdict {
    let c = figures(canary, target);
    let mut s = figures(stable, target);
    s.shadow_compared = 0;
    s.shadow_differ = 0;
    let verdict = |kind, reason: String| Verdict {
        kind,
        reason,
        at_ms: now_ms,
        canary: c.clone(),
        stable: s.clone(),
    };
    if c.nodes == 0 {
        return verdict(
            VerdictKind::Inconclusive,
            "the rollout has no canary node to judge".into(),
        );
    }
    if c.reporting_nodes == 0 {
        return verdict(
            VerdictKind::Silent,
            format!(
                "none of the {} canary nodes reported during the window: holding (silence \
                 neither passes nor fails a canary)",
                c.nodes
            ),
        );
    }
    let has_stable = s.nodes > 0;
    let min = u64::from(policy.min_requests);
    if c.requests < min || (has_stable && s.requests < min) {
        return verdict(
            VerdictKind::Inconclusive,
            format!(
                "too few requests to judge: canary {} and stable {}, each arm needs {min}",
                c.requests,
                if has_stable {
                    s.requests.to_string()
                } else {
                    "(none)".into()
                }
            ),
        );
    }

    let mut failures: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut passed: Vec<String> = Vec::new();
    let max_err = policy.max_error_rate;

    // Error rate.
    let pc = rate(c.errors, c.requests);
    if has_stable {
        let ps = rate(s.errors, s.requests);
        let z = two_proportion_z(c.errors, c.requests, s.errors, s.requests);
        let significant = z > Z_99;
        let matters = pc - ps >= max_err || (pc > max_err && ps <= max_err);
        let text = format!(
            "error rate canary {} ({}/{}) vs stable {} ({}/{}), z = {z:.2}",
            pct(pc),
            c.errors,
            c.requests,
            pct(ps),
            s.errors,
            s.requests
        );
        if significant && matters {
            failures.push(format!(
                "{text}: worse with 99% confidence and beyond the {} limit",
                pct(max_err)
            ));
        } else {
            passed.push(text);
        }
    } else {
        let lower = wilson_lower(c.errors, c.requests, Z_99);
        let text = format!(
            "error rate canary {} ({}/{}), 99% lower bound {} (no stable arm)",
            pct(pc),
            c.errors,
            c.requests,
            pct(lower)
        );
        if lower > max_err {
            failures.push(format!("{text}: above the {} limit", pct(max_err)));
        } else {
            passed.push(text);
        }
    }

    // p99 latency.
    let (cn, sn) = (canary.window.latency.total(), stable.window.latency.total());
    let ceiling = f64::from(policy.max_p99_latency_ms);
    if cn < MIN_LATENCY_SAMPLES || (has_stable && sn < MIN_LATENCY_SAMPLES) {
        missing.push(format!(
            "p99 needs {MIN_LATENCY_SAMPLES} latencies per arm (canary {cn}{})",
            if has_stable {
                format!(", stable {sn}")
            } else {
                String::new()
            }
        ));
    } else if let Some(cp) = c.p99_ms {
        let limit = match (has_stable, s.p99_ms) {
            (true, Some(sp)) => (sp * P99_FACTOR).max(ceiling),
            _ => ceiling,
        };
        let text = format!(
            "p99 canary {cp} ms vs stable {}, limit {limit} ms",
            s.p99_ms.map_or_else(|| "-".into(), |p| format!("{p} ms"))
        );
        if cp > limit {
            failures.push(format!("{text}: too slow"));
        } else {
            passed.push(text);
        }
    }

    // Shadow answers.
    if target == RolloutTarget::Graph {
        if c.shadow_compared == 0 {
            passed.push("shadow check skipped: no shadow comparisons reported".into());
        } else {
            let lower = wilson_lower(c.shadow_differ, c.shadow_compared, Z_99);
            let text = format!(
                "shadow answers differ {} ({}/{}), 99% lower bound {}",
                pct(rate(c.shadow_differ, c.shadow_compared)),
                c.shadow_differ,
                c.shadow_compared,
                pct(lower)
            );
            if lower > policy.max_shadow_diff_rate {
                failures.push(format!(
                    "{text}: above the {} limit",
                    pct(policy.max_shadow_diff_rate)
                ));
            } else {
                passed.push(text);
            }
        }
    }

    if !failures.is_empty() {
        return verdict(VerdictKind::Fail, failures.join("; "));
    }
    if c.reporting_nodes < c.nodes {
        return verdict(
            VerdictKind::Silent,
            format!(
                "{} of {} canary nodes did not report during the window: holding ({})",
                c.nodes - c.reporting_nodes,
                c.nodes,
                passed.join("; ")
            ),
        );
    }
    if !missing.is_empty() {
        return verdict(
            VerdictKind::Inconclusive,
            format!("{} ({})", missing.join("; "), passed.join("; ")),
        );
    }
    verdict(VerdictKind::Pass, passed.join("; "))
}

#[cfg(test)]
mod tests;
