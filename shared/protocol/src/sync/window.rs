//! The metrics window every report carries: requests by endpoint, a latency histogram on
//! fixed buckets (so the center adds many agents' windows bucket by bucket), and the shadow
//! comparison of a graph canary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds, in milliseconds, of the latency histogram buckets every agent reports
/// (the last bucket, `+Inf`, is implicit). Fixed so the center can add histograms of many
/// agents and windows bucket by bucket.
pub const LATENCY_BUCKETS_MS: [f64; 16] = [
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0,
    5_000.0, 10_000.0,
];

/// What an agent served during one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsWindow {
    /// Length of the window in milliseconds.
    pub window_ms: u64,
    /// Counts by endpoint template (`route`, `table`, `nearest`, `trip`, `optimize`, ...).
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointCounts>,
    /// Latency of every answered request, bucketed by [`LATENCY_BUCKETS_MS`].
    #[serde(default)]
    pub latency: Histogram,
    /// Requests re-answered on a shadow graph ([`super::Directives::shadow`]) during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCounts>,
}

/// How a canary's answers compare with the previous graph's on a sample of its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCounts {
    /// The graph version the sample was re-answered on.
    pub against_version: String,
    /// Requests re-answered on the shadow graph.
    pub compared: u64,
    /// Answers that differ materially: a route the shadow graph found is missing, or a
    /// duration changed by more than the directive's tolerance.
    pub differ: u64,
    /// Of `differ`, answers where the shadow graph had a route and the served graph had none.
    pub lost_routes: u64,
}

impl ShadowCounts {
    /// Add another window's counts (a different `against_version` replaces this one's: the
    /// counts then mix two comparisons, which only happens across a directive change).
    pub fn merge(&mut self, other: &ShadowCounts) {
        if self.against_version.is_empty() {
            self.against_version.clone_from(&other.against_version);
        }
        self.compared += other.compared;
        self.differ += other.differ;
        self.lost_routes += other.lost_routes;
    }
}

impl MetricsWindow {
    /// Requests of every endpoint.
    pub fn requests(&self) -> u64 {
        self.endpoints.values().map(|e| e.requests).sum()
    }

    /// Server errors (5xx) of every endpoint.
    pub fn server_errors(&self) -> u64 {
        self.endpoints.values().map(|e| e.server_errors).sum()
    }

    /// Add another window to this one (both must use [`LATENCY_BUCKETS_MS`]).
    pub fn merge(&mut self, other: &MetricsWindow) {
        self.window_ms += other.window_ms;
        for (name, counts) in &other.endpoints {
            self.endpoints
                .entry(name.clone())
                .or_default()
                .merge(counts);
        }
        self.latency.merge(&other.latency);
        if let Some(theirs) = &other.shadow {
            self.shadow
                .get_or_insert_with(Default::default)
                .merge(theirs);
        }
    }
}

/// Request counts of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounts {
    /// Requests answered.
    pub requests: u64,
    /// Answers with a 4xx status.
    pub client_errors: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Answers by OSRM/VROOM error code (`NoRoute`, `NoSegment`, `InvalidQuery`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub codes: BTreeMap<String, u64>,
}

impl EndpointCounts {
    /// Add another endpoint's counts to these.
    pub fn merge(&mut self, other: &EndpointCounts) {
        self.requests += other.requests;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        for (code, n) in &other.codes {
            *self.codes.entry(code.clone()).or_default() += n;
        }
    }
}

/// A latency histogram over [`LATENCY_BUCKETS_MS`]: `counts[i]` requests took at most
/// `LATENCY_BUCKETS_MS[i]` (and more than the bound before); the last count is `+Inf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// One count per bucket, `LATENCY_BUCKETS_MS.len() + 1` of them.
    pub counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; LATENCY_BUCKETS_MS.len() + 1],
        }
    }
}

impl Histogram {
    /// Count one observation.
    pub fn observe(&mut self, ms: f64) {
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    /// Observations counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Add another histogram's counts; a malformed one (wrong length) adds what fits.
    pub fn merge(&mut self, other: &Histogram) {
        self.counts.resize(LATENCY_BUCKETS_MS.len() + 1, 0);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// The `q` quantile (0..=1) as the upper bound of the bucket it falls in, the way
    /// Prometheus' `histogram_quantile` reads a bucket without interpolation; `None` without
    /// observations, and the largest finite bound when it falls in `+Inf`.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // The rank of the q-quantile among `total` ordered observations, from 1.
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]),
                );
            }
        }
        None
    }
}
