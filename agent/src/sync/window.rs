//! The metrics window a report carries: requests, errors by code and latency since the last
//! report the center accepted. A report that fails puts its window back, so nothing the
//! agent served goes uncounted.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use edgeroute_protocol::sync::{EndpointCounts, MetricsWindow, ShadowCounts};

use crate::routing::shadow::Comparison;

/// The endpoints a window counts by name; every other path folds into `other` so a client
/// cannot grow the report.
const ENDPOINTS: [&str; 8] = [
    "route", "table", "nearest", "trip", "match", "optimize", "plans", "admin",
];

/// The window's short endpoint name of a route template (`/route/v1/{profile}/...`).
pub fn endpoint_name(template: &str) -> &'static str {
    let first = template
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    ENDPOINTS
        .iter()
        .find(|e| **e == first)
        .copied()
        .unwrap_or("other")
}

/// Accumulates the current window.
#[derive(Debug)]
pub struct WindowRecorder {
    inner: Mutex<(MetricsWindow, Instant)>,
}

impl Default for WindowRecorder {
    fn default() -> Self {
        Self {
            inner: Mutex::new((MetricsWindow::default(), Instant::now())),
        }
    }
}

impl WindowRecorder {
    /// Count one answered request. Health, metrics and status probes are not counted: the
    /// window is about the service clients use.
    pub fn record(&self, template: &str, status: u16, code: Option<&str>, latency: Duration) {
        let name = endpoint_name(template);
        if name == "other" && !template.is_empty() && template != crate::metrics::UNMATCHED {
            // Operational endpoints (/healthz, /metrics, /v1/status, ...).
            return;
        }
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let window = &mut guard.0;
        // Looked up before inserting: `entry` would allocate the name on every request.
        if !window.endpoints.contains_key(name) {
            window
                .endpoints
                .insert(name.to_owned(), EndpointCounts::default());
        }
        let Some(counts) = window.endpoints.get_mut(name) else {
            return;
        };
        counts.requests += 1;
        if (400..500).contains(&status) {
            counts.client_errors += 1;
        } else if status >= 500 {
            counts.server_errors += 1;
        }
        if let Some(code) = code {
            *counts.codes.entry(code.to_owned()).or_default() += 1;
        }
        window.latency.observe(latency.as_secs_f64() * 1000.0);
    }

    /// Count one request re-answered on the shadow graph `version` (see
    /// [`crate::routing::shadow`]).
    pub fn record_shadow(&self, version: &str, comparison: Comparison) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let counts = guard.0.shadow.get_or_insert_with(|| ShadowCounts {
            against_version: version.to_owned(),
            ..ShadowCounts::default()
        });
        counts.compared += 1;
        if comparison.differs() {
            counts.differ += 1;
        }
        if comparison == Comparison::LostRoute {
            counts.lost_routes += 1;
        }
    }

    /// Take the window so far and start a new one.
    pub fn take(&self) -> MetricsWindow {
        let Ok(mut guard) = self.inner.lock() else {
            return MetricsWindow::default();
        };
        let (mut window, started) =
            std::mem::replace(&mut *guard, (MetricsWindow::default(), Instant::now()));
        window.window_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        window
    }

    /// Put back a window whose report failed: it is sent with the next one.
    pub fn restore(&self, window: MetricsWindow) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (current, started) = &mut *guard;
        // The current window's length is measured from `started` at the next take; move
        // `started` back by the restored window's length so both are covered.
        if let Some(earlier) = started.checked_sub(Duration::from_millis(window.window_ms)) {
            *started = earlier;
        }
        let window_ms = current.window_ms;
        current.merge(&window);
        current.window_ms = window_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_endpoint_and_restored_after_a_failed_report() {
        let w = WindowRecorder::default();
        w.record(
            "/route/v1/{profile}/{coordinates}",
            200,
            None,
            Duration::from_micros(800),
        );
        w.record(
            "/route/v1/{profile}/{coordinates}",
            400,
            Some("NoRoute"),
            Duration::from_millis(1),
        );
        w.record(
            "/optimize",
            503,
            Some("OutboxFull"),
            Duration::from_millis(3),
        );
        w.record("/healthz", 200, None, Duration::from_millis(0));
        w.record("unmatched", 404, Some("NotFound"), Duration::from_millis(0));
        let first = w.take();
        assert_eq!(first.requests(), 4, "health probes are not counted");
        assert_eq!(first.endpoints["route"].client_errors, 1);
        assert_eq!(first.endpoints["route"].codes["NoRoute"], 1);
        assert_eq!(first.endpoints["optimize"].server_errors, 1);
        assert_eq!(first.endpoints["other"].requests, 1);
        assert_eq!(first.latency.total(), 4);
        w.record(
            "/table/v1/{profile}/{coordinates}",
            200,
            None,
            Duration::from_millis(2),
        );
        w.record_shadow("old", Comparison::LostRoute);
        w.record_shadow("old", Comparison::Same);
        w.restore(first);
        let second = w.take();
        assert_eq!(second.requests(), 5);
        assert_eq!(w.take().requests(), 0);
        // Shadow counts survive a failed report like the rest.
        let expected = ShadowCounts {
            against_version: "old".to_owned(),
            compared: 2,
            differ: 1,
            lost_routes: 1,
        };
        assert_eq!(second.shadow.as_ref(), Some(&expected));
        w.restore(second);
        w.record_shadow("old", Comparison::DurationChanged);
        let third = w.take();
        assert_eq!(
            third.shadow,
            Some(ShadowCounts {
                compared: 3,
                differ: 2,
                ..expected
            })
        );
        assert_eq!(w.take().shadow, None);
    }
}
