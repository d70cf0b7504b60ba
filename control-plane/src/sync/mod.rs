//! The sync API agents call: `POST /sync/v1/report` (events in, watermark and directives
//! out) and `GET /sync/v1/graphs/{version}` (artifact download with range support).
//!
//! # Layout
//! - [`store`]: the [`store::CenterStore`] trait and the watermark rule.
//! - [`directive_cache`]: what every report's directives read, kept per replica briefly.
//! - [`sled_store`]: its embedded sled implementation.
//! - [`postgres`]: its PostgreSQL implementation, for several replicas.
//! - [`regions`]: in a cluster, each EdgeRegion's graph version becomes its region's graph.

pub mod directive_cache;
pub mod postgres;
pub mod regions;
pub mod sled_store;
pub mod store;
pub mod trace;

use axum::{
    Extension, Json, Router,
    extract::{Path, Request, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use edgeroute_protocol::sync::{
    Directives, EventHeader, GraphDirective, RawEvent, Report, ReportAck,
};
use tokio::io::AsyncSeekExt;

use crate::{
    graphs::registry::{RangeRequest, file_body, now_ms, parse_range},
    serve::{
        Center,
        auth::ClientCert,
        error::{ApiError, json_rejection},
        metrics::Shed,
    },
};

/// Routes of the sync API.
pub fn router(center: &Center) -> Router<Center> {
    Router::new()
        .route(
            "/sync/v1/report",
            post(report)
                .layer(axum::extract::DefaultBodyLimit::max(
                    center.settings.max_report_bytes,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    center.clone(),
                    admit_report,
                )),
        )
        .route("/sync/v1/graphs/{version}", get(download))
}

/// Bound the reports ingested at once: a reconnect storm (thousands of agents, each with a
/// full batch) would otherwise have every body read, decoded and held at the same time.
/// The agent is authenticated first (so strangers cannot take the permits), then a permit
/// is taken without waiting, before the body is read; without one the answer is an
/// immediate 503 with `Retry-After`, which agents honour with jitter. Nothing was stored,
/// so the agent keeps its events and nothing acknowledged is at stake.
async fn admit_report(State(center): State<Center>, request: Request, next: Next) -> Response {
    let cert = request.extensions().get::<ClientCert>().cloned();
    if let Err(e) = center.auth.agent(request.headers(), cert) {
        return e.into_response();
    }
    let Ok(permit) = center.ingests.clone().try_acquire_owned() else {
        return overloaded(center.settings.ingest_retry_after_s);
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// The 503 of a shed report: the protocol's JSON error, `Retry-After`, and the mark the
/// metrics count as `overloaded`.
fn overloaded(retry_after_s: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Overloaded",
        "the control plane is ingesting as many reports as it may; retry after Retry-After seconds",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
    response.extensions_mut().insert(Shed);
    response
}

/// Longest accepted node, stream, region and version names.
const MAX_NAME: usize = 253;

fn check_name(what: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} must be 1 to {MAX_NAME} characters without control characters"
        )));
    }
    Ok(())
}

/// Check what the store relies on (names; events with a sequence number from 1) and
/// return the events' headers.
pub fn validate(report: &Report<RawEvent>) -> Result<Vec<EventHeader>, ApiError> {
    check_name("node", &report.node)?;
    check_name("stream", &report.stream)?;
    check_name("region", &report.region)?;
    report
        .events
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let header =
                EventHeader::of(raw).map_err(|e| ApiError::invalid(format!("events[{i}]: {e}")))?;
            if header.seq == 0 {
                return Err(ApiError::invalid(format!(
                    "events[{i}]: event sequence numbers start at 1; got 0"
                )));
            }
            Ok(header)
        })
        .collect()
}

/// Store the report's events, answer with the watermark and the directives.
async fn report(
    State(center): State<Center>,
    headers: HeaderMap,
    cert: Option<Extension<ClientCert>>,
    body: Result<Json<Report<RawEvent>>, JsonRejection>,
) -> Result<Json<ReportAck>, ApiError> {
    center.auth.agent(&headers, cert.map(|Extension(c)| c))?;
    let Json(report) = body.map_err(json_rejection)?;
    let event_headers = validate(&report)?;
    let region = report.region.clone();
    let pending = center.metrics.before_ingest(&report, &event_headers);
    let (seen, received_at_ms) = (crate::fleet::view::Seen::of(&report), now_ms());
    let node = report.node.clone();
    let (graph, window) = (
        report.graph.as_ref().map(|g| g.version.clone()),
        report.metrics.clone(),
    );
    let plan_spans = trace::plan_spans(&node, &report.events);
    let ingested = center
        .store
        .ingest(report, event_headers, received_at_ms)
        .await;
    if ingested.is_err() {
        for span in &plan_spans {
            span.record("otel.status_code", "ERROR");
        }
    }
    drop(plan_spans);
    let ingested = ingested.map_err(ApiError::storage)?;
    let acked_seq = ingested.watermark;
    center.metrics.ingested(pending, ingested);
    center.fleet.record(seen, received_at_ms, acked_seq);
    // Only an accepted report's window counts: a retried one arrives again.
    center.rollouts.windows.record_window(
        &region,
        &node,
        graph,
        window,
        center.rollouts.clock.now_ms(),
    );
    let directives = directives(&center, &region, &node).await?;
    Ok(Json(ReportAck {
        acked_seq,
        directives,
    }))
}

/// What the center wants from `node` of `region`: the region's graph, or during a graph
/// rollout the new graph (and the previous one as shadow) for canary nodes.
pub async fn directives(center: &Center, region: &str, node: &str) -> Result<Directives, ApiError> {
    let (version, shadow) = crate::rollout::graph::directive_graph(center, region, node)
        .await
        .map_err(ApiError::storage)?;
    let graph = match version {
        Some(version) => graph_directive(center, &version).await?,
        None => None,
    };
    let shadow = match shadow {
        Some(plan) => graph_directive(center, &plan.version)
            .await?
            .map(|g| plan.directive(g)),
        None => None,
    };
    Ok(Directives {
        graph,
        sync_interval_ms: center.settings.agent_sync_interval_ms,
        shadow,
        profile_graphs: crate::graphs::profiles::directives(center, region).await?,
    })
}

/// Where agents download a registered version (the metadata from the replica's
/// [`directive_cache`]).
pub(crate) async fn graph_directive(
    center: &Center,
    version: &str,
) -> Result<Option<GraphDirective>, ApiError> {
    Ok(center
        .directive_cache
        .graph(center.store.as_ref(), version)
        .await
        .map_err(ApiError::storage)?
        .map(|meta| GraphDirective {
            url: format!("/sync/v1/graphs/{}", meta.version),
            version: meta.version,
            sha256: meta.sha256,
            size_bytes: meta.size_bytes,
        }))
}

/// Stream an artifact; `Range: bytes=N-` resumes a cut download.
async fn download(
    State(center): State<Center>,
    Path(version): Path<String>,
    headers: HeaderMap,
    cert: Option<Extension<ClientCert>>,
) -> Result<Response, ApiError> {
    center.auth.agent(&headers, cert.map(|Extension(c)| c))?;
    let Some(meta) = center
        .store
        .graph(&version)
        .await
        .map_err(ApiError::storage)?
    else {
        return Err(ApiError::not_found(format!(
            "graph version {version:?} is not registered"
        )));
    };
    let path = center
        .registry
        .path(&meta.version)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal("registered artifact cannot be opened", e))?;
    let etag = format!("\"{}\"", meta.sha256);
    let size = meta.size_bytes;
    // A range is honoured only for the same artifact (If-Range), as RFC 9110 asks.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            size,
        )
    } else {
        RangeRequest::Full
    };
    let mut response = match range {
        RangeRequest::Full => {
            let mut r = file_body(file, size).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r
        }
        RangeRequest::Partial { start, end } => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::internal("artifact seek failed", e))?;
            let len = end - start + 1;
            let mut r = (StatusCode::PARTIAL_CONTENT, file_body(file, len)).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            r
        }
        RangeRequest::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RangeNotSatisfiable",
                format!("the artifact has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.sha256) {
        h.insert("x-checksum-sha256", v);
    }
    Ok(response)
}
