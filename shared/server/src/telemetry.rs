//! Traces and logs of every edgeroute process: one [`init`] installs the log writer (text or
//! JSON, see [`LogFormat`]) and the OpenTelemetry layer, and optionally exports spans over
//! OTLP/HTTP (protobuf) to a collector.
//!
//! Without an exporter, spans still get trace and span ids, so a client's `traceparent`
//! reaches the JSON logs and the plans, and logs of one request join up whether or not a
//! collector listens: then a much lighter layer than OpenTelemetry's gives them ([`local`]).
//!
//! Exporting never waits on the collector in a request's path: finished spans go to a
//! bounded queue that a background thread drains in batches ([`export`]); when the queue is
//! full or the collector does not answer, spans are dropped and counted
//! ([`register_metrics`]).
//!
//! # Layout
//! - this module: [`TraceArgs`] (the flags), [`init`], [`Telemetry`] (flush and shutdown),
//!   and the W3C trace-context helpers the servers and clients use.
//! - [`export`]: the bounded queue, the counting exporter and the HTTP client.
//! - [`log`]: the JSON line format with `trace_id`, `span_id` and the process's fields.
//! - [`local`]: trace and span ids when nothing is exported.

pub mod export;
mod local;
pub mod log;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::{
    Context,
    propagation::TextMapPropagator,
    trace::{SpanContext, TraceContextExt, TracerProvider as _},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, prelude::*};

pub use export::{SpanStats, register_metrics, stats};

use crate::LogFormat;

/// The wire protocol of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over HTTP with protobuf bodies (`POST <endpoint>`, usually `.../v1/traces`).
    #[default]
    Http,
}

/// The trace flags every server takes (flatten them into its clap arguments).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct TraceArgs {
    /// Export spans over OTLP to this URL, e.g. `http://otel-collector:4318/v1/traces`
    /// (used as given: include the `/v1/traces` path). Unset: no export.
    #[arg(long, global = true, env = "EDGEROUTE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol: `http` (HTTP/protobuf); gRPC is not built in.
    #[arg(long, global = true, value_enum, default_value_t = OtlpProtocol::Http, env = "EDGEROUTE_OTLP_PROTOCOL")]
    pub otlp_protocol: OtlpProtocol,
    /// Fraction of new traces recorded (0 to 1). A request that arrives with a
    /// `traceparent` follows its caller's decision (parent-based sampling).
    #[arg(long, global = true, default_value_t = 1.0, value_parser = parse_ratio, env = "EDGEROUTE_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: f64,
    /// Most finished spans waiting for export; beyond it spans are dropped and counted.
    #[arg(long, global = true, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub otlp_queue_size: u32,
}

impl Default for TraceArgs {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Http,
            trace_sample_ratio: 1.0,
            otlp_queue_size: 2048,
        }
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let ratio: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("{ratio} is not between 0 and 1"))
    }
}

/// Errors of [`init`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint URL, no async runtime...).
    #[error("cannot set up OTLP export: {0}")]
    Exporter(String),
}

/// The installed telemetry: keep it until the process ends, then [`Telemetry::shutdown`] to
/// send what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint was given).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports every finished span now, waiting at most `bound`. For tests and shutdown.
    pub async fn flush(&self, bound: Duration) {
        if !self.exporting {
            return;
        }
        let provider = self.provider.clone();
        // The flush blocks its thread until the export thread has sent the batch, and that
        // send runs on this runtime: keep it off the runtime's workers.
        let flush = tokio::task::spawn_blocking(move || provider.force_flush());
        match tokio::time::timeout(bound, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::debug!(error = %err, "span flush failed"),
            Ok(Err(_)) | Err(_) => tracing::debug!("span flush did not finish in time"),
        }
    }

    /// Sends what is queued (waiting at most `bound`) and stops exporting. Spans ended after
    /// this are dropped.
    pub async fn shutdown(self, bound: Duration) {
        let provider = self.provider;
        let stop = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        // The export thread may still be in a request to an unreachable collector: give it
        // its bound and a little more, never longer.
        if tokio::time::timeout(bound + Duration::from_millis(200), stop)
            .await
            .is_err()
        {
            tracing::debug!("span export did not stop in time; queued spans are dropped");
        }
    }
}

/// Installs the process's tracing subscriber, writing logs to stderr in `format`, and the
/// OpenTelemetry layer for `service` (the OTLP `service.name`). The log filter comes from
/// `RUST_LOG` and defaults to `info`; it applies to spans too. A second call keeps the
/// first subscriber (tests, embedding) and returns a [`Telemetry`] that exports nothing.
///
/// Must be called inside a Tokio runtime when `args.otlp_endpoint` is set: exports run on it.
pub fn init(
    service: &'static str,
    format: LogFormat,
    args: &TraceArgs,
) -> Result<Telemetry, TelemetryError> {
    // Colour codes only for a person at a terminal: in a file or a log shipper they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_with_writer(service, format, args, std::io::stderr, ansi)
}

/// [`init`] writing logs to `writer` (tests capture them), with colours when `ansi`.
pub fn init_with_writer<W>(
    service: &'static str,
    format: LogFormat,
    args: &TraceArgs,
    writer: W,
    ansi: bool,
) -> Result<Telemetry, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (provider, exporting) = provider(service, args)?;
    let tracer = provider.tracer(service);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // One of the two: spans that reach a collector need the OpenTelemetry layer; spans that
    // reach none need only their ids.
    let local = (!exporting).then(|| local::LocalTraceContext::new(sampler(args)));
    let otel = exporting.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Source locations are for debugging this code, not for following a request.
            .with_location(false)
            .with_threads(false)
            // Busy and idle times read the clock on every enter and exit of every span (a
            // request's span is entered at each poll), and nothing here reads the activated
            // OpenTelemetry context: the trace helpers below take the span's context directly.
            // Both off: 3% of a saturated agent's CPU (docs/agent-benchmarks.md).
            .with_tracked_inactivity(false)
            .with_context_activation(false)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(local);
    let installed = match format {
        LogFormat::Json => {
            let (capture, format) = log::JsonWithTrace::new();
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .event_format(format)
                .fmt_fields(log::JsonSpanFields);
            registry.with(capture).with(fmt).try_init()
        }
        LogFormat::Text => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi);
            registry.with(fmt).try_init()
        }
    };
    if installed.is_err() {
        // Someone else's subscriber stays: its spans never reach this provider.
        let _ = provider.shutdown();
        return Ok(Telemetry {
            provider: SdkTracerProvider::builder().build(),
            exporting: false,
        });
    }
    EXPORTING.store(exporting, Ordering::Relaxed);
    if let Some(endpoint) = &args.otlp_endpoint {
        tracing::info!(
            endpoint = %export::redact_endpoint(endpoint),
            sample_ratio = args.trace_sample_ratio,
            "exporting spans over OTLP/HTTP"
        );
    }
    Ok(Telemetry {
        provider,
        exporting,
    })
}

fn provider(
    service: &'static str,
    args: &TraceArgs,
) -> Result<(SdkTracerProvider, bool), TelemetryError> {
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(args))
        .with_resource(Resource::builder().with_service_name(service).build());
    match &args.otlp_endpoint {
        None => Ok((builder.build(), false)),
        Some(endpoint) => {
            let processor = export::processor(endpoint, args.otlp_queue_size as usize)?;
            Ok((builder.with_span_processor(processor).build(), true))
        }
    }
}

/// Follows a client's decision for a trace it started (parent-based), samples a new trace
/// at the configured ratio.
fn sampler(args: &TraceArgs) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        args.trace_sample_ratio,
    )))
}

/// `span`'s trace context from whichever layer gave it one; invalid when none did.
fn span_context(span: &tracing::Span) -> SpanContext {
    local::get(span).unwrap_or_else(|| span.context().span().span_context().clone())
}

/// Makes the remote context `cx` the parent of `span`, through whichever layer gave `span`
/// its context.
fn set_parent(span: &tracing::Span, cx: Context) {
    if !local::set_parent(span, cx.span().span_context()) {
        let _ = span.set_parent(cx);
    }
}

/// `span`'s context as the parent context a propagator injects.
fn as_parent(span: &tracing::Span) -> Option<Context> {
    let context = span_context(span);
    context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(context))
}

/// The `server.address` of a request span: the host of its `Host` header, when it parses.
pub fn server_address(headers: &http::HeaderMap) -> Option<http::uri::Authority> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
}

/// Makes the context a request's W3C `traceparent` (and `tracestate`) header carries the
/// parent of `span`. A missing or malformed header leaves `span` a new trace's root. Call it
/// before the span is first entered.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(Ok(traceparent)) = headers.get("traceparent").map(|v| v.to_str()) else {
        return;
    };
    if !well_formed(traceparent) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        set_parent(span, cx);
    }
}

/// Adds `span`'s `traceparent` (and `tracestate`) to outgoing `headers`; nothing when the
/// span has no trace (no telemetry installed).
pub fn inject_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if let Some(cx) = as_parent(span) {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// `span`'s W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), if it has a trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = as_parent(span)?;
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    fields.remove("traceparent")
}

/// Whether this process's installed subscriber exports spans; set by [`init`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (its [`init`] was given an OTLP endpoint and its
/// subscriber is the one installed). Attributes only a trace backend reads can be left off
/// spans when it does not.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A count as a span field: a signed integer, which OpenTelemetry has and both layers
/// record as a number. tracing-opentelemetry has no unsigned integers: it records a `u64`
/// or `usize` field through `Debug`, as a string attribute (`"3"`), formatting and
/// allocating it on every request (0.8k instructions of a two-point `/route`,
/// docs/agent-benchmarks.md).
pub fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The trace id (32 lowercase hex digits) of `span` when its trace is sampled and this
/// process exports spans, i.e. when the trace will be found in the collector: what a
/// latency exemplar may point to.
///
/// Without an exporter no span of this process reaches a collector, so there is nothing to
/// point at; and reading the id (the span's OpenTelemetry context, then the hex) was about
/// 2% of a short `/route`'s instructions (`docs/agent-benchmarks.md`).
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let span_context = span_context(span);
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The remote context a `traceparent` value names, or `None` when it is malformed.
pub fn context_of(traceparent: &str) -> Option<Context> {
    if !well_formed(traceparent) {
        return None;
    }
    let fields = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&fields);
    cx.span().span_context().is_valid().then_some(cx)
}

/// `version-traceid-spanid-flags` with their W3C lengths: the SDK's parser pads short ids,
/// which would make a truncated header name another trace.
fn well_formed(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    parts.len() >= 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(len, part)| part.len() == *len && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The trace id (32 lowercase hex digits) of a `traceparent`, or `None` when it is malformed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    context_of(traceparent).map(|cx| cx.span().span_context().trace_id().to_string())
}

/// Makes `span` the child of the `traceparent` value (when well formed), e.g. one carried in
/// a message rather than a header.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = context_of(traceparent) {
        set_parent(span, cx);
    }
}

/// Links `span` to the span `other` (e.g. a batch's span to each item's own trace). Links
/// are only exported: without an exporter this does nothing.
pub fn link(span: &tracing::Span, other: &tracing::Span) {
    let context = span_context(other);
    if context.is_valid() {
        span.add_link(context);
    }
}

#[cfg(test)]
mod tests;
