//! Prometheus metrics of the controller.
//!
//! Reconciles are counted and timed with a drop-based timer, so an early return or a `?` in
//! `reconcile` still records its duration; failures carry the error variant as a label so an
//! alert can tell a conflict storm from an unreachable API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgeroute_protocol::rollout::{RolloutPhase, VerdictKind};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The `Error` variant, in snake case.
    pub error: String,
}

/// Label set of the rollout gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The rollout phase.
    pub phase: String,
}

/// Label set of the verdict counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// The verdict kind.
    pub kind: String,
}

const PHASES: [RolloutPhase; 5] = [
    RolloutPhase::Progressing,
    RolloutPhase::Paused,
    RolloutPhase::Holding,
    RolloutPhase::Promoted,
    RolloutPhase::RolledBack,
];

/// The controller's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciliations: Counter,
    /// Reconciles that failed, by error variant.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Histogram,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Regions whose current or last agent rollout is in each phase.
    pub rollouts: Family<PhaseLabels, Gauge>,
    /// Verdicts received from the center, by kind.
    pub verdicts: Family<VerdictLabels, Counter>,
    /// Analyses that got no verdict, by cause.
    pub judge_errors: Family<ErrorLabels, Counter>,
    /// The phase of each region's rollout, from which `rollouts` is counted.
    phases: Mutex<HashMap<String, RolloutPhase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciliations = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let leader = Gauge::default();
        let mut registry = Registry::with_prefix("edgeroute_controller");
        registry.register(
            "reconciliations",
            "EdgeRegion reconciles started",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "EdgeRegion reconciles that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of EdgeRegion reconciles",
            reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let rollouts = Family::<PhaseLabels, Gauge>::default();
        for phase in PHASES {
            // Every phase is exposed (at 0) so dashboards and alerts see the series.
            let _ = rollouts.get_or_create(&PhaseLabels {
                phase: phase.as_str().into(),
            });
        }
        let verdicts = Family::<VerdictLabels, Counter>::default();
        let judge_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "rollouts",
            "Regions whose current or last agent rollout is in each phase",
            rollouts.clone(),
        );
        registry.register(
            "rollout_verdicts",
            "Canary verdicts received from the center, by kind",
            verdicts.clone(),
        );
        registry.register(
            "judge_errors",
            "Canary analyses that got no verdict from the center, by cause",
            judge_errors.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            reconcile_duration,
            leader,
            rollouts,
            verdicts,
            judge_errors,
            phases: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Counts a reconcile and returns a timer that records its duration when dropped.
    pub fn count_and_measure(self: &Arc<Self>) -> ReconcileMeasurer {
        self.reconciliations.inc();
        ReconcileMeasurer {
            start: Instant::now(),
            metrics: Arc::clone(self),
        }
    }

    /// Counts a failed reconcile under its error label.
    pub fn reconcile_failure(&self, error: &'static str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }

    /// Records the phase of `region`'s rollout (`None`: it has none, or it was deleted).
    pub fn observe_rollout(&self, region: &str, phase: Option<RolloutPhase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Some(p) => phases.insert(region.to_owned(), p),
            None => phases.remove(region),
        };
        for phase in PHASES {
            let n = phases.values().filter(|p| **p == phase).count();
            self.rollouts
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a verdict received from the center.
    pub fn verdict(&self, kind: VerdictKind) {
        self.verdicts
            .get_or_create(&VerdictLabels {
                kind: kind.as_str().into(),
            })
            .inc();
    }

    /// Counts an analysis that got no verdict.
    pub fn judge_error(&self, error: &'static str) {
        self.judge_errors
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Records the reconcile duration when dropped.
pub struct ReconcileMeasurer {
    start: Instant,
    metrics: Arc<Metrics>,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_and_failures_show_up_in_the_exposition() {
        let metrics = Arc::new(Metrics::default());
        drop(metrics.count_and_measure());
        metrics.reconcile_failure("kube");
        let text = metrics.encode().unwrap();
        assert!(text.contains("edgeroute_controller_reconciliations_total 1"));
        assert!(text.contains("edgeroute_controller_reconcile_duration_seconds_count 1"));
        assert!(text.contains(r#"edgeroute_controller_reconcile_failures_total{error="kube"} 1"#));
    }

    #[test]
    fn rollout_phases_are_counted_per_region_and_verdicts_by_kind() {
        let metrics = Metrics::default();
        metrics.observe_rollout("ns/a", Some(RolloutPhase::Holding));
        metrics.observe_rollout("ns/b", Some(RolloutPhase::Holding));
        metrics.observe_rollout("ns/b", Some(RolloutPhase::RolledBack));
        metrics.verdict(VerdictKind::Silent);
        metrics.judge_error("unreachable");
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"edgeroute_controller_rollouts{phase="Holding"} 1"#));
        assert!(text.contains(r#"edgeroute_controller_rollouts{phase="RolledBack"} 1"#));
        assert!(text.contains(r#"edgeroute_controller_rollouts{phase="Promoted"} 0"#));
        assert!(text.contains(r#"edgeroute_controller_rollout_verdicts_total{kind="Silent"} 1"#));
        assert!(text.contains(r#"edgeroute_controller_judge_errors_total{error="unreachable"} 1"#));
        metrics.observe_rollout("ns/a", None);
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"edgeroute_controller_rollouts{phase="Holding"} 0"#));
    }
}
