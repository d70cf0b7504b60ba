//! The center's Prometheus metrics, `GET /metrics` (unauthenticated, like the agent's).
//!
//! Two kinds of series:
//! - counted as things happen: sync reports by result, sync errors by reason, events
//!   ingested by kind, the ingest latency, graph downloads served;
//! - computed at scrape time from the store's node records (so they are right after a
//!   restart and cost nothing on the report path): nodes by region and state, outbox depth
//!   and report age per region.
//!
//! Every label value comes from a fixed set, except `region`, which authenticated agents
//! choose; it is capped at [`MAX_REGIONS`] values, the rest folded into `other`. Nothing is
//! labelled by node: a fleet of 10,000 agents must not mean 10,000 series per metric.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use edgeroute_protocol::{
    crd::RolloutSpec,
    sync::{EventHeader, NodeState, RawEvent, Report},
};
use edgeroute_server::exposition::{Format, open_metrics_to_text};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use serde::Deserialize;

mod region;

use super::{Center, Settings, error::ApiError};
use crate::{
    fleet::state_of,
    graphs::registry::now_ms,
    sync::store::{Ingested, NodeRecord},
};

/// Most distinct `region` label values exported; further regions are summed into `other`.
pub const MAX_REGIONS: usize = 256;

/// `result` of a sync report.
pub const REPORT_RESULTS: [&str; 3] = ["ok", "rejected", "error"];
/// `kind` of an ingested event (`other` for kinds newer than this center).
pub const EVENT_KINDS: [&str; 4] = ["plan", "graph_activated", "graph_failed", "other"];
/// `reason` of a sync error.
pub const ERROR_REASONS: [&str; 9] = [
    "malformed",
    "unauthorized",
    "not_found",
    "too_large",
    "unsupported_media_type",
    "range_not_satisfiable",
    "storage",
    "overloaded",
    "internal",
];

/// Marks a response shed for load (503 before any work), so it is counted as
/// `overloaded` rather than as a storage failure with the same status.
#[derive(Debug, Clone, Copy)]
pub struct Shed;
/// `call` of a sync error.
pub const SYNC_CALLS: [&str; 2] = ["report", "graph_download"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    call: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RangeLabels {
    range: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    region: String,
    state: &'static str,
}

/// The center's metrics and their registry.
#[derive(Debug)]
pub struct CenterMetrics {
    registry: Registry,
    reports: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    events: Family<KindLabels, Counter>,
    ingest: Histogram,
    in_flight: Gauge,
    downloads: Family<RangeLabels, Counter>,
    nodes: Family<NodeLabels, Gauge>,
    outbox_sum: Family<RegionLabels, Gauge>,
    outbox_max: Family<RegionLabels, Gauge>,
    age_max: Family<RegionLabels, Gauge<f64, AtomicU64>>,
    service: region::RegionService,
    /// Rollouts by phase and verdicts by kind, updated by [`crate::rollout`].
    pub rollouts: crate::rollout::metrics::RolloutMetrics,
    /// Scrapes rebuild the fleet gauges from scratch; two at once would interleave.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for CenterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CenterMetrics {
    /// Register every metric, with the fixed-label series at zero so rates and dashboards
    /// see them before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgeroute_center");
        edgeroute_server::telemetry::register_metrics(&mut registry);
        let reports = Family::<ResultLabels, Counter>::default();
        registry.register(
            "sync_reports",
            "Sync reports answered, by result: ok (acknowledged), rejected (4xx: bad \
             credentials or a malformed report), error (5xx: the center failed)",
            reports.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "sync_errors",
            "Sync calls (reports and graph downloads) answered with an error, by call and reason",
            errors.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        registry.register(
            "sync_events_ingested",
            "Outbox events newly acknowledged to agents, by kind; counted once, from the report that carries the event past the watermark",
            events.clone(),
        );
        // 100 µs .. ~3.3 s: a report's durable write is an fsync plus a batch insert.
        let ingest = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "sync_ingest_duration_seconds",
            "Time to store a report's events durably and compute its watermark",
            ingest.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "sync_ingests_in_flight",
            "Reports being ingested at scrape time (bounded by --max-concurrent-ingests; \
             reports beyond it are answered 503, counted as sync_errors reason=overloaded)",
            in_flight.clone(),
        );
        let downloads = Family::<RangeLabels, Counter>::default();
        registry.register(
            "graph_downloads",
            "Graph artifact downloads answered, by range (full or partial: a resumed download); \
             the transfer itself may still be cut",
            downloads.clone(),
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "nodes",
            "Nodes that ever reported, by region and state (online, stale, offline), at scrape time",
            nodes.clone(),
        );
        let outbox_sum = Family::<RegionLabels, Gauge>::default();
        registry.register(
            "region_outbox_events",
            "Outbox events waiting at the region's agents, summed over their last reports",
            outbox_sum.clone(),
        );
        let outbox_max = Family::<RegionLabels, Gauge>::default();
        registry.register(
            "region_outbox_max_events",
            "Deepest outbox among the region's agents, from their last reports",
            outbox_max.clone(),
        );
        let age_max = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "region_report_age_max_seconds",
            "Age of the oldest last report among the region's nodes that are not offline",
            age_max.clone(),
        );
        let service = region::RegionService::register(&mut registry);
        let rollouts = crate::rollout::metrics::RolloutMetrics::register(&mut registry);
        for result in REPORT_RESULTS {
            let _ = reports.get_or_create(&ResultLabels { result });
        }
        for kind in EVENT_KINDS {
            let _ = events.get_or_create(&KindLabels { kind });
        }
        for call in SYNC_CALLS {
            for reason in ERROR_REASONS {
                let _ = errors.get_or_create(&ErrorLabels { call, reason });
            }
        }
        // Created up front so every series exists, at zero, before its first event.
        for range in ["full", "partial"] {
            let _ = downloads.get_or_create(&RangeLabels { range });
        }
        Self {
            registry,
            reports,
            errors,
            events,
            ingest,
            in_flight,
            downloads,
            nodes,
            outbox_sum,
            outbox_max,
            age_max,
            service,
            rollouts,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Count one answered sync call by its status.
    fn sync_answered(&self, call: &'static str, status: StatusCode, shed: bool) {
        if call == "report" {
            let result = if status.is_success() {
                "ok"
            } else if status.is_client_error() {
                "rejected"
            } else {
                "error"
            };
            self.reports.get_or_create(&ResultLabels { result }).inc();
        } else if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            let range = if status == StatusCode::OK {
                "full"
            } else {
                "partial"
            };
            self.downloads.get_or_create(&RangeLabels { range }).inc();
        }
        let reason = if shed {
            Some("overloaded")
        } else {
            error_reason(status)
        };
        if let Some(reason) = reason {
            self.errors
                .get_or_create(&ErrorLabels { call, reason })
                .inc();
        }
    }

    /// Before a report is ingested: what it carries.
    pub fn before_ingest(
        &self,
        report: &Report<RawEvent>,
        headers: &[EventHeader],
    ) -> PendingIngest {
        let events: Vec<(u64, &'static str)> = headers
            .iter()
            .zip(&report.events)
            .map(|(header, raw)| (header.seq, event_kind(header, raw)))
            .collect();
        PendingIngest {
            events,
            started: Instant::now(),
        }
    }

    /// After the events are durable: observe the latency and count the events the ingest
    /// acknowledged for the first time (above the watermark it found, so a retried event
    /// is not counted twice).
    pub fn ingested(&self, pending: PendingIngest, ingested: Ingested) {
        self.ingest.observe(pending.started.elapsed().as_secs_f64());
        let mut counted = BTreeSet::new();
        for (seq, kind) in pending.events {
            if seq > ingested.held && seq <= ingested.watermark && counted.insert(seq) {
                self.events.get_or_create(&KindLabels { kind }).inc();
            }
        }
    }

    /// Rebuild the fleet gauges from the node records at `now_ms`; `policy` gives a region's
    /// rollout thresholds, exported beside what its nodes served.
    pub fn refresh_fleet(
        &self,
        records: &[NodeRecord],
        now_ms: u64,
        settings: &Settings,
        policy: &dyn Fn(&str) -> RolloutSpec,
    ) {
        #[derive(Default)]
        struct Region {
            states: [i64; 3],
            outbox_sum: u64,
            outbox_max: u64,
            age_max_ms: u64,
            served: region::Served,
        }
        let mut regions: BTreeMap<&str, Region> = BTreeMap::new();
        let mut other = Region::default();
        for record in records {
            let name = record.report.region.as_str();
            let slot = if regions.contains_key(name) || regions.len() < MAX_REGIONS {
                regions.entry(name).or_default()
            } else {
                &mut other
            };
            let age = now_ms.saturating_sub(record.received_at_ms);
            let state = state_of(age, settings);
            if let Some(i) = NodeState::ALL.iter().position(|s| *s == state) {
                slot.states[i] += 1;
            }
            let depth = record.report.outbox_depth;
            slot.outbox_sum = slot.outbox_sum.saturating_add(depth);
            slot.outbox_max = slot.outbox_max.max(depth);
            if state != NodeState::Offline {
                slot.age_max_ms = slot.age_max_ms.max(age);
            }
            // A silent node's last window describes the past, not what the region serves.
            if state == NodeState::Online {
                slot.served.add(&record.report.metrics);
            }
        }
        self.nodes.clear();
        self.outbox_sum.clear();
        self.outbox_max.clear();
        self.age_max.clear();
        let folded = (other.states.iter().sum::<i64>() > 0).then_some(("other", other));
        let regions: Vec<(&str, Region)> = regions.into_iter().chain(folded).collect();
        self.service
            .refresh(regions.iter().map(|(name, r)| (*name, &r.served)), policy);
        for (name, r) in &regions {
            let region = (*name).to_owned();
            for (state, count) in NodeState::ALL.iter().zip(r.states) {
                self.nodes
                    .get_or_create(&NodeLabels {
                        region: region.clone(),
                        state: state.as_str(),
                    })
                    .set(count);
            }
            let labels = RegionLabels { region };
            self.outbox_sum
                .get_or_create(&labels)
                .set(i64::try_from(r.outbox_sum).unwrap_or(i64::MAX));
            self.outbox_max
                .get_or_create(&labels)
                .set(i64::try_from(r.outbox_max).unwrap_or(i64::MAX));
            self.age_max
                .get_or_create(&labels)
                .set(r.age_max_ms as f64 / 1000.0);
        }
    }

    /// The OpenMetrics text exposition (without refreshing the fleet gauges).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What [`CenterMetrics::before_ingest`] saw of a report.
#[derive(Debug)]
pub struct PendingIngest {
    events: Vec<(u64, &'static str)>,
    started: Instant,
}

/// The `kind` label of an event. Plan events are known from the header already read; the
/// rare others are read for their `type` tag alone.
fn event_kind(header: &EventHeader, raw: &RawEvent) -> &'static str {
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        kind: String,
    }
    if header.plan.is_some() {
        return "plan";
    }
    match serde_json::from_str::<Tag>(raw.get()) {
        Ok(tag) => match tag.kind.as_str() {
            "plan" => "plan",
            "graph_activated" => "graph_activated",
            "graph_failed" => "graph_failed",
            _ => "other",
        },
        Err(_) => "other",
    }
}

/// The `reason` of an error status, `None` for a success.
fn error_reason(status: StatusCode) -> Option<&'static str> {
    if status.is_success() || status.is_redirection() || status.is_informational() {
        return None;
    }
    Some(match status.as_u16() {
        400 | 422 => "malformed",
        401 | 403 => "unauthorized",
        404 => "not_found",
        413 => "too_large",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        503 => "storage",
        _ => "internal",
    })
}

/// Middleware on the sync routes: counts each answer by call, result and error reason.
pub async fn track_sync(
    State(metrics): State<Arc<CenterMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let call = match request.extensions().get::<MatchedPath>() {
        Some(path) if path.as_str() == "/sync/v1/report" => "report",
        _ => "graph_download",
    };
    let response = next.run(request).await;
    let shed = response.extensions().get::<Shed>().is_some();
    metrics.sync_answered(call, response.status(), shed);
    response
}

/// `GET /metrics`: refresh the fleet gauges from the store, then render everything, as
/// OpenMetrics to a scraper that asks for it (Prometheus does) and as the Prometheus text
/// format 0.0.4 otherwise (curl, `promtool check metrics`).
pub async fn scrape(
    State(center): State<Center>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let metrics = &center.metrics;
    let _one_at_a_time = metrics.scrape.lock().await;
    let records = center.store.nodes().await.map_err(ApiError::storage)?;
    metrics.refresh_fleet(&records, now_ms(), &center.settings, &|region| {
        center.rollouts.policy(region)
    });
    let max = center
        .settings
        .max_concurrent_ingests
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let free = center.ingests.available_permits();
    metrics
        .in_flight
        .set(i64::try_from(max.saturating_sub(free)).unwrap_or(i64::MAX));
    let open_metrics = metrics
        .encode()
        .map_err(|e| ApiError::internal("encoding metrics failed", e))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = match format {
        Format::OpenMetrics => open_metrics,
        Format::Text => open_metrics_to_text(&open_metrics),
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

#[cfg(test)]
mod tests;
