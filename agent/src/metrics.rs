//! Prometheus metrics: HTTP requests by route template and status code, the served graph
//! (version, swaps, size), build info, the sync link (outbox depth, reports, failures,
//! last acknowledgement), admission control ([`OverloadMetrics`]), a graph canary's shadow
//! comparison ([`ShadowMetrics`]) and the standard `process_*` metrics ([`process`]).
//!
//! The exposition is OpenMetrics for scrapers that ask for it, and the Prometheus text
//! format 0.0.4 for everyone else ([`Format`]).

mod labels;
mod overload;
pub mod process;
mod shadow;

pub use edgeroute_server::exposition::Format;
pub use labels::{CLIENT_CLOSED, Endpoint, HttpLabels, UNMATCHED, method_label, template};
pub use overload::{OverloadMetrics, ShedLabels};
pub use shadow::{ShadowLabels, ShadowMetrics};

use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode, encode_registry},
    },
    metrics::{
        counter::Counter, exemplar::HistogramWithExemplars, family::Family, gauge::Gauge,
        histogram::exponential_buckets,
    },
    registry::Registry,
};

/// Labels of the graph info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphLabels {
    /// Graph version label.
    pub version: String,
    /// The graph's sha256. The field name is the exported label name, which dashboards
    /// and alerts already use: it stays `checksum`.
    pub checksum: String,
}

/// Labels of the build info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Agent version.
    pub version: String,
}

/// All agent metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, HistogramWithExemplars<TraceExemplar>>,
    in_flight: Gauge,
    graph: Family<GraphLabels, Gauge>,
    graph_swaps: Counter,
    graph_nodes: Gauge,
    sync: SyncMetrics,
    overload: OverloadMetrics,
    shadow: ShadowMetrics,
}

/// Metrics of the link to the control plane.
#[derive(Debug, Default)]
struct SyncMetrics {
    outbox_depth: Gauge,
    reports: Counter,
    report_failures: Counter,
    last_ack: Gauge,
    bytes_sent: Counter,
    bytes_received: Counter,
    plans_refused: Counter,
    download_failures: Counter,
    stream_rotations: Family<ReasonLabels, Counter>,
}

/// Labels of new sync streams.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `center_ahead`, `center_behind` or `node_renamed` (see `storage::outbox::Rotation`).
    pub reason: &'static str,
}

/// The exemplar of a latency bucket: the trace of the last sampled request that fell in it,
/// so a dashboard goes from a slow bucket to that request's trace (OpenMetrics only).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// 32 lowercase hex digits.
    pub trace_id: String,
}

fn latency_histogram() -> HistogramWithExemplars<TraceExemplar> {
    // 50 µs .. ~26 s.
    HistogramWithExemplars::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        // The process metrics keep their standard names; everything else is the agent's.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("edgeroute_agent");
        edgeroute_server::telemetry::register_metrics(registry);
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by endpoint template, method and status",
            requests.clone(),
        );
        let latency_family =
            Family::<HttpLabels, HistogramWithExemplars<TraceExemplar>>::new_with_constructor(
                latency_histogram as fn() -> HistogramWithExemplars<TraceExemplar>,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint template, method and status",
            latency_family.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being processed",
            in_flight.clone(),
        );
        let graph = Family::<GraphLabels, Gauge>::default();
        registry.register(
            "graph_info",
            "The graph being served (value 1, version and checksum as labels)",
            graph.clone(),
        );
        let graph_swaps = Counter::default();
        registry.register(
            "graph_swaps",
            "Graph versions activated while running",
            graph_swaps.clone(),
        );
        let graph_nodes = Gauge::default();
        registry.register(
            "graph_nodes",
            "Nodes of the graph being served",
            graph_nodes.clone(),
        );
        let sync = SyncMetrics::default();
        registry.register(
            "sync_outbox_depth",
            "Events waiting in the outbox for the control plane",
            sync.outbox_depth.clone(),
        );
        registry.register(
            "sync_reports",
            "Reports the control plane acknowledged",
            sync.reports.clone(),
        );
        registry.register(
            "sync_report_failures",
            "Reports that failed (unreachable, refused or timed out); they are retried",
            sync.report_failures.clone(),
        );
        registry.register(
            "sync_last_ack_timestamp_seconds",
            "Unix time of the last acknowledged report",
            sync.last_ack.clone(),
        );
        registry.register(
            "sync_sent_bytes",
            "Report bytes sent to the control plane (compressed, as on the wire)",
            sync.bytes_sent.clone(),
        );
        registry.register(
            "sync_received_bytes",
            "Bytes received from the control plane, graph downloads included",
            sync.bytes_received.clone(),
        );
        registry.register(
            "sync_plans_refused",
            "Plans refused with 503 because the outbox was full",
            sync.plans_refused.clone(),
        );
        // Every reason from the start, so an alert on one reads 0 rather than nothing.
        for reason in ["center_ahead", "center_behind", "node_renamed"] {
            drop(
                sync.stream_rotations
                    .get_or_create(&ReasonLabels { reason }),
            );
        }
        registry.register(
            "sync_stream_rotations",
            "New event streams begun because the center's watermark and this database disagreed",
            sync.stream_rotations.clone(),
        );
        registry.register(
            "sync_graph_download_failures",
            "Graph downloads or verifications that failed (the served graph stays)",
            sync.download_failures.clone(),
        );
        let overload = OverloadMetrics::default();
        overload.register(registry);
        let shadow = ShadowMetrics::default();
        shadow.register(registry);
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Agent build (value 1)", build.clone());
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        Self {
            registry: root,
            requests,
            latency: latency_family,
            in_flight,
            graph,
            graph_swaps,
            graph_nodes,
            sync,
            overload,
            shadow,
        }
    }

    /// Shadow comparison metrics.
    pub fn shadow(&self) -> &ShadowMetrics {
        &self.shadow
    }

    /// Admission-control metrics.
    pub fn overload(&self) -> &OverloadMetrics {
        &self.overload
    }

    /// A report the center acknowledged.
    pub fn sync_acked(&self, depth: u64, sent: u64, received: u64, at_s: u64) {
        let m = &self.sync;
        m.reports.inc();
        m.outbox_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        m.bytes_sent.inc_by(sent);
        m.bytes_received.inc_by(received);
        m.last_ack.set(i64::try_from(at_s).unwrap_or(i64::MAX));
    }

    /// A new event stream, and why.
    pub fn sync_stream_rotated(&self, reason: &'static str) {
        self.sync
            .stream_rotations
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A report that failed.
    pub fn sync_failed(&self) {
        self.sync.report_failures.inc();
    }

    /// The outbox depth, measured outside a report.
    pub fn outbox_depth(&self, depth: u64) {
        self.sync
            .outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Bytes of a graph download.
    pub fn sync_downloaded(&self, bytes: u64) {
        self.sync.bytes_received.inc_by(bytes);
    }

    /// A graph download or verification that failed.
    pub fn graph_download_failed(&self) {
        self.sync.download_failures.inc();
    }

    /// A plan refused because the outbox was full.
    pub fn plan_refused_outbox_full(&self) {
        self.sync.plans_refused.inc();
    }

    /// Count one finished request.
    pub fn observe_request(&self, labels: &HttpLabels, seconds: f64, trace_id: Option<String>) {
        self.requests.get_or_create(labels).inc();
        let exemplar = trace_id.map(|trace_id| TraceExemplar { trace_id });
        self.latency
            .get_or_create(labels)
            .observe(seconds, exemplar, None);
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Record that `version` (identified by `sha256`) is now served.
    pub fn graph_activated(&self, version: &str, sha256: &str, nodes: usize) {
        self.graph.clear();
        self.graph
            .get_or_create(&GraphLabels {
                version: version.to_owned(),
                checksum: sha256.to_owned(),
            })
            .set(1);
        self.graph_nodes
            .set(i64::try_from(nodes).unwrap_or(i64::MAX));
        self.graph_swaps.inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The exposition in `format`.
    pub fn encode_as(&self, format: Format) -> Result<String, std::fmt::Error> {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => {
                let mut open_metrics = String::new();
                encode_registry(&mut open_metrics, &self.registry)?;
                Ok(edgeroute_server::exposition::open_metrics_to_text(
                    &open_metrics,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
