//! OSRM-compatible API shapes (route, table, nearest) served by the agent.
//!
//! Field names, nesting, units (metres, seconds, degrees) and coordinate order (`[lon, lat]`)
//! follow the OSRM v5 HTTP API, so an OSRM client pointed at an agent works unchanged.
//! Optional fields are omitted from the JSON when absent, as OSRM omits them.
//!
//! The request *options* are typed here ([`RouteOptions`], [`TableOptions`],
//! [`NearestOptions`]); the agent parses OSRM's query-string syntax into them, because OSRM's
//! `a;b;c` list encoding and its error vocabulary do not map onto a generic deserializer.

use serde::{Deserialize, Serialize};

/// A `[longitude, latitude]` pair, in that order, as OSRM writes every location.
pub type Location = [f64; 2];

/// The `code` field of an error body: OSRM's vocabulary plus the HTTP-level codes the agent
/// adds for transport problems (authentication, rate limits, timeouts...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// The URL string is malformed (bad coordinates, unknown service path).
    InvalidUrl,
    /// The service (`route`, `table`, ...) is unknown.
    InvalidService,
    /// The protocol version is not `v1`.
    InvalidVersion,
    /// The options are inconsistent with each other or with the coordinates.
    InvalidOptions,
    /// The query string is syntactically malformed or names an unknown option.
    InvalidQuery,
    /// A parsed parameter has an invalid value (e.g. a latitude of 91).
    InvalidValue,
    /// A coordinate could not be matched to a road segment.
    NoSegment,
    /// No route connects the coordinates.
    NoRoute,
    /// The request exceeds a configured size limit.
    TooBig,
    /// `/trip`: no trip visits all the coordinates.
    NoTrips,
    /// `/trip`: an option combination OSRM does not implement.
    NotImplemented,
    /// No path matched (HTTP 404).
    NotFound,
    /// The path exists but not for this method (HTTP 405).
    MethodNotAllowed,
    /// Missing or wrong API key (HTTP 401).
    Unauthorized,
    /// The key is valid but lacks the permission (HTTP 403).
    Forbidden,
    /// The per-key rate limit is exhausted (HTTP 429, with `Retry-After`).
    TooManyRequests,
    /// The request did not finish within the configured timeout (HTTP 504).
    Timeout,
    /// The request body exceeds the route's limit (HTTP 413).
    PayloadTooLarge,
    /// The agent sheds load because its concurrency limit is reached (HTTP 503).
    Overloaded,
    /// No graph is loaded yet (HTTP 503).
    NotReady,
    /// The request conflicts with the stored state (HTTP 409).
    Conflict,
    /// An unexpected server-side failure (HTTP 500); details are only logged.
    InternalError,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUrl => "InvalidUrl",
            Self::InvalidService => "InvalidService",
            Self::InvalidVersion => "InvalidVersion",
            Self::InvalidOptions => "InvalidOptions",
            Self::InvalidQuery => "InvalidQuery",
            Self::InvalidValue => "InvalidValue",
            Self::NoSegment => "NoSegment",
            Self::NoRoute => "NoRoute",
            Self::TooBig => "TooBig",
            Self::NoTrips => "NoTrips",
            Self::NotImplemented => "NotImplemented",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "TooManyRequests",
            Self::Timeout => "Timeout",
            Self::PayloadTooLarge => "PayloadTooLarge",
            Self::Overloaded => "Overloaded",
            Self::NotReady => "NotReady",
            Self::Conflict => "Conflict",
            Self::InternalError => "InternalError",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// Machine-readable error code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// `overview`: how much of the route geometry to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Overview {
    /// Every point of the route.
    Full,
    /// A simplified line (OSRM's default).
    #[default]
    Simplified,
    /// No overview geometry: the route has no `geometry` field.
    False,
}

/// `geometries`: the encoding of every geometry in the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Geometries {
    /// Google encoded polyline, precision 5 (OSRM's default).
    #[default]
    Polyline,
    /// Encoded polyline with precision 6.
    Polyline6,
    /// A GeoJSON `LineString` object.
    Geojson,
}

/// One per-segment annotation kind of `annotations=...` on `/route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RouteAnnotation {
    /// Metres of each segment.
    Distance,
    /// Seconds of each segment.
    Duration,
    /// Weight of each segment (equal to its duration for the car profile).
    Weight,
    /// Metres per second of each segment.
    Speed,
    /// OSM node id of every coordinate of the leg's geometry.
    Nodes,
}

/// Parsed options of `GET /route/v1/{profile}/{coordinates}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteOptions {
    /// Number of alternatives requested (`alternatives=true` is 1, `false` is 0). The agent
    /// returns at most the one route it computes.
    pub alternatives: u32,
    /// Whether legs carry turn-by-turn steps.
    pub steps: bool,
    /// Geometry encoding.
    pub geometries: Geometries,
    /// Overview geometry detail.
    pub overview: Overview,
    /// Requested per-segment annotations (empty: none).
    pub annotations: Vec<RouteAnnotation>,
    /// Per-coordinate snapping radius in metres (`None`: the server's default).
    pub radiuses: Vec<Option<f64>>,
    /// Accepted for compatibility; the engine always allows turning at waypoints.
    pub continue_straight: Option<bool>,
}

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            alternatives: 0,
            steps: false,
            geometries: Geometries::Polyline,
            overview: Overview::Simplified,
            annotations: Vec::new(),
            radiuses: Vec::new(),
            continue_straight: None,
        }
    }
}

/// One annotation kind of `annotations=...` on `/table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TableAnnotation {
    /// The `durations` matrix (seconds).
    Duration,
    /// The `distances` matrix (metres).
    Distance,
}

/// Parsed options of `GET /table/v1/{profile}/{coordinates}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableOptions {
    /// Indices of the coordinates used as sources (`None`: all).
    pub sources: Option<Vec<usize>>,
    /// Indices of the coordinates used as destinations (`None`: all).
    pub destinations: Option<Vec<usize>>,
    /// Matrices to return (default: durations only).
    pub annotations: Vec<TableAnnotation>,
    /// Per-coordinate snapping radius in metres.
    pub radiuses: Vec<Option<f64>>,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            sources: None,
            destinations: None,
            annotations: vec![TableAnnotation::Duration],
            radiuses: Vec::new(),
        }
    }
}

/// Parsed options of `GET /nearest/v1/{profile}/{coordinate}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NearestOptions {
    /// How many distinct nearby roads to return (default 1).
    pub number: usize,
    /// Snapping radius in metres.
    pub radiuses: Vec<Option<f64>>,
}

impl Default for NearestOptions {
    fn default() -> Self {
        Self {
            number: 1,
            radiuses: Vec::new(),
        }
    }
}

/// A GeoJSON `LineString`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineString {
    /// Always `"LineString"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `[lon, lat]` points.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<f64>>))]
    pub coordinates: Vec<Location>,
}

impl LineString {
    /// A `LineString` over the given points.
    pub fn new(coordinates: Vec<Location>) -> Self {
        Self {
            kind: "LineString".to_owned(),
            coordinates,
        }
    }
}

/// A geometry as selected by `geometries`: an encoded polyline string or GeoJSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Geometry {
    /// `polyline` / `polyline6`.
    Encoded(String),
    /// `geojson`.
    GeoJson(LineString),
}

/// An input coordinate snapped to the road network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waypoint {
    /// Opaque snapping hint; clients pass it back unchanged or ignore it.
    pub hint: String,
    /// Metres between the input coordinate and the snapped location.
    pub distance: f64,
    /// Name of the road the coordinate snapped to (may be empty).
    pub name: String,
    /// The snapped `[lon, lat]`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub location: Location,
}

/// A `/trip` waypoint: the snapped input coordinate and where the trip visits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripWaypoint {
    /// The snapped coordinate.
    #[serde(flatten)]
    pub waypoint: Waypoint,
    /// Position of this coordinate in its trip.
    pub waypoint_index: usize,
    /// Index of the trip (in `trips`) visiting it.
    pub trips_index: usize,
}

/// `GET /trip` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripResponse {
    /// `"Ok"`.
    pub code: String,
    /// The trips (one: every coordinate is visited by the same trip).
    pub trips: Vec<Route>,
    /// One waypoint per input coordinate, in input order.
    pub waypoints: Vec<TripWaypoint>,
}

/// `GET /route` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteResponse {
    /// `"Ok"`.
    pub code: String,
    /// The computed routes, best first.
    pub routes: Vec<Route>,
    /// One waypoint per input coordinate.
    pub waypoints: Vec<Waypoint>,
}

/// A route through all waypoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    /// Overview geometry; absent with `overview=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<Geometry>,
    /// One leg between each pair of consecutive waypoints.
    pub legs: Vec<RouteLeg>,
    /// Name of the weight metric (`"routability"` for the car profile, as OSRM's).
    pub weight_name: String,
    /// Total weight.
    pub weight: f64,
    /// Total seconds.
    pub duration: f64,
    /// Total metres.
    pub distance: f64,
}

/// The part of a route between two consecutive waypoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteLeg {
    /// Turn-by-turn steps (empty unless `steps=true`).
    pub steps: Vec<RouteStep>,
    /// Names of the most significant roads of the leg, comma separated.
    pub summary: String,
    /// Leg weight.
    pub weight: f64,
    /// Leg seconds.
    pub duration: f64,
    /// Leg metres.
    pub distance: f64,
    /// Per-segment annotations, present when `annotations` was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<Annotation>,
}

/// Per-segment values along a leg's geometry: entry `i` describes the segment between
/// geometry points `i` and `i + 1`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Annotation {
    /// Metres per segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<Vec<f64>>,
    /// Seconds per segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Vec<f64>>,
    /// Weight per segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Vec<f64>>,
    /// Metres per second per segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Vec<f64>>,
    /// OSM node ids along the leg, one per coordinate (OSRM: the first and last are the
    /// nodes around the snapped start and end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<i64>>,
}

/// One maneuver and the stretch of road that follows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStep {
    /// Geometry of the step, in the requested encoding.
    pub geometry: Geometry,
    /// The maneuver at the start of the step.
    pub maneuver: StepManeuver,
    /// Travel mode (`"driving"`).
    pub mode: String,
    /// `"right"` (the profile's driving side).
    pub driving_side: String,
    /// Road name of the step (may be empty).
    pub name: String,
    /// Intersections along the step; the first is at the maneuver.
    pub intersections: Vec<Intersection>,
    /// Step weight.
    pub weight: f64,
    /// Step seconds.
    pub duration: f64,
    /// Step metres.
    pub distance: f64,
}

/// What to do at the start of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepManeuver {
    /// Degrees clockwise from north after the maneuver (0 for `arrive`).
    pub bearing_after: u16,
    /// Degrees clockwise from north before the maneuver (0 for `depart`).
    pub bearing_before: u16,
    /// Where the maneuver happens.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub location: Location,
    /// `depart`, `turn`, `new name`, `continue` or `arrive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Direction change: `uturn`, `sharp right`, `right`, `slight right`, `straight`,
    /// `slight left`, `left`, `sharp left`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifier: Option<String>,
}

/// An intersection passed by a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Intersection {
    /// Where the intersection is.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub location: Location,
    /// Bearings of the roads at the intersection that the route uses.
    pub bearings: Vec<u16>,
    /// Whether each bearing may be entered.
    pub entry: Vec<bool>,
    /// Index into `bearings` of the road the route arrives on (absent at `depart`).
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub in_: Option<usize>,
    /// Index into `bearings` of the road the route leaves on (absent at `arrive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<usize>,
}

/// `GET /table` success body. Unreachable pairs are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableResponse {
    /// `"Ok"`.
    pub code: String,
    /// Seconds from each source (row) to each destination (column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<Vec<Vec<Option<f64>>>>,
    /// Metres from each source (row) to each destination (column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<Vec<Option<f64>>>>,
    /// The snapped sources.
    pub sources: Vec<Waypoint>,
    /// The snapped destinations.
    pub destinations: Vec<Waypoint>,
}

/// `GET /nearest` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NearestResponse {
    /// `"Ok"`.
    pub code: String,
    /// Nearest snapped locations on distinct roads, nearest first.
    pub waypoints: Vec<Waypoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_response_uses_osrm_field_names() {
        let response = RouteResponse {
            code: "Ok".into(),
            routes: vec![Route {
                geometry: None,
                legs: vec![RouteLeg {
                    steps: vec![RouteStep {
                        geometry: Geometry::GeoJson(LineString::new(vec![[7.4, 43.7]])),
                        maneuver: StepManeuver {
                            bearing_after: 90,
                            bearing_before: 0,
                            location: [7.4, 43.7],
                            kind: "depart".into(),
                            modifier: None,
                        },
                        mode: "driving".into(),
                        driving_side: "right".into(),
                        name: "Boulevard".into(),
                        intersections: vec![Intersection {
                            location: [7.4, 43.7],
                            bearings: vec![90],
                            entry: vec![true],
                            in_: None,
                            out: Some(0),
                        }],
                        weight: 1.0,
                        duration: 1.0,
                        distance: 10.0,
                    }],
                    summary: "Boulevard".into(),
                    weight: 1.0,
                    duration: 1.0,
                    distance: 10.0,
                    annotation: None,
                }],
                weight_name: "routability".into(),
                weight: 1.0,
                duration: 1.0,
                distance: 10.0,
            }],
            waypoints: vec![],
        };
        let json = serde_json::to_value(&response).unwrap();
        let route = &json["routes"][0];
        assert!(
            route.get("geometry").is_none(),
            "overview=false omits geometry"
        );
        let step = &route["legs"][0]["steps"][0];
        assert_eq!(step["maneuver"]["type"], "depart");
        assert!(step["maneuver"].get("modifier").is_none());
        assert_eq!(step["geometry"]["type"], "LineString");
        assert_eq!(step["intersections"][0]["out"], 0);
        assert!(step["intersections"][0].get("in").is_none());
        let back: RouteResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn geometry_is_a_string_or_geojson() {
        let encoded = serde_json::to_value(Geometry::Encoded("_p~iF~ps|U".into())).unwrap();
        assert_eq!(encoded, serde_json::json!("_p~iF~ps|U"));
        let back: Geometry = serde_json::from_value(serde_json::json!({
            "type": "LineString", "coordinates": [[1.0, 2.0]]
        }))
        .unwrap();
        assert_eq!(back, Geometry::GeoJson(LineString::new(vec![[1.0, 2.0]])));
    }

    #[test]
    fn error_codes_serialize_as_osrm_strings() {
        let body = ErrorResponse {
            code: ErrorCode::NoSegment,
            message: "Could not find a matching segment for coordinate 0".into(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["code"], "NoSegment");
        assert_eq!(ErrorCode::TooBig.to_string(), "TooBig");
    }

    #[test]
    fn table_nulls_for_unreachable_pairs() {
        let table = TableResponse {
            code: "Ok".into(),
            durations: Some(vec![vec![Some(0.0), None]]),
            distances: None,
            sources: vec![],
            destinations: vec![],
        };
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(json["durations"][0][1], serde_json::Value::Null);
        assert!(json.get("distances").is_none());
    }
}
