//! A node's bounded history: compact points of its reports' rates, errors and latency,
//! and the statistics of one metrics window.

use std::collections::VecDeque;

use edgeroute_protocol::{
    fleet::{HistoryPoint, WindowStats},
    sync::MetricsWindow,
};

/// How much history the view keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Points kept per node, the one still filling included.
    pub points: usize,
    /// Time one point covers at most: reports arriving within it are merged.
    pub point_ms: u64,
    /// Nodes that get a history; later ones are listed without one.
    pub max_nodes: usize,
}

impl Default for HistoryConfig {
    /// 120 points of 30 s: the last hour. About 6 KB per node, 60 MB for 10,000 nodes.
    fn default() -> Self {
        Self {
            points: 120,
            point_ms: 30_000,
            max_nodes: 10_000,
        }
    }
}

/// A closed history point, kept small because there are `points × nodes` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    at_ms: u64,
    reports: u32,
    window_ms: u32,
    requests: u32,
    client_errors: u32,
    server_errors: u32,
    p50_ms: Option<f32>,
    p99_ms: Option<f32>,
    outbox_depth: u64,
    acked_seq: u64,
}

/// The point still filling: full counts and a histogram, so its percentiles are exact
/// over every report merged into it.
#[derive(Debug, Clone)]
struct OpenPoint {
    started_ms: u64,
    at_ms: u64,
    reports: u32,
    window: MetricsWindow,
    outbox_depth: u64,
    acked_seq: u64,
}

fn narrow(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl OpenPoint {
    fn new(at_ms: u64) -> Self {
        Self {
            started_ms: at_ms,
            at_ms,
            reports: 0,
            window: MetricsWindow::default(),
            outbox_depth: 0,
            acked_seq: 0,
        }
    }

    fn add(&mut self, at_ms: u64, window: &MetricsWindow, outbox_depth: u64, acked_seq: u64) {
        self.at_ms = at_ms;
        self.reports = self.reports.saturating_add(1);
        // Only the totals are charted: keep them, not a map entry per endpoint.
        self.window.window_ms += window.window_ms;
        let totals = self.window.endpoints.entry(String::new()).or_default();
        for counts in window.endpoints.values() {
            totals.requests += counts.requests;
            totals.client_errors += counts.client_errors;
            totals.server_errors += counts.server_errors;
        }
        self.window.latency.merge(&window.latency);
        self.outbox_depth = outbox_depth;
        self.acked_seq = acked_seq;
    }

    fn close(&self) -> Point {
        let stats = window_stats(&self.window);
        Point {
            at_ms: self.at_ms,
            reports: self.reports,
            window_ms: narrow(stats.window_ms),
            requests: narrow(stats.requests),
            client_errors: narrow(stats.client_errors),
            server_errors: narrow(stats.server_errors),
            p50_ms: stats.p50_ms.map(|v| v as f32),
            p99_ms: stats.p99_ms.map(|v| v as f32),
            outbox_depth: self.outbox_depth,
            acked_seq: self.acked_seq,
        }
    }
}

impl Point {
    fn wire(&self) -> HistoryPoint {
        let mut window = counts_stats(
            u64::from(self.window_ms),
            u64::from(self.requests),
            u64::from(self.client_errors),
            u64::from(self.server_errors),
        );
        window.p50_ms = self.p50_ms.map(f64::from);
        window.p99_ms = self.p99_ms.map(f64::from);
        HistoryPoint {
            at_ms: self.at_ms,
            reports: self.reports,
            window,
            outbox_depth: self.outbox_depth,
            acked_seq: self.acked_seq,
        }
    }
}

/// A node's recent reports: closed points, oldest first, and the one filling.
#[derive(Debug, Clone)]
pub struct History {
    closed: VecDeque<Point>,
    open: Option<OpenPoint>,
    config: HistoryConfig,
}

impl History {
    /// An empty history.
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            closed: VecDeque::new(),
            open: None,
            config,
        }
    }

    /// Merge one report received at `at_ms` into the history.
    pub fn add(&mut self, at_ms: u64, window: &MetricsWindow, outbox_depth: u64, acked_seq: u64) {
        let open = match self.open.take() {
            Some(open) if at_ms < open.started_ms.saturating_add(self.config.point_ms) => open,
            Some(full) => {
                self.closed.push_back(full.close());
                OpenPoint::new(at_ms)
            }
            None => OpenPoint::new(at_ms),
        };
        let open = self.open.insert(open);
        open.add(at_ms, window, outbox_depth, acked_seq);
        let keep_closed = self.config.points.saturating_sub(1);
        while self.closed.len() > keep_closed {
            self.closed.pop_front();
        }
    }

    /// Points, oldest first, the one filling last.
    pub fn points(&self) -> Vec<HistoryPoint> {
        let open = self.open.iter().map(|o| o.close().wire());
        self.closed.iter().map(Point::wire).chain(open).collect()
    }

    /// Points held (the one filling included).
    pub fn len(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    /// Whether no report was merged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn counts_stats(
    window_ms: u64,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
) -> WindowStats {
    WindowStats {
        window_ms,
        requests,
        request_rate: if window_ms == 0 {
            0.0
        } else {
            requests as f64 * 1000.0 / window_ms as f64
        },
        client_errors,
        server_errors,
        error_rate: if requests == 0 {
            0.0
        } else {
            server_errors as f64 / requests as f64
        },
        p50_ms: None,
        p99_ms: None,
    }
}

/// The rates and percentiles of one metrics window. Percentiles are the upper bound of the
/// histogram bucket they fall in, as `histogram_quantile` reads them without interpolation.
pub fn window_stats(window: &MetricsWindow) -> WindowStats {
    let client_errors = window.endpoints.values().map(|e| e.client_errors).sum();
    let mut stats = counts_stats(
        window.window_ms,
        window.requests(),
        client_errors,
        window.server_errors(),
    );
    stats.p50_ms = window.latency.quantile_ms(0.5);
    stats.p99_ms = window.latency.quantile_ms(0.99);
    stats
}
