//! `GET /trip/v1/{profile}/{coordinates}`: OSRM's trip service, a travelling-salesman tour
//! solved by `edgeroute-vrp` over the graph's duration matrix ([`crate::routing::matrix`]).
//!
//! `roundtrip=true` (default): a closed tour starting and ending at the first coordinate
//! (with `source`/`destination` `any`, OSRM's answer is the same cycle). `roundtrip=false`
//! needs a fixed `source=first` and/or `destination=last`; `any`/`any` is `NotImplemented`,
//! as in OSRM. Coordinates the graph cannot connect answer `NoRoute`.

use std::time::Duration;

use axum::{Router, extract::State, routing::get};
use edgeroute_engine::{Coord, Graph};
use edgeroute_protocol::osrm::{ErrorCode, RouteOptions, TripResponse, TripWaypoint};
use edgeroute_vrp::{Job, Matrix, Problem, SolveOptions, StepKind, Vehicle, solve};

use super::{
    AppState,
    json::Json,
    osrm::{self, OsrmRequest, snap_all},
    params,
};
use crate::{
    error::{ApiError, from_engine},
    routing::matrix::{MatrixError, TimeUnit, matrix},
};

/// Solver budget of a trip.
const TIME_LIMIT: Duration = Duration::from_millis(500);
/// Iteration cap, so small trips answer fast and deterministically.
const MAX_ITERATIONS: u64 = 2000;

/// Routes of this module. No body-limit layer: the service reads no body, and [`OsrmRequest`]
/// refuses one announced over the limit.
pub fn router() -> Router<AppState> {
    Router::new().route("/trip/{version}/{profile}/{coordinates}", get(trip))
}

/// Trip endpoints: where the tour must start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripShape {
    /// Closed tour.
    pub roundtrip: bool,
    /// Starts at the first coordinate.
    pub source_first: bool,
    /// Ends at the last coordinate.
    pub destination_last: bool,
}

/// Split the trip options (`roundtrip`, `source`, `destination`) from the route options.
pub fn trip_shape(pairs: &params::Pairs) -> Result<(TripShape, params::Pairs), ApiError> {
    let mut shape = TripShape {
        roundtrip: true,
        source_first: false,
        destination_last: false,
    };
    let mut rest = Vec::with_capacity(pairs.len());
    let bad = |key: &str, value: &str| {
        ApiError::invalid_value(format!("Invalid value {value:?} for {key}"))
    };
    for (key, value) in pairs {
        match (key.as_str(), value.as_str()) {
            ("roundtrip", "true") => shape.roundtrip = true,
            ("roundtrip", "false") => shape.roundtrip = false,
            ("source", "any") => shape.source_first = false,
            ("source", "first") => shape.source_first = true,
            ("destination", "any") => shape.destination_last = false,
            ("destination", "last") => shape.destination_last = true,
            ("roundtrip" | "source" | "destination", v) => return Err(bad(key, v)),
            _ => rest.push((key.clone(), value.clone())),
        }
    }
    if !shape.roundtrip && !shape.source_first && !shape.destination_last {
        return Err(ApiError::new(
            ErrorCode::NotImplemented,
            "This request is not supported: roundtrip=false needs source=first or destination=last",
        ));
    }
    Ok((shape, rest))
}

/// Fastest tour through the coordinates (OSRM trip service).
#[utoipa::path(get, path = "/trip/{version}/{profile}/{coordinates}", tag = "osrm",
    security(("bearer" = [])),
    params(
        ("version" = String, Path, description = "Protocol version: `v1`"),
        ("profile" = String, Path, description = "Profile name"),
        ("coordinates" = String, Path, description = "`lon,lat;lon,lat[;...]` or `polyline(...)`"),
        ("roundtrip" = Option<bool>, Query, description = "Return to the first coordinate (default true)"),
        ("source" = Option<String>, Query, description = "`any` (default) or `first`"),
        ("destination" = Option<String>, Query, description = "`any` (default) or `last`"),
        ("steps" = Option<bool>, Query, description = "Return turn-by-turn steps"),
        ("geometries" = Option<String>, Query, description = "`polyline` (default), `polyline6` or `geojson`"),
        ("overview" = Option<String>, Query, description = "`simplified` (default), `full` or `false`"),
    ),
    responses(
        (status = 200, description = "One trip", body = TripResponse),
        (status = 400, description = "OSRM error (NotImplemented, NoTrips, NoSegment, TooBig, ...)", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn trip(
    State(state): State<AppState>,
    request: OsrmRequest,
) -> Result<Json<TripResponse>, ApiError> {
    params::waypoint_count(
        request.coordinates.len(),
        request.limits().max_route_waypoints,
    )?;
    let (shape, options) = request.options(|pairs, count, max_radius_m| {
        let (shape, rest) = trip_shape(pairs)?;
        Ok((shape, params::route_options(&rest, count, max_radius_m)?))
    })?;
    let graph = request.graph()?;
    let radius = request.limits().snap_radius_m;
    let coords = request.coordinates;
    let response = crate::compute::offload(&state, move || {
        compute(&graph, &coords, shape, &options, radius)
    })
    .await??;
    Ok(Json(response))
}

/// The visiting order of coordinate indices for a duration matrix (row-major, `n`x`n`).
pub fn order(durations: Matrix, shape: TripShape) -> Result<Vec<usize>, ApiError> {
    let n = durations.size();
    let last = n - 1;
    let (start, end) = if shape.roundtrip {
        (Some(0), Some(0))
    } else {
        (
            shape.source_first.then_some(0),
            shape.destination_last.then_some(last),
        )
    };
    let fixed = |i: usize| start == Some(i) || end == Some(i);
    let jobs: Vec<Job> = (0..n)
        .filter(|&i| !fixed(i))
        .map(|i| Job::new(i as u64, i))
        .collect();
    let problem = Problem {
        vehicles: vec![Vehicle::new(0, start, end, Vec::new())],
        jobs,
        shipments: Vec::new(),
        durations,
        distances: None,
    };
    let options = SolveOptions {
        time_limit: TIME_LIMIT,
        max_iterations: Some(MAX_ITERATIONS),
        ..SolveOptions::default()
    };
    let solution = solve(&problem, &options).map_err(ApiError::internal)?;
    if !solution.unassigned.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NoTrips,
            "No trip visits all coordinates",
        ));
    }
    let mut order: Vec<usize> = Vec::with_capacity(n);
    if let Some(s) = start {
        order.push(s);
    }
    if let Some(route) = solution.routes.first() {
        order.extend(route.steps.iter().filter_map(|s| match s.kind {
            StepKind::Job(j) => Some(problem.jobs[j].location),
            _ => None,
        }));
    }
    if let Some(e) = end
        && !shape.roundtrip
    {
        order.push(e);
    }
    Ok(order)
}

fn compute(
    graph: &Graph,
    coords: &[Coord],
    shape: TripShape,
    options: &RouteOptions,
    default_radius_m: f64,
) -> Result<TripResponse, ApiError> {
    let snaps = snap_all(graph, coords, &options.radiuses, default_radius_m)?;
    let n = snaps.len();
    // Deciseconds: finer than the solver's integers in seconds.
    let matrices = matrix(graph, &snaps, TimeUnit::Deciseconds).map_err(|e| match e {
        // What routing a leg between the pair answers.
        MatrixError::Unreachable { .. } => from_engine(edgeroute_engine::Error::NoRoute, None),
        MatrixError::Range(e) => ApiError::internal(e),
    })?;
    let mut visit = order(matrices.durations, shape)?;
    if shape.roundtrip {
        visit.push(visit[0]);
    }
    let legs = visit
        .windows(2)
        .map(|pair| {
            graph
                .route(&snaps[pair[0]], &snaps[pair[1]])
                .map_err(|e| from_engine(e, None))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut position = vec![0; n];
    for (k, &i) in visit.iter().take(n).enumerate() {
        position[i] = k;
    }
    Ok(TripResponse {
        code: "Ok".to_owned(),
        trips: vec![osrm::shape::route(&legs, options)],
        waypoints: snaps
            .iter()
            .enumerate()
            .map(|(i, s)| TripWaypoint {
                waypoint: osrm::shape::waypoint(s),
                waypoint_index: position[i],
                trips_index: 0,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> params::Pairs {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Points on a line at 0, 10, 20, 30 given out of order: 0, 30, 10, 20.
    fn line() -> Matrix {
        let x = [0i64, 30, 10, 20];
        let cells = x
            .iter()
            .flat_map(|a| x.iter().map(move |b| (a - b).abs()))
            .collect();
        Matrix::new("durations", 4, cells).unwrap()
    }

    #[test]
    fn options_and_refused_combinations() {
        let (shape, rest) = trip_shape(&pairs(&[("steps", "true")])).unwrap();
        assert!(shape.roundtrip && !shape.source_first);
        assert_eq!(rest, pairs(&[("steps", "true")]));
        let err = trip_shape(&pairs(&[("roundtrip", "false")])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotImplemented);
        let err = trip_shape(&pairs(&[("source", "middle")])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidValue);
        let (shape, rest) = trip_shape(&pairs(&[
            ("roundtrip", "false"),
            ("source", "first"),
            ("destination", "last"),
        ]))
        .unwrap();
        assert!(!shape.roundtrip && shape.source_first && shape.destination_last);
        assert!(rest.is_empty());
    }

    #[test]
    fn tours_visit_every_point_in_the_best_order() {
        let round = TripShape {
            roundtrip: true,
            source_first: false,
            destination_last: false,
        };
        let tour = order(line(), round).unwrap();
        // 0 -> 10 -> 20 -> 30 (-> 0), either direction.
        assert!(tour == [0, 2, 3, 1] || tour == [0, 1, 3, 2], "{tour:?}");
        let path = TripShape {
            roundtrip: false,
            source_first: true,
            destination_last: true,
        };
        // From 0 to 20 (index 3) through 10 and 30: 0, 10, 30, 20 costs 40; 0, 30, 10, 20 costs 60.
        assert_eq!(order(line(), path).unwrap(), [0, 2, 1, 3]);
        let open_end = TripShape {
            destination_last: false,
            ..path
        };
        assert_eq!(order(line(), open_end).unwrap(), [0, 2, 3, 1]);
    }
}
