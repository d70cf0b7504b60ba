//! The middleware stack, in one [`ServiceBuilder`], outermost first:
//!
//! 1. request id: accept `x-request-id` or make one (UUID), echo it on the response, never
//!    indexed by HTTP/2 header compression ([`unindexed_request_id`]);
//! 2. trace span per request (request id, endpoint template, OpenTelemetry HTTP attributes),
//!    the child of the client's W3C `traceparent` when it sends one; never the path, which
//!    holds coordinates;
//! 3. metrics (count and latency by endpoint template and final status; a request whose
//!    client went away first is counted with status [`CLIENT_CLOSED`]);
//! 4. CORS, above everything that can refuse, so 401/429/503/504 carry CORS headers; only
//!    for requests with an `Origin` and preflights (`middleware/cors.rs`);
//! 5. admission control ([`mod@super::admission`]): 503 + `Retry-After` at once when the
//!    runtime lags or the admission queue is full, before any other work;
//! 6. compression;
//! 7. JSON errors: any bare error status from below (404/405/413...) becomes an OSRM-style
//!    JSON body, and internal error details are logged here, never sent;
//! 8. API-key auth (401; health, readiness, metrics and the OpenAPI document stay open);
//! 9. per-key token-bucket rate limit (429 + `Retry-After`);
//! 10. timeout (504), as JSON (`middleware/deadline.rs`);
//! 11. panic catcher (500 JSON and a log line).
//!
//! Body-size limits are per route (see each module's `router()`); the OSRM services, which
//! read no body, refuse one announced over the limit in [`super::osrm::OsrmRequest`].

use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use edgeroute_protocol::osrm::ErrorCode;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    cors::{AllowOrigin, Any as AnyOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use self::{
    admit::AdmitLayer, deadline::DeadlineLayer, guard::GuardLayer, metered::MeteredLayer,
    span::SpanLayer,
};
use super::{AppState, Auth, admission::Shed};
use crate::{
    error::{ApiError, InternalError, code_for_status},
    metrics::{CLIENT_CLOSED, Endpoint, HttpLabels, method_label},
};

/// Paths that need no key and are not rate limited.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
}

/// The OSRM-style body of a request the HTTP layer refused before it reached the router
/// (see `edgeroute_server::protocol_errors`): 414 for a URL too long, 431 for headers too
/// large, 400 for a malformed request line or header.
pub fn protocol_error_body(status: u16) -> String {
    let (code, message) = match status {
        414 => (
            ErrorCode::InvalidUrl,
            "URL too long: at most 65,534 bytes (send long coordinate lists as polyline(...))",
        ),
        431 => (ErrorCode::TooBig, "Request headers too large"),
        _ => (
            ErrorCode::InvalidUrl,
            "Malformed request: the request line or a header (such as Content-Length) is not valid HTTP",
        ),
    };
    serde_json::json!({"code": code.as_str(), "message": message}).to_string()
}

/// The key a request was authenticated with, for rate limiting and plan ownership: the
/// first 16 hex digits of the key's SHA-256, or `anonymous` under `--no-auth`. Shared, so
/// putting it on a request is a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(Arc<str>);

impl KeyId {
    const ANONYMOUS: &str = "anonymous";

    /// The id of the key whose SHA-256 is `digest`.
    pub fn of_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(&digest[..8]).into())
    }

    /// The id of requests under `--no-auth` without a known key.
    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.into())
    }

    /// Whether this is [`KeyId::anonymous`]: no key, so it owns nothing.
    pub fn is_anonymous(&self) -> bool {
        &*self.0 == Self::ANONYMOUS
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Apply the whole stack to `router`. No layer is an `axum::middleware::from_fn`, which
/// copies every layer below it for each request (`guard.rs` has the figures).
pub fn stack(router: Router, state: &AppState) -> Router {
    // Every JSON log line of this process says which node and region wrote it.
    edgeroute_server::telemetry::log::set_process_field("node", state.node.name.clone());
    edgeroute_server::telemetry::log::set_process_field("region", state.node.region.clone());
    let limits = &state.limits;
    router.layer(
        ServiceBuilder::new()
            .layer(GuardLayer::new(state.clone(), refuse_on_lag))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .map_request(unindexed_request_id)
            .layer(SpanLayer)
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(MeteredLayer::new(state.clone()))
            .map_response(cors_vary)
            .layer(cors(&state.cors_origins))
            .layer(AdmitLayer::new(state.clone()))
            .layer(CompressionLayer::new())
            .map_response(json_errors)
            .layer(GuardLayer::new(state.clone(), authenticate))
            .layer(GuardLayer::new(state.clone(), rate_limit))
            .layer(DeadlineLayer::new(limits.request_timeout))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// Marks the request's `x-request-id` (made above or sent by the client) as a value HTTP/2
/// header compression must not index; the response's copy keeps the mark. HPACK otherwise
/// adds every response's id to the connection's table, where no later response can use it,
/// and each response paid for inserting one entry and evicting another: 5% of the CPU of
/// an HTTPS `/route` at saturation, for 9 bytes more per response now that the header's
/// name is not in the table either (docs/agent-benchmarks.md). HTTP/1 ignores the mark.
fn unindexed_request_id(mut request: Request) -> Request {
    if let Some(id) = request.headers_mut().get_mut(X_REQUEST_ID) {
        id.set_sensitive(true);
    }
    request
}

/// The request id header, as tower-http's request id layers name it.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `Vary` of every response the CORS layer answers or passes, as tower-http's default
/// writes it, but from a static value: the layer joins its list into a new header value for
/// each response, 1.5k instructions of a two-point `/route` (docs/agent-benchmarks.md).
/// Appended, so the `Vary: accept-encoding` of compression stays.
const CORS_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

fn cors_vary(mut response: Response) -> Response {
    response.headers_mut().append(header::VARY, CORS_VARY);
    response
}

/// The CORS layer without its own `Vary` ([`cors_vary`] adds it), for the requests a
/// browser sends ([`cors::BrowserCorsLayer`]).
fn cors(origins: &[String]) -> cors::BrowserCorsLayer {
    let base = CorsLayer::new()
        .vary([])
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER]);
    cors::BrowserCorsLayer::new(if origins.iter().any(|o| o == "*") {
        base.allow_origin(AnyOrigin)
    } else {
        base.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
    })
}

/// Counts a request as in flight until dropped. A request whose future is dropped before it
/// answers (its client closed the connection) is counted with status [`CLIENT_CLOSED`], so
/// the gauge never leaks and every request appears in the counter.
struct Recording {
    state: AppState,
    endpoint: Endpoint,
    method: &'static str,
    started: Instant,
    answered: bool,
    /// The request's span, whose trace becomes the latency bucket's exemplar.
    span: tracing::Span,
}

impl Recording {
    fn start(state: AppState, endpoint: Endpoint, method: &'static str) -> Self {
        state.metrics.in_flight().inc();
        Self {
            state,
            endpoint,
            method,
            started: Instant::now(),
            answered: false,
            span: tracing::Span::current(),
        }
    }

    fn observe(&self, status: u16, latency: Duration) {
        self.state.metrics.observe_request(
            &HttpLabels {
                endpoint: self.endpoint.clone(),
                method: self.method,
                code: status,
            },
            latency.as_secs_f64(),
            edgeroute_server::telemetry::sampled_trace_id(&self.span),
        );
    }

    fn answered(mut self, response: &Response) {
        self.answered = true;
        // One clock read for both records of the request.
        let latency = self.started.elapsed();
        self.state.window.record(
            self.endpoint.as_str(),
            response.status().as_u16(),
            response
                .extensions()
                .get::<crate::error::ResponseCode>()
                .map(|c| c.0),
            latency,
        );
        self.observe(response.status().as_u16(), latency);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.state.metrics.in_flight().dec();
        if !self.answered {
            self.observe(CLIENT_CLOSED, self.started.elapsed());
        }
    }
}

/// Requests admission control never refuses: probes and metrics must answer under overload,
/// admin uploads are the operator's, `/optimize` has its own queue (answered in VROOM's
/// shape), and CORS preflights cost nothing.
fn bypasses_admission(request: &Request) -> bool {
    let path = request.uri().path();
    is_open(path)
        || path.starts_with("/admin")
        || path == "/optimize"
        || request.method() == Method::OPTIONS
}

/// The runtime-lag check, outermost: at twice the saturation rate half the requests are
/// refused, so a refusal must cost far less than an answer. Before the request id, the
/// span and CORS it costs about 40% less CPU than inside them. The refusal is still counted
/// in `edgeroute_agent_http_requests_total` (code 503) and by reason, and carries the CORS
/// headers an allowed origin needs to read it ([`allow_origin`]).
fn refuse_on_lag(state: &AppState, request: &mut Request) -> Option<Response> {
    if bypasses_admission(request) {
        return None;
    }
    let reason = state.admission.check_lag().err()?;
    let recording = Recording::start(
        state.clone(),
        Endpoint::of(request),
        method_label(request.method()),
    );
    let mut response = shed(state, reason);
    allow_origin(&mut response, &state.cors_origins, request);
    recording.answered(&response);
    Some(response)
}

/// The CORS headers of a simple response, for a refusal made outside the CORS layer:
/// without them a browser on another origin sees a network error, not the 503 and its
/// `Retry-After`, and cannot back off as asked. Preflights are never refused there, so
/// this is the whole of what the layer would add; a header lookup, not the layer's cost.
fn allow_origin(response: &mut Response, origins: &[String], request: &Request) {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return;
    };
    let headers = response.headers_mut();
    if origins.iter().any(|o| o == "*") {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if origins.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    } else {
        return;
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id,retry-after"),
    );
}

/// 503 + `Retry-After`, counted by reason.
fn shed(state: &AppState, reason: Shed) -> Response {
    state.metrics.overload().shed_for(reason.label());
    ApiError::overloaded("The agent is overloaded; retry shortly").into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "No such endpoint".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed on this path".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_owned(),
        s => s.canonical_reason().unwrap_or("Error").to_owned(),
    }
}

fn json_errors(response: Response) -> Response {
    if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
        tracing::error!(error = %detail, "internal error");
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let replacement =
        ApiError::new(code_for_status(status), default_message(status)).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = new_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    Response::from_parts(parts, body)
}

/// What the `Authorization` header holds.
enum Credentials<'a> {
    /// No header, or another scheme than `Bearer`.
    Missing,
    /// The header's bytes are not UTF-8, so no key can be read from it.
    NotUtf8,
    /// A `Bearer` token (the scheme is case-insensitive, RFC 9110 section 11.1).
    Bearer(&'a str),
}

fn credentials(request: &Request) -> Credentials<'_> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Credentials::Missing;
    };
    let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
        return Credentials::NotUtf8;
    };
    match value.trim().split_once([' ', '\t']) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Credentials::Bearer(token.trim())
        }
        _ => Credentials::Missing,
    }
}

const NOT_UTF8: &str =
    "Invalid Authorization header: it is not valid UTF-8, so no key can be read from it";

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthorized, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn authenticate(state: &AppState, request: &mut Request) -> Option<Response> {
    let path = request.uri().path();
    if is_open(path) || request.method() == Method::OPTIONS {
        return None;
    }
    let auth = &state.auth;
    let credentials = credentials(request);
    let not_utf8 = matches!(credentials, Credentials::NotUtf8);
    let presented = match credentials {
        Credentials::Bearer(token) => Some(Auth::digest(token)),
        Credentials::Missing | Credentials::NotUtf8 => None,
    };
    if path.starts_with("/admin") {
        if auth.admin_id().is_none() {
            return Some(
                ApiError::new(
                    ErrorCode::Forbidden,
                    "The admin API is disabled: start the agent with --admin-key",
                )
                .into_response(),
            );
        }
        return match presented {
            None if not_utf8 => Some(unauthorized(NOT_UTF8)),
            None => Some(unauthorized(
                "Missing admin key: send Authorization: Bearer <key>",
            )),
            Some(digest) => match auth.admin_key(&digest) {
                Some(id) => {
                    request.extensions_mut().insert(id.clone());
                    None
                }
                None => Some(unauthorized("Invalid admin key")),
            },
        };
    }
    let known = presented
        .as_ref()
        .and_then(|digest| auth.api_key(digest).or_else(|| auth.admin_key(digest)));
    let key = match (known, presented) {
        (Some(id), _) => id.clone(),
        _ if auth.open => KeyId::anonymous(),
        (None, None) if not_utf8 => return Some(unauthorized(NOT_UTF8)),
        (None, None) => {
            return Some(unauthorized(
                "Missing API key: send Authorization: Bearer <key>",
            ));
        }
        (None, Some(_)) => return Some(unauthorized("Invalid API key")),
    };
    request.extensions_mut().insert(key);
    None
}

/// Per-key token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second == 0` disables limiting.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`; `Err(seconds to wait)` when empty.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.per_second;
            // `as` saturates; the wait is small and positive.
            Err((wait.ceil() as u64).max(1))
        }
    }
}

fn rate_limit(state: &AppState, request: &mut Request) -> Option<Response> {
    let key = request.extensions().get::<KeyId>()?;
    let retry_after = state.rate.check(key.as_str()).err()?;
    Some(ApiError::too_many_requests(retry_after).into_response())
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "unknown panic payload".to_owned()
    };
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

mod admit;
mod cors;
mod deadline;
mod guard;
mod metered;
mod span;

#[cfg(test)]
mod tests;
