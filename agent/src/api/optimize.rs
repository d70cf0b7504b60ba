//! `POST /optimize`: VROOM-compatible vehicle routing, solved by `edgeroute-vrp` and
//! stored as a plan (see [`super::plans`]) before the answer is sent.
//!
//! Errors use VROOM's body, `{"code": 2, "error": "..."}`: code 2 (HTTP 400) for input
//! errors, code 3 (HTTP 400) for routing errors (a location that does not snap, or two the graph
//! cannot connect), code 1
//! (HTTP 500, detail logged only) for internal failures.
//!
//! The body must be declared JSON (`application/json` or `application/*+json`): anything
//! else is refused with 415 (`code: 2`) before it is read, so a web page on another origin
//! cannot post a "simple" (form or `text/plain`) request to an open agent.

use edgeroute_server::telemetry::count;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, Request, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    middleware::{Next, from_fn, map_response},
    response::{IntoResponse, Response},
    routing::post,
};
use edgeroute_engine::{Coord, Graph, Snap};
use edgeroute_protocol::vroom::{self, Input, OptimizeResponse, Output};
use edgeroute_vrp::{
    ProfileMatrices, SolveOptions, check_feasibility, solve,
    vroom::{self as convert, Places, Times},
};
use tower_http::limit::RequestBodyLimitLayer;

use super::AppState;
use crate::{
    error::{InternalError, ResponseCode},
    routing::matrix::{Matrices, MatrixError, TimeUnit, matrix},
    storage::NewPlan,
};

/// Time budget when the request gives no `time_limit_ms`.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(1000);

/// Solver threads per request (the "second core").
const THREADS: usize = 2;

/// Which solver computed a plan. Stored plans and their readers know it by this name,
/// from before the solver left the engine crate, so the label stays.
pub fn solver_version() -> String {
    format!("edgeroute-engine {}", env!("CARGO_PKG_VERSION"))
}

/// Routes of this module.
pub fn router(state: &AppState) -> Router<AppState> {
    let limit = state.limits.max_optimize_body_bytes;
    Router::new()
        .route("/optimize", post(optimize))
        // The `Bytes` extractor has its own 2 MB default, which would otherwise cap custom
        // matrices (a 1,001-location pair is about 8 MB) below the configured limit.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(map_response(move |response: Response| async move {
            too_large_as_vroom(response, limit)
        }))
        .layer(from_fn(require_json))
}

/// Whether a `Content-Type` value declares JSON: `application/json` or
/// `application/<anything>+json`, parameters (`; charset=utf-8`) allowed, case-insensitive.
fn is_json_content_type(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application")
        && (subtype == "json" || (subtype.len() > "+json".len() && subtype.ends_with("+json")))
}

/// Refuse a body not declared JSON with 415 in VROOM's shape, before it is read.
async fn require_json(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(is_json_content_type)
    {
        return next.run(request).await;
    }
    let mut error = VroomError::input("Content-Type must be application/json");
    error.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    error.into_response()
}

/// VROOM clients read `code` as a number, so a body refused for its size is answered in
/// VROOM's shape (`code: 2`) rather than the routing API's OSRM-style error.
fn too_large_as_vroom(response: Response, limit: usize) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let mut error = VroomError::input(format!(
            "Request body too large: at most {limit} bytes (--max-optimize-body-bytes)"
        ));
        error.status = StatusCode::PAYLOAD_TOO_LARGE;
        return error.into_response();
    }
    response
}

/// A failed optimisation, as VROOM reports it.
#[derive(Debug)]
pub struct VroomError {
    code: u32,
    status: StatusCode,
    message: String,
    internal: Option<String>,
    outbox_full: bool,
}

impl VroomError {
    /// `code: 2`, HTTP 400.
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            code: vroom::code::INPUT,
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            internal: None,
            outbox_full: false,
        }
    }

    /// `code: 3`, HTTP 400.
    pub fn routing(message: impl Into<String>) -> Self {
        Self {
            code: vroom::code::ROUTING,
            ..Self::input(message)
        }
    }

    /// `code: 3`, HTTP 503: no road graph to compute the matrix with.
    fn not_ready() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..Self::routing("No road graph is loaded yet; retry when /readyz is 200.")
        }
    }

    /// `code: 1`, HTTP 503 with `Retry-After`: refused by admission control before any work.
    fn overloaded(message: impl Into<String>) -> Self {
        Self {
            code: vroom::code::INTERNAL,
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            internal: None,
            outbox_full: false,
        }
    }

    /// `code: 1`, HTTP 503 with `Retry-After`: the sync outbox is full, so the plan cannot be
    /// recorded for the control plane and is refused rather than lost.
    fn outbox_full(max: u64) -> Self {
        Self {
            code: vroom::code::INTERNAL,
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "The sync outbox is full ({max} events wait for the control plane): new plans are \
                 refused until it is reachable again. Routing requests are still served."
            ),
            internal: None,
            outbox_full: true,
        }
    }

    /// `code: 1`, HTTP 500; the detail is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            code: vroom::code::INTERNAL,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "Internal server error.".to_owned(),
            internal: Some(detail.to_string()),
            outbox_full: false,
        }
    }
}

impl From<edgeroute_vrp::Error> for VroomError {
    fn from(err: edgeroute_vrp::Error) -> Self {
        Self::input(err.to_string())
    }
}

impl IntoResponse for VroomError {
    fn into_response(self) -> Response {
        let body = Output {
            code: self.code,
            error: Some(self.message),
            ..Output::default()
        };
        let label = match self.code {
            _ if self.outbox_full => "OutboxFull",
            vroom::code::INTERNAL if self.status == StatusCode::SERVICE_UNAVAILABLE => "Overloaded",
            vroom::code::INPUT => "InvalidInput",
            vroom::code::ROUTING => "RoutingError",
            _ => "InternalError",
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ResponseCode(label));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = if label == "Overloaded" { "1" } else { "5" };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
        }
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalError(detail));
        }
        response
    }
}

/// The `time_limit_ms` query parameter, checked against the server maximum.
fn time_limit(query: &HashMap<String, String>, max: Duration) -> Result<Duration, VroomError> {
    let Some(raw) = query.get("time_limit_ms") else {
        return Ok(DEFAULT_TIME_LIMIT.min(max));
    };
    let ms: u64 = raw.parse().map_err(|_| {
        VroomError::input(format!(
            "time_limit_ms must be a non-negative integer, got {raw:?}"
        ))
    })?;
    let limit = Duration::from_millis(ms);
    if limit > max || ms == 0 {
        return Err(VroomError::input(format!(
            "time_limit_ms must be within 1..={}, got {ms}",
            max.as_millis()
        )));
    }
    Ok(limit)
}

/// Everything computed on the blocking pool.
struct Solved {
    output: Output,
    graph: Option<(String, String)>,
}

/// Solve a VROOM problem (custom matrices, or coordinates routed on the served graph).
#[utoipa::path(post, path = "/optimize", tag = "vroom",
    security(("bearer" = [])),
    request_body(content = String, content_type = "application/json", description = "VROOM input (documented subset)"),
    params(("time_limit_ms" = Option<u64>, Query, description = "Solver time budget (default 1000, at most the server's --max-vrp-time-limit-ms)")),
    responses(
        (status = 200, description = "VROOM output plus `plan_id`; `Location: /plans/{id}`"),
        (status = 400, description = "`code: 2` input error or `code: 3` routing error"),
        (status = 413, description = "`code: 2`: body over `--max-optimize-body-bytes`"),
        (status = 415, description = "`code: 2`: the body is not declared `application/json`"),
    ))]
pub async fn optimize(
    State(state): State<AppState>,
    owner: super::plans::PlanOwner,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Result<Response, VroomError> {
    let started = Instant::now();
    let Query(query) = query.map_err(|_| VroomError::input("Query string malformed"))?;
    let limits = state.limits.clone();
    let time_limit = time_limit(&query, limits.max_vrp_time_limit)?;
    let mut input: Input = serde_json::from_slice(&body)
        .map_err(|e| VroomError::input(format!("Invalid JSON: {e}")))?;
    let tasks = input.jobs.len() + input.shipments.len();
    if tasks > limits.max_vrp_jobs {
        return Err(VroomError::input(format!(
            "Too many jobs: {tasks} jobs and shipments, at most {} allowed",
            limits.max_vrp_jobs
        )));
    }
    let places = Places::collect(&input)?;
    let graph = if places.custom {
        if input.options.is_some_and(|o| o.g) {
            return Err(VroomError::input(
                "options.g: geometry needs coordinates, not custom matrices",
            ));
        }
        None
    } else {
        let fleet = fleet(&state, &input)?;
        // The profiles are resolved: each vehicle gets its profile's matrices below.
        for v in &mut input.vehicles {
            v.profile = None;
        }
        Some(fleet)
    };
    let radius = limits.snap_radius_m;
    let (jobs, shipments, vehicles) = (
        input.jobs.len(),
        input.shipments.len(),
        input.vehicles.len(),
    );
    let admission = &state.admission;
    if let Err(reason) = admission.check_lag() {
        state.metrics.overload().shed_for(reason.label());
        return Err(VroomError::overloaded(
            "The agent is overloaded; retry shortly.",
        ));
    }
    // Held by the blocking task, so the slot stays taken until the solver really stops,
    // even if the client has gone away.
    let slot = admission.solves.enter().await.map_err(|_| {
        state.metrics.overload().solves_rejected.inc();
        VroomError::overloaded(format!(
            "The solve queue is full ({} solves waiting for {} slots); retry shortly.",
            admission.solves.queued(),
            admission.solves.size()
        ))
    })?;
    tracing::Span::current().record("edgeroute.vrp.jobs", count(tasks));
    let span = tracing::info_span!(
        "solve",
        edgeroute.vrp.jobs = count(tasks),
        edgeroute.vrp.vehicles = count(vehicles)
    );
    let solved = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        span.in_scope(|| compute(&input, &places, graph.as_ref(), radius, time_limit, started))
    })
    .await
    .map_err(VroomError::internal)??;

    let output = solved.output;
    let stored = serde_json::to_value(&output).map_err(VroomError::internal)?;
    let (graph_version, graph_checksum) = solved.graph.unzip();
    let new_plan = NewPlan {
        node: state.node.id.clone(),
        graph_version,
        graph_checksum,
        solver_version: solver_version(),
        jobs,
        shipments,
        vehicles,
        output: stored,
        traceparent: None,
    };
    // The plan carries this span's trace context to the center, whose ingest of it joins
    // the same trace.
    let span = tracing::info_span!("plan.store", edgeroute.vrp.jobs = count(tasks));
    let new_plan = NewPlan {
        traceparent: edgeroute_server::telemetry::traceparent(&span),
        ..new_plan
    };
    let store = Arc::clone(&state.store);
    let plan = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let plan = store.put_plan(&new_plan, owner.id())?;
            store.flush()?;
            Ok::<_, crate::storage::Error>(plan)
        })
    })
    .await
    .map_err(VroomError::internal)?
    .map_err(|e| match e {
        crate::storage::Error::OutboxFull(max) => {
            state.metrics.plan_refused_outbox_full();
            VroomError::outbox_full(max)
        }
        e => VroomError::internal(format!("storing the plan: {e}")),
    })?;
    let location = HeaderValue::from_str(&format!("/plans/{}", plan.id));
    let mut response = Json(OptimizeResponse {
        output,
        plan_id: plan.id,
    })
    .into_response();
    if let Ok(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The graphs a fleet travels on: one per distinct vehicle `profile` (default `car`, as
/// VROOM's), the first vehicle's first.
struct Fleet {
    graphs: Vec<Arc<Graph>>,
    /// Per vehicle, its index in `graphs`.
    vehicle_graph: Vec<usize>,
}

/// Each vehicle's `profile` picks the graph its matrix comes from, as in VROOM; an unknown
/// profile is VROOM's input error for it.
fn fleet(state: &AppState, input: &Input) -> Result<Fleet, VroomError> {
    let mut names: Vec<&str> = Vec::new();
    let mut graphs = Vec::new();
    let mut vehicle_graph = Vec::with_capacity(input.vehicles.len());
    for v in &input.vehicles {
        let name = match v.profile.as_deref() {
            None => "car",
            Some(p) if crate::routing::profiles::is_default(p) => "car",
            Some(p) => p,
        };
        let index = match names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                let picked = state
                    .graph_for_profile(name)
                    .map_err(|_| VroomError::input(format!("Invalid profile: {name}.")))?;
                graphs.push(picked.graph.ok_or_else(VroomError::not_ready)?);
                names.push(name);
                names.len() - 1
            }
        };
        vehicle_graph.push(index);
    }
    if graphs.is_empty() {
        // No vehicles: the problem is refused later with its own message; route on the
        // default graph meanwhile.
        graphs.push(state.graph().map_err(|_| VroomError::not_ready())?);
    }
    Ok(Fleet {
        graphs,
        vehicle_graph,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Snap every place on `graph` and compute its matrices.
fn graph_matrices(
    graph: &Graph,
    places: &Places,
    radius: f64,
) -> Result<(Vec<Snap>, Matrices), VroomError> {
    let snaps = places
        .points
        .iter()
        .zip(&places.owners)
        .map(|(p, owner)| {
            Coord::new(p[0], p[1])
                .and_then(|c| graph.snap(c, radius))
                .map_err(|_| {
                    VroomError::routing(format!(
                        "{owner}: no road within {radius} m of [{}, {}]",
                        p[0], p[1]
                    ))
                })
        })
        .collect::<Result<Vec<Snap>, _>>()?;
    let matrices = matrix(graph, &snaps, TimeUnit::Seconds).map_err(|e| match e {
        // As VROOM: a pair the road graph cannot connect is a routing error.
        MatrixError::Unreachable { from, to } => VroomError::routing(format!(
            "Unfound route from {} to {}",
            places.owners[from], places.owners[to]
        )),
        MatrixError::Range(e) => VroomError::from(e),
    })?;
    Ok((snaps, matrices))
}

/// Matrices (from the fleet's graphs when needed), solve, check, shape the output.
fn compute(
    input: &Input,
    places: &Places,
    fleet: Option<&Fleet>,
    radius: f64,
    time_limit: Duration,
    started: Instant,
) -> Result<Solved, VroomError> {
    let routing_started = Instant::now();
    // Per graph of the fleet: the places snapped on it and its matrices.
    let mut routed: Vec<(Vec<Snap>, Arc<ProfileMatrices>)> = Vec::new();
    let (durations, distances) = match fleet {
        None => convert::custom_matrices(input)?,
        Some(fleet) => {
            for graph in &fleet.graphs {
                let (snaps, m) = graph_matrices(graph, places, radius)?;
                routed.push((
                    snaps,
                    Arc::new(ProfileMatrices {
                        durations: m.durations,
                        distances: Some(m.distances),
                    }),
                ));
            }
            let first = &routed[0].1;
            (first.durations.clone(), first.distances.clone())
        }
    };
    let routing = routing_started.elapsed();
    let mut problem = convert::to_problem(input, places, durations, distances)?;
    if let Some(fleet) = fleet {
        for (vehicle, &g) in problem.vehicles.iter_mut().zip(&fleet.vehicle_graph) {
            if g != 0 {
                vehicle.matrices = Some(routed[g].1.clone());
            }
        }
    }
    let loading = started.elapsed().saturating_sub(routing);
    let solving_started = Instant::now();
    let options = SolveOptions {
        time_limit,
        threads: THREADS,
        ..SolveOptions::default()
    };
    let solution = solve(&problem, &options)?;
    let solving = solving_started.elapsed();
    let stats = check_feasibility(&problem, &solution).map_err(|v| {
        VroomError::internal(format!("solver returned an infeasible solution: {v}"))
    })?;
    let times = Times {
        loading: millis(loading),
        solving: millis(solving),
        routing: millis(routing),
    };
    let mut output = convert::to_output(input, places, &problem, &solution, &stats, times);
    if let Some(fleet) = fleet
        && input.options.is_some_and(|o| o.g)
    {
        for (route, out) in solution.routes.iter().zip(&mut output.routes) {
            // Drawn on the graph of the vehicle's profile, between its own snaps.
            let g = fleet.vehicle_graph.get(route.vehicle).copied().unwrap_or(0);
            let (graph, snaps) = (&fleet.graphs[g], &routed[g].0);
            let points = route.visited();
            let mut coords: Vec<Coord> = Vec::new();
            for pair in points.windows(2) {
                let leg = graph
                    .route(&snaps[pair[0]], &snaps[pair[1]])
                    .map_err(|e| VroomError::routing(format!("route geometry: {e}")))?;
                let skip = usize::from(!coords.is_empty() && coords.last() == leg.geometry.first());
                coords.extend(leg.geometry.iter().skip(skip));
            }
            out.geometry = Some(edgeroute_engine::polyline::encode(&coords, 5));
        }
    }
    Ok(Solved {
        output,
        // The plan names the first vehicle's graph: the default one unless the fleet is of
        // another profile.
        graph: fleet.map(|f| {
            let g = &f.graphs[0];
            (g.info().version.clone(), g.sha256().to_owned())
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limit_defaults_and_is_capped() {
        let max = Duration::from_secs(5);
        let q = |v: &str| HashMap::from([("time_limit_ms".to_owned(), v.to_owned())]);
        assert_eq!(
            time_limit(&HashMap::new(), max).unwrap(),
            DEFAULT_TIME_LIMIT
        );
        assert_eq!(
            time_limit(&q("250"), max).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(time_limit(&q("6000"), max).unwrap_err().code, 2);
        assert_eq!(time_limit(&q("abc"), max).unwrap_err().code, 2);
        assert_eq!(time_limit(&q("0"), max).unwrap_err().code, 2);
    }
}
