//! The metrics of admission control (see `api::admission`), and the rate-limited log line
//! of a shedding agent.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels of shed requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `queue_full`, `queue_timeout`, `queue_delay` or `runtime_lag` (see
    /// `api::admission::Shed`).
    pub reason: &'static str,
}

/// Admission control (see `api::admission`): requests shed, the request queue, the solve
/// queue. Registered in one block by `OverloadMetrics::register`.
#[derive(Debug, Default, Clone)]
pub struct OverloadMetrics {
    /// Requests refused with 503 before any work, by reason.
    pub shed: Family<ShedLabels, Counter>,
    /// Routing API requests waiting for a slot.
    pub queue_depth: Gauge,
    /// Routing API requests holding a slot.
    pub admitted: Gauge,
    /// `POST /optimize` requests waiting for a solve slot.
    pub solve_queue_depth: Gauge,
    /// Solves running.
    pub solves_running: Gauge,
    /// `POST /optimize` requests refused because the solve queue was full.
    pub solves_rejected: Counter,
    /// Sheds since the last "shedding load" log line, and when that line was written.
    shed_log: std::sync::Arc<ShedLog>,
}

/// One warning per [`SHED_LOG_EVERY`] while shedding, not one per refused request: under
/// overload a log line per 503 costs as much CPU as the refusal itself (measured: 42 MB of
/// logs in 9 s) and competes with the requests still being served.
#[derive(Debug, Default)]
struct ShedLog {
    pending: std::sync::atomic::AtomicU64,
    /// Milliseconds since [`ShedLog::base`] of the last line; 0: none yet.
    last_ms: std::sync::atomic::AtomicU64,
    base: std::sync::OnceLock<std::time::Instant>,
}

/// How often a shedding agent says so in its log.
const SHED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl ShedLog {
    fn note(&self, reason: &'static str) {
        let base = *self.base.get_or_init(std::time::Instant::now);
        let now_ms = u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(refused) = self.due(now_ms) {
            tracing::warn!(
                refused,
                latest_reason = reason,
                "shedding load: requests refused with 503 since the last report \
                 (edgeroute_agent_http_shed_total has them by reason)"
            );
        }
    }

    /// Counts one shed at `now_ms`; returns the sheds to report when a line is due (the
    /// first shed, then at most one line per [`SHED_LOG_EVERY`]).
    fn due(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_add(1, Relaxed);
        // +1 so that a first shed at 0 ms is told apart from "never reported".
        let now = now_ms.saturating_add(1);
        let last = self.last_ms.load(Relaxed);
        let every = u64::try_from(SHED_LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return None;
        }
        // One thread wins the line; the others' sheds are in the count it takes.
        self.last_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .ok()
            .map(|_| self.pending.swap(0, Relaxed))
    }
}

impl OverloadMetrics {
    /// Count one request shed for `reason`.
    pub fn shed_for(&self, reason: &'static str) {
        self.shed.get_or_create(&ShedLabels { reason }).inc();
        self.shed_log.note(reason);
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        // At zero from the start, so `rate()` and alerts see the family before the first shed.
        for reason in ["queue_full", "queue_timeout", "queue_delay", "runtime_lag"] {
            let _ = self.shed.get_or_create(&ShedLabels { reason });
        }
        registry.register(
            "http_shed",
            "Requests refused with 503 by admission control, by reason",
            self.shed.clone(),
        );
        registry.register(
            "admission_queue_depth",
            "Routing API requests waiting for an admission slot",
            self.queue_depth.clone(),
        );
        registry.register(
            "admission_running",
            "Routing API requests holding an admission slot",
            self.admitted.clone(),
        );
        registry.register(
            "solve_queue_depth",
            "POST /optimize requests waiting for a solve slot",
            self.solve_queue_depth.clone(),
        );
        registry.register(
            "solves_running",
            "POST /optimize solves running",
            self.solves_running.clone(),
        );
        registry.register(
            "solves_rejected",
            "POST /optimize requests refused with 503 because the solve queue was full",
            self.solves_rejected.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_is_reported_once_per_period_with_the_count_since_the_last_line() {
        let log = ShedLog::default();
        let every = SHED_LOG_EVERY.as_millis() as u64;
        assert_eq!(log.due(0), Some(1), "the first shed is reported at once");
        for at in 1..1000 {
            assert_eq!(log.due(at), None, "not again within the period");
        }
        assert_eq!(
            log.due(every + 1),
            Some(1000),
            "the next line counts every shed since the last"
        );
        assert_eq!(log.due(every + 2), None);
    }
}
