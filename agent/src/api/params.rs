//! Parsing OSRM's URL syntax: the coordinate list (or `polyline(...)`), `.json` suffix and
//! the query options, with OSRM's error codes.

use edgeroute_engine::{Coord, polyline};
use edgeroute_protocol::osrm::{
    Geometries, NearestOptions, Overview, RouteAnnotation, RouteOptions, TableAnnotation,
    TableOptions,
};

use crate::error::ApiError;

/// Query string pairs, percent-decoded, in order.
pub type Pairs = Vec<(String, String)>;

/// The `key=value` pairs of a URL's query, percent- and `+`-decoded as forms are: what
/// axum's `Query` gives, without the serde layers it runs them through.
/// Nothing is refused here: a byte sequence that is not UTF-8 once decoded becomes U+FFFD,
/// and the option parsers refuse what they cannot read.
pub fn pairs(query: Option<&str>) -> Pairs {
    query.map_or_else(Vec::new, |query| {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    })
}

/// Check the `{version}` path segment.
pub fn check_version(version: &str) -> Result<(), ApiError> {
    if version == "v1" {
        Ok(())
    } else {
        Err(ApiError::new(
            edgeroute_protocol::osrm::ErrorCode::InvalidVersion,
            format!("Service version {version:?} not found; only v1 is served"),
        ))
    }
}

/// Check the number of coordinates of a multi-point service (route, trip): at least two and
/// at most `max` waypoints.
pub fn waypoint_count(count: usize, max: usize) -> Result<(), ApiError> {
    if count < 2 {
        return Err(ApiError::invalid_options(
            "Number of coordinates needs to be at least two.",
        ));
    }
    if count > max {
        return Err(ApiError::too_big(format!(
            "Number of coordinates {count} exceeds the maximum of {max}"
        )));
    }
    Ok(())
}

/// Parse the `{coordinates}` path segment.
pub fn coordinates(raw: &str) -> Result<Vec<Coord>, ApiError> {
    let raw = raw.strip_suffix(".json").unwrap_or(raw);
    if raw.is_empty() {
        return Err(ApiError::invalid_url(
            "URL string malformed: no coordinates",
        ));
    }
    for (prefix, precision) in [("polyline6(", 6), ("polyline(", 5)] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let encoded = rest.strip_suffix(')').ok_or_else(|| {
                ApiError::invalid_url(format!("URL string malformed: missing ')' after {prefix}"))
            })?;
            let points = polyline::decode(encoded, precision)
                .map_err(|_| ApiError::invalid_url("URL string malformed: invalid polyline"))?;
            if points.is_empty() {
                return Err(ApiError::invalid_url(
                    "URL string malformed: empty polyline",
                ));
            }
            return points
                .into_iter()
                .map(|c| {
                    Coord::new(c.lon, c.lat)
                        .map_err(|_| ApiError::invalid_value("Invalid coordinate value."))
                })
                .collect();
        }
    }
    let mut out = Vec::new();
    let mut position = 0;
    for pair in raw.split(';') {
        let malformed = || {
            ApiError::invalid_url(format!(
                "URL string malformed close to position {position}: expected lon,lat"
            ))
        };
        let (lon, lat) = pair.split_once(',').ok_or_else(malformed)?;
        let lon: f64 = number(lon).ok_or_else(malformed)?;
        let lat: f64 = number(lat).ok_or_else(malformed)?;
        out.push(
            Coord::new(lon, lat)
                .map_err(|_| ApiError::invalid_value("Invalid coordinate value."))?,
        );
        position += pair.len() + 1;
    }
    Ok(out)
}

/// A decimal number as OSRM's grammar accepts it (no `NaN`, `inf` or exponents).
fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

fn bad_value(key: &str, value: &str) -> ApiError {
    ApiError::invalid_query(format!(
        "Query string malformed: invalid value {value:?} for option {key:?}"
    ))
}

fn boolean(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_value(key, value)),
    }
}

fn unknown(key: &str) -> ApiError {
    ApiError::invalid_query(format!("Query string malformed: unknown option {key:?}"))
}

/// `radiuses=r;r;...` (`unlimited` or empty for the default), one per coordinate.
fn radiuses(value: &str, coordinates: usize, max_m: f64) -> Result<Vec<Option<f64>>, ApiError> {
    let values: Vec<Option<f64>> = value
        .split(';')
        .map(|r| match r {
            "" => Ok(None),
            "unlimited" => Ok(Some(max_m)),
            r => match number(r) {
                Some(x) if x >= 0.0 => Ok(Some(x.min(max_m))),
                _ => Err(bad_value("radiuses", value)),
            },
        })
        .collect::<Result<_, _>>()?;
    if values.len() != coordinates {
        return Err(ApiError::invalid_options(format!(
            "Number of elements in radiuses size {} does not match coordinate size {coordinates}",
            values.len()
        )));
    }
    Ok(values)
}

/// Options every service accepts for compatibility and ignores (they do not change the
/// answer of this engine; `hints` are opaque and may be empty).
fn ignored(key: &str) -> bool {
    matches!(key, "hints" | "generate_hints" | "bearings" | "approaches")
}

/// Parse `/route` options.
pub fn route_options(
    pairs: &Pairs,
    coordinates: usize,
    max_radius_m: f64,
) -> Result<RouteOptions, ApiError> {
    let mut o = RouteOptions::default();
    for (key, value) in pairs {
        let value = value.as_str();
        match key.as_str() {
            "alternatives" => {
                o.alternatives = match value {
                    "true" => 1,
                    "false" => 0,
                    n => n.parse().map_err(|_| bad_value(key, value))?,
                }
            }
            "steps" => o.steps = boolean(key, value)?,
            "geometries" => {
                o.geometries = match value {
                    "polyline" => Geometries::Polyline,
                    "polyline6" => Geometries::Polyline6,
                    "geojson" => Geometries::Geojson,
                    _ => return Err(bad_value(key, value)),
                }
            }
            "overview" => {
                o.overview = match value {
                    "full" => Overview::Full,
                    "simplified" => Overview::Simplified,
                    "false" => Overview::False,
                    _ => return Err(bad_value(key, value)),
                }
            }
            "annotations" => {
                o.annotations = match value {
                    "true" => vec![
                        RouteAnnotation::Duration,
                        RouteAnnotation::Distance,
                        RouteAnnotation::Weight,
                        RouteAnnotation::Speed,
                        RouteAnnotation::Nodes,
                    ],
                    "false" => Vec::new(),
                    list => {
                        let mut kinds = Vec::new();
                        for item in list.split(',') {
                            match item {
                                "duration" => kinds.push(RouteAnnotation::Duration),
                                "distance" => kinds.push(RouteAnnotation::Distance),
                                "weight" => kinds.push(RouteAnnotation::Weight),
                                "speed" => kinds.push(RouteAnnotation::Speed),
                                "nodes" => kinds.push(RouteAnnotation::Nodes),
                                // The engine has one data source: nothing to tell apart.
                                "datasources" => {}
                                _ => return Err(bad_value(key, value)),
                            }
                        }
                        kinds
                    }
                }
            }
            "radiuses" => o.radiuses = radiuses(value, coordinates, max_radius_m)?,
            "continue_straight" => {
                o.continue_straight = match value {
                    "default" => None,
                    v => Some(boolean(key, v)?),
                }
            }
            k if ignored(k) => {}
            _ => return Err(unknown(key)),
        }
    }
    Ok(o)
}

fn indices(key: &str, value: &str, coordinates: usize) -> Result<Option<Vec<usize>>, ApiError> {
    if value == "all" {
        return Ok(None);
    }
    let list: Vec<usize> = value
        .split(';')
        .map(|i| i.parse().map_err(|_| bad_value(key, value)))
        .collect::<Result<_, _>>()?;
    if let Some(bad) = list.iter().find(|&&i| i >= coordinates) {
        return Err(ApiError::invalid_options(format!(
            "Index {bad} in {key} is out of bounds: there are {coordinates} coordinates"
        )));
    }
    Ok(Some(list))
}

/// Parse `/table` options.
pub fn table_options(
    pairs: &Pairs,
    coordinates: usize,
    max_radius_m: f64,
) -> Result<TableOptions, ApiError> {
    let mut o = TableOptions::default();
    for (key, value) in pairs {
        let value = value.as_str();
        match key.as_str() {
            "sources" => o.sources = indices(key, value, coordinates)?,
            "destinations" => o.destinations = indices(key, value, coordinates)?,
            "annotations" => {
                o.annotations = value
                    .split(',')
                    .map(|a| match a {
                        "duration" => Ok(TableAnnotation::Duration),
                        "distance" => Ok(TableAnnotation::Distance),
                        _ => Err(bad_value(key, value)),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "radiuses" => o.radiuses = radiuses(value, coordinates, max_radius_m)?,
            k if ignored(k) => {}
            _ => return Err(unknown(key)),
        }
    }
    Ok(o)
}

/// Parse `/nearest` options.
pub fn nearest_options(
    pairs: &Pairs,
    coordinates: usize,
    max_radius_m: f64,
) -> Result<NearestOptions, ApiError> {
    let mut o = NearestOptions::default();
    for (key, value) in pairs {
        let value = value.as_str();
        match key.as_str() {
            "number" => {
                o.number = value.parse().map_err(|_| bad_value(key, value))?;
                if o.number == 0 {
                    return Err(ApiError::invalid_options(
                        "Number of results must be at least 1",
                    ));
                }
            }
            "radiuses" => o.radiuses = radiuses(value, coordinates, max_radius_m)?,
            k if ignored(k) => {}
            _ => return Err(unknown(key)),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use edgeroute_protocol::osrm::ErrorCode;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_pairs_are_what_axums_query_gives() {
        for query in [
            "overview=false",
            "a=1&b=%3B&c=x+y&d&=e&f=%FF&&g==h&radiuses=10;unlimited;",
            "",
            "%zz=1&k=%E2%82%AC",
        ] {
            let uri: axum::http::Uri = format!("/route/v1/car/1,2;3,4?{query}").parse().unwrap();
            let axum::extract::Query(expected) =
                axum::extract::Query::<Pairs>::try_from_uri(&uri).unwrap();
            assert_eq!(super::pairs(uri.query()), expected, "{query}");
        }
        let bare: axum::http::Uri = "/route/v1/car/1,2;3,4".parse().unwrap();
        assert_eq!(super::pairs(bare.query()), Pairs::new());
    }

    #[test]
    fn coordinates_plain_json_suffix_and_polyline() {
        let c = coordinates("7.41,43.73;7.42,43.74.json").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].lon, c[1].lat), (7.42, 43.74));
        let encoded = polyline::encode(&c, 5);
        let p = coordinates(&format!("polyline({encoded})")).unwrap();
        assert!((p[1].lat - 43.74).abs() < 1e-5);
        let encoded6 = polyline::encode(&c, 6);
        let p = coordinates(&format!("polyline6({encoded6})")).unwrap();
        assert!((p[0].lon - 7.41).abs() < 1e-6);
    }

    #[test]
    fn bad_coordinates_get_osrm_codes() {
        for (raw, code) in [
            ("", ErrorCode::InvalidUrl),
            ("7.41", ErrorCode::InvalidUrl),
            ("7.41,43.7;abc,1", ErrorCode::InvalidUrl),
            ("NaN,43.7", ErrorCode::InvalidUrl),
            ("inf,43.7", ErrorCode::InvalidUrl),
            ("7.41,91", ErrorCode::InvalidValue),
            ("181,0", ErrorCode::InvalidValue),
            ("polyline(abc", ErrorCode::InvalidUrl),
        ] {
            assert_eq!(coordinates(raw).unwrap_err().code(), code, "{raw}");
        }
    }

    #[test]
    fn route_options_parse_and_reject() {
        let o = route_options(
            &pairs(&[
                ("steps", "true"),
                ("geometries", "geojson"),
                ("overview", "full"),
                ("annotations", "duration,distance"),
                ("radiuses", "50;unlimited"),
                ("alternatives", "2"),
                ("continue_straight", "default"),
                ("hints", ";"),
            ]),
            2,
            1000.0,
        )
        .unwrap();
        assert!(o.steps);
        assert_eq!(o.geometries, Geometries::Geojson);
        assert_eq!(o.overview, Overview::Full);
        assert_eq!(o.radiuses, [Some(50.0), Some(1000.0)]);
        assert_eq!(o.alternatives, 2);
        let err = |p: &[(&str, &str)]| route_options(&pairs(p), 2, 1000.0).unwrap_err().code();
        assert_eq!(err(&[("foo", "1")]), ErrorCode::InvalidQuery);
        assert_eq!(err(&[("steps", "yes")]), ErrorCode::InvalidQuery);
        assert_eq!(err(&[("radiuses", "5")]), ErrorCode::InvalidOptions);
        let kinds =
            |v| route_options(&pairs(&[("annotations", v)]), 2, 1000.0).map(|o| o.annotations);
        assert_eq!(
            kinds("nodes,datasources").unwrap(),
            [RouteAnnotation::Nodes]
        );
        assert!(kinds("true").unwrap().contains(&RouteAnnotation::Nodes));
    }

    #[test]
    fn table_and_nearest_options() {
        let o = table_options(
            &pairs(&[("sources", "0"), ("annotations", "duration,distance")]),
            3,
            1000.0,
        )
        .unwrap();
        assert_eq!(o.sources, Some(vec![0]));
        assert_eq!(o.destinations, None);
        assert_eq!(o.annotations.len(), 2);
        assert_eq!(
            table_options(&pairs(&[("sources", "3")]), 3, 1000.0)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidOptions
        );
        let n = nearest_options(&pairs(&[("number", "3")]), 1, 1000.0).unwrap();
        assert_eq!(n.number, 3);
        assert!(nearest_options(&pairs(&[("number", "0")]), 1, 1000.0).is_err());
        assert!(check_version("v2").is_err());
    }
}
