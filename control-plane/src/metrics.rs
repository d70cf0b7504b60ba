//! Prometheus metrics of the controller.
//!
//! Reconciles are counted and timed with a drop-based timer, so an early return or a `?` in
//! `reconcile` still records its duration; failures carry the error variant as a label so an
//! alert can tell a conflict storm from an unreachable API server.

use std::sync::Arc;
use std::time::Instant;

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
        Self {
            registry,
            reconciliations,
            failures,
            reconcile_duration,
            leader,
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
}
