//! Prometheus metrics: HTTP requests by route template and status code, the served graph
//! (version, swaps, size), build info, the sync link (outbox depth, reports, failures,
//! last acknowledgement) and the standard `process_*` metrics ([`process`]).
//!
//! The exposition is OpenMetrics for scrapers that ask for it, and the Prometheus text
//! format 0.0.4 for everyone else ([`Format`]).

pub mod process;

pub use edgeroute_server::exposition::Format;

use axum::{extract::MatchedPath, http::Method};
use prometheus_client::{
    encoding::{
        EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
        text::{encode, encode_registry},
    },
    metrics::{
        counter::Counter, exemplar::HistogramWithExemplars, family::Family, gauge::Gauge,
        histogram::exponential_buckets,
    },
    registry::Registry,
};

/// Labels of the HTTP metrics. `endpoint` is the route template (`/route/v1/{profile}/...`),
/// never the raw path, and `method` one of [`method_label`]'s values, never the raw method:
/// the client chooses neither, so cardinality stays bounded.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template, or `unmatched`.
    pub endpoint: Endpoint,
    /// HTTP method, from [`method_label`].
    pub method: &'static str,
    /// Response status code; [`CLIENT_CLOSED`] for a request whose client went away first.
    pub code: u16,
}

/// The `endpoint` label: a request's route template, shared with the request (axum's
/// [`MatchedPath`] is reference counted), so labelling a request copies no text. Each
/// request is looked up in two families; owned strings were three allocations per request.
#[derive(Debug, Clone)]
pub struct Endpoint(EndpointName);

#[derive(Debug, Clone)]
enum EndpointName {
    Matched(MatchedPath),
    Fixed(&'static str),
}

impl Endpoint {
    /// The label of a request that matched no route.
    pub const UNMATCHED: Self = Self(EndpointName::Fixed("unmatched"));

    /// The route template `request` matched, or [`Endpoint::UNMATCHED`].
    pub fn of<B>(request: &axum::http::Request<B>) -> Self {
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or(Self::UNMATCHED, |path| {
                Self(EndpointName::Matched(path.clone()))
            })
    }

    /// The label's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            EndpointName::Matched(path) => path.as_str(),
            EndpointName::Fixed(name) => name,
        }
    }
}

impl From<&'static str> for Endpoint {
    fn from(name: &'static str) -> Self {
        Self(EndpointName::Fixed(name))
    }
}

// By text: a template is the same label however it was made.
impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Endpoint {}

impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The status label of a request cancelled before its response was ready (the client closed
/// the connection, or the server dropped it at the end of a shutdown grace). 499 is nginx's
/// "client closed request"; no response with it is ever sent.
pub const CLIENT_CLOSED: u16 = 499;

/// The `method` label of a request: a standard method by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

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

/// Labels of the shadow graph info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// The shadow graph's version.
    pub version: String,
}

/// Shadow comparison during a graph canary (see `routing::shadow`).
#[derive(Debug, Default, Clone)]
pub struct ShadowMetrics {
    /// Sampled requests re-answered on the shadow graph.
    pub compared: Counter,
    /// Of those, answers that differ materially.
    pub differ: Counter,
    /// Of those, routes the shadow graph found and the served graph did not.
    pub lost_routes: Counter,
    /// Sampled requests dropped because the comparison queue was full.
    pub dropped: Counter,
    /// The loaded shadow graph (value 1; none while no shadow is loaded).
    pub graph: Family<ShadowLabels, Gauge>,
}

impl ShadowMetrics {
    /// A shadow graph of `version` is loaded.
    pub fn loaded(&self, version: &str) {
        self.graph.clear();
        self.graph
            .get_or_create(&ShadowLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// No shadow graph is loaded.
    pub fn unloaded(&self) {
        self.graph.clear();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "shadow_compared",
            "Sampled route requests re-answered on the shadow graph during a graph canary",
            self.compared.clone(),
        );
        registry.register(
            "shadow_differ",
            "Shadow answers that differ materially from the served ones (a lost route, or a \
             duration change beyond the tolerance)",
            self.differ.clone(),
        );
        registry.register(
            "shadow_lost_routes",
            "Routes the shadow graph found where the served graph found none",
            self.lost_routes.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Sampled requests not compared because the shadow queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "shadow_graph_info",
            "The shadow graph loaded beside the served one (value 1, version as label)",
            self.graph.clone(),
        );
    }
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

    fn register(&self, registry: &mut Registry) {
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
