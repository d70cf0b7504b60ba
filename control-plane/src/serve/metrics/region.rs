//! Service health per region, from the metrics windows the agents report: the request rate,
//! the server-error ratio and the p99 latency of the online nodes' latest windows, beside the
//! thresholds of the region's rollout policy.
//!
//! Alerts compare the two without Prometheus scraping a single edge node: edges often sit
//! behind NAT or a metered link, and the center already holds these figures. The gauges are
//! computed at scrape time from the store's node records, so every center replica exports
//! the same values (alert on `max by (region)`), and they are right after a restart.

use std::sync::atomic::AtomicU64;

use edgeroute_protocol::{crd::RolloutSpec, sync::MetricsWindow};
use prometheus_client::{
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use super::RegionLabels;

type FloatGauge = Gauge<f64, AtomicU64>;

/// What a region's online nodes served in their latest windows.
#[derive(Debug, Default)]
pub(super) struct Served {
    /// The windows merged.
    window: MetricsWindow,
    /// Requests per second, summed over the nodes (each window divided by its own length).
    rate: f64,
}

impl Served {
    /// Add one node's latest window.
    pub(super) fn add(&mut self, window: &MetricsWindow) {
        if window.window_ms > 0 {
            self.rate += window.requests() as f64 * 1000.0 / window.window_ms as f64;
        }
        self.window.merge(window);
    }
}

/// The region service gauges.
#[derive(Debug)]
pub(super) struct RegionService {
    rate: Family<RegionLabels, FloatGauge>,
    error_ratio: Family<RegionLabels, FloatGauge>,
    p99: Family<RegionLabels, FloatGauge>,
    max_error_ratio: Family<RegionLabels, FloatGauge>,
    max_p99: Family<RegionLabels, FloatGauge>,
}

impl RegionService {
    /// Register the gauges.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            rate: Family::default(),
            error_ratio: Family::default(),
            p99: Family::default(),
            max_error_ratio: Family::default(),
            max_p99: Family::default(),
        };
        registry.register(
            "region_requests_per_second",
            "Routing API requests per second the region's online nodes served, from their latest reported windows",
            this.rate.clone(),
        );
        registry.register(
            "region_error_ratio",
            "Share of those requests answered with a 5xx status (0 without requests)",
            this.error_ratio.clone(),
        );
        registry.register(
            "region_p99_seconds",
            "p99 latency of those requests (upper bound of its bucket; 0 without requests)",
            this.p99.clone(),
        );
        registry.register(
            "region_max_error_ratio",
            "The error rate above which the region's rollout policy rolls a step back",
            this.max_error_ratio.clone(),
        );
        registry.register(
            "region_max_p99_seconds",
            "The p99 latency above which the region's rollout policy rolls a step back",
            this.max_p99.clone(),
        );
        this
    }

    /// Replace every series with the figures of `regions`, each beside its policy.
    pub(super) fn refresh<'a>(
        &self,
        regions: impl Iterator<Item = (&'a str, &'a Served)>,
        policy: &dyn Fn(&str) -> RolloutSpec,
    ) {
        for family in [
            &self.rate,
            &self.error_ratio,
            &self.p99,
            &self.max_error_ratio,
            &self.max_p99,
        ] {
            family.clear();
        }
        for (name, served) in regions {
            let labels = RegionLabels {
                region: name.to_owned(),
            };
            let requests = served.window.requests();
            let errors = served.window.server_errors();
            let ratio = if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            };
            self.rate.get_or_create(&labels).set(served.rate);
            self.error_ratio.get_or_create(&labels).set(ratio);
            let p99_ms = served.window.latency.quantile_ms(0.99).unwrap_or(0.0);
            self.p99.get_or_create(&labels).set(p99_ms / 1000.0);
            let policy = policy(name);
            self.max_error_ratio
                .get_or_create(&labels)
                .set(policy.max_error_rate);
            self.max_p99
                .get_or_create(&labels)
                .set(f64::from(policy.max_p99_latency_ms) / 1000.0);
        }
    }
}
