//! The center's part of a trace: each request's span continues the caller's W3C
//! `traceparent`, and each plan a report carries gets an ingest span in the plan's own trace
//! (the agent's `plan.store` span is its parent), linked to the report's span.

use axum::extract::Request;
use edgeroute_protocol::sync::RawEvent;
use serde::Deserialize;

/// The span of one request to the center, the child of the caller's `traceparent` if any.
pub fn make_span(request: &Request) -> tracing::Span {
    let method = request.method().as_str();
    let path = request.uri().path();
    let host = edgeroute_server::telemetry::server_address(request.headers());
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {path}"),
        otel.kind = "server",
        method,
        uri = path,
        http.request.method = method,
        url.path = path,
        server.address = host.as_ref().map(axum::http::uri::Authority::host),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    edgeroute_server::telemetry::set_parent_from_headers(&span, request.headers());
    span
}

/// Records the answer's status on the request's span.
pub fn on_response<B>(
    response: &axum::http::Response<B>,
    _latency: std::time::Duration,
    span: &tracing::Span,
) {
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// What the ingest reads of a plan event: its trace context.
#[derive(Deserialize)]
struct TracedEvent {
    #[serde(default)]
    plan: Option<TracedPlan>,
}

#[derive(Deserialize)]
struct TracedPlan {
    seq: u64,
    #[serde(default)]
    traceparent: Option<String>,
}

/// One span per plan event that carries a trace context, open while the report is stored:
/// its parent is the plan's `traceparent`, and it links to the current (report) span. Events
/// without one (agents before traces, untraced plans) get none.
pub fn plan_spans(node: &str, events: &[RawEvent]) -> Vec<tracing::Span> {
    let report = tracing::Span::current();
    events
        .iter()
        .filter_map(|raw| {
            let event: TracedEvent = serde_json::from_str(raw.get()).ok()?;
            let plan = event.plan?;
            let traceparent = plan.traceparent?;
            let span = tracing::info_span!(
                "sync.ingest_plan",
                node,
                edgeroute.plan.seq = edgeroute_server::telemetry::count(plan.seq),
                otel.status_code = tracing::field::Empty,
            );
            edgeroute_server::telemetry::set_parent_from_traceparent(&span, &traceparent);
            edgeroute_server::telemetry::link(&span, &report);
            Some(span)
        })
        .collect()
}
