//! The request span as a plain service: made when a request comes in, entered while the
//! layers below are called and at every poll of their future, closed once the response is
//! ready. A server error is logged inside it as a warning ("response failed"), unless the
//! response is marked [`ExpectedStatus`].
//!
//! tower-http's `TraceLayer` did this and also wrapped the response body to time each of its
//! frames, for bodies that are whole buffers here: each frame entered and left the span
//! again and read the clock. Without it a two-point `/route` reads the clock 12 times
//! instead of 19 and runs 2.7k fewer instructions (`docs/agent-benchmarks.md`). The span
//! now ends when the response is ready, before hyper writes it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{extract::Request, response::Response};
use tower_http::request_id::RequestId;

use crate::api::health::ExpectedStatus;

/// The layer of [`Spanned`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanLayer;

impl<S> tower::Layer<S> for SpanLayer {
    type Service = Spanned<S>;

    fn layer(&self, inner: S) -> Spanned<S> {
        Spanned { inner }
    }
}

/// Runs every request inside its own span; see the module documentation.
#[derive(Debug, Clone)]
pub struct Spanned<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Spanned<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Error: std::fmt::Display,
    // As in `metered.rs`: the layers below pin their futures already.
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = InSpan<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = make_span(&request);
        let started = Instant::now();
        let inner = {
            // The layers below see the request span as the current one (the metrics take
            // their exemplar's trace from it).
            let _entered = span.enter();
            tracing::debug!("started processing request");
            self.inner.call(request)
        };
        InSpan {
            inner,
            span,
            started,
        }
    }
}

/// A request's response on its way, with its span.
pub struct InSpan<F> {
    inner: F,
    span: tracing::Span,
    started: Instant,
}

impl<F, E> Future for InSpan<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
    E: std::fmt::Display,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let result = ready!(Pin::new(&mut this.inner).poll(cx));
        // Read inside the log macros, which evaluate their fields only for a line that is
        // written: at `info` an answered request reads no clock here.
        let started = this.started;
        let latency_ms = || started.elapsed().as_millis() as u64;
        match &result {
            Ok(response) => {
                let status = response.status();
                record_status(&this.span, status);
                tracing::debug!(
                    status = status.as_u16(),
                    latency_ms = latency_ms(),
                    "finished processing request"
                );
                if status.is_server_error()
                    && response.extensions().get::<ExpectedStatus>().is_none()
                {
                    tracing::warn!(
                        classification = %format_args!("Status code: {status}"),
                        latency = %format_args!("{} ms", latency_ms()),
                        "response failed"
                    );
                }
            }
            Err(err) => tracing::warn!(
                classification = %format_args!("Error: {err}"),
                latency = %format_args!("{} ms", latency_ms()),
                "response failed"
            ),
        }
        Poll::Ready(result)
    }
}

fn make_span(request: &Request) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let endpoint = crate::metrics::template(request);
    let method = request.method().as_str();
    // The OpenTelemetry names of the request (name, kind, the `http.*`, `url.*` and
    // `server.*` attributes) are for the trace backend: `method` and `endpoint` say the
    // same in the logs. Without an exporter they are left empty, which neither the log nor
    // the OpenTelemetry layer records: 6k instructions of a two-point `/route`
    // (docs/agent-benchmarks.md).
    let otel = edgeroute_server::telemetry::exporting();
    let (scheme, host) = if otel {
        let tls = request
            .extensions()
            .get::<edgeroute_server::tls::ClientCert>()
            .is_some();
        (
            Some(if tls { "https" } else { "http" }),
            edgeroute_server::telemetry::server_address(request.headers()),
        )
    } else {
        (None, None)
    };
    let span = tracing::info_span!(
        "request",
        otel.name = otel.then(|| format!("{method} {endpoint}")),
        otel.kind = otel.then_some("server"),
        otel.status_code = tracing::field::Empty,
        request_id,
        method,
        endpoint,
        http.request.method = otel.then_some(method),
        http.route = otel.then_some(endpoint),
        http.response.status_code = tracing::field::Empty,
        url.scheme = scheme,
        server.address = host.as_ref().map(axum::http::uri::Authority::host),
        edgeroute.profile = tracing::field::Empty,
        edgeroute.graph.version = tracing::field::Empty,
        edgeroute.coordinates = tracing::field::Empty,
        edgeroute.vrp.jobs = tracing::field::Empty,
    );
    edgeroute_server::telemetry::set_parent_from_headers(&span, request.headers());
    span
}

/// The status on the span, for the trace backend only (as in [`make_span`]).
fn record_status(span: &tracing::Span, status: axum::http::StatusCode) {
    if edgeroute_server::telemetry::exporting() {
        span.record("http.response.status_code", status.as_u16());
        // Per the HTTP conventions a server span is an error only for a 5xx.
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}
