//! Turning engine results into OSRM response objects: legs, steps with maneuvers,
//! annotations, overview geometry (polyline or the protocol's GeoJSON `LineString`),
//! waypoints. Pure functions of engine values and parsed options: no I/O, no state.

use edgeroute_engine::{Coord, Route as EngineRoute, Snap, geo, polyline};
use edgeroute_protocol::osrm::{
    Annotation, Geometries, Geometry, Intersection, LineString, Location, Overview, Route,
    RouteAnnotation, RouteLeg, RouteOptions, RouteStep, StepManeuver, Waypoint,
};

/// The weight metric name OSRM's car profile reports.
pub const WEIGHT_NAME: &str = "routability";

/// Tolerance of `overview=simplified`, in metres.
const SIMPLIFY_TOLERANCE_M: f64 = 5.0;

/// Round to one decimal, as OSRM prints distances and durations.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A `[lon, lat]` rounded to 6 decimals, as OSRM prints locations.
pub fn location(c: Coord) -> Location {
    [(c.lon * 1e6).round() / 1e6, (c.lat * 1e6).round() / 1e6]
}

/// The OSRM waypoint of a snapped coordinate.
pub fn waypoint(snap: &Snap) -> Waypoint {
    Waypoint {
        hint: String::new(),
        distance: snap.distance_m,
        name: snap.name.clone(),
        location: location(snap.location),
    }
}

/// Encode a line in the requested geometry format.
pub fn encode(coords: &[Coord], format: Geometries) -> Geometry {
    match format {
        Geometries::Polyline => Geometry::Encoded(polyline::encode(coords, 5)),
        Geometries::Polyline6 => Geometry::Encoded(polyline::encode(coords, 6)),
        Geometries::Geojson => Geometry::GeoJson(LineString::new(
            coords.iter().map(|&c| location(c)).collect(),
        )),
    }
}

/// Douglas–Peucker simplification with a tolerance in metres (local flat projection).
pub fn simplify(coords: &[Coord], tolerance_m: f64) -> Vec<Coord> {
    if coords.len() <= 2 {
        return coords.to_vec();
    }
    let lat0 = coords[0].lat.to_radians();
    let m_per_deg = 111_320.0;
    let xy: Vec<(f64, f64)> = coords
        .iter()
        .map(|c| (c.lon * m_per_deg * lat0.cos(), c.lat * m_per_deg))
        .collect();
    let mut keep = vec![false; coords.len()];
    keep[0] = true;
    keep[coords.len() - 1] = true;
    let mut stack = vec![(0, coords.len() - 1)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (ax, ay) = xy[a];
        let (bx, by) = xy[b];
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let mut best = (0.0, a);
        for (i, &(px, py)) in xy.iter().enumerate().take(b).skip(a + 1) {
            let d = if len2 == 0.0 {
                ((px - ax).powi(2) + (py - ay).powi(2)).sqrt()
            } else {
                let t = (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0);
                ((px - ax - t * dx).powi(2) + (py - ay - t * dy).powi(2)).sqrt()
            };
            if d > best.0 {
                best = (d, i);
            }
        }
        if best.0 > tolerance_m {
            keep[best.1] = true;
            stack.push((a, best.1));
            stack.push((best.1, b));
        }
    }
    coords
        .iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(*c))
        .collect()
}

/// The whole route: legs in order, overview geometry per `options`.
pub fn route(legs: &[EngineRoute], options: &RouteOptions) -> Route {
    let overview = || {
        let mut full: Vec<Coord> = Vec::new();
        for leg in legs {
            let skip = usize::from(!full.is_empty() && full.last() == leg.geometry.first());
            full.extend(leg.geometry.iter().skip(skip));
        }
        full
    };
    let geometry = match options.overview {
        Overview::False => None,
        Overview::Full => Some(encode(&overview(), options.geometries)),
        Overview::Simplified => Some(encode(
            &simplify(&overview(), SIMPLIFY_TOLERANCE_M),
            options.geometries,
        )),
    };
    let legs: Vec<RouteLeg> = legs.iter().map(|l| leg(l, options)).collect();
    let duration: f64 = legs.iter().map(|l| l.duration).sum();
    let distance: f64 = legs.iter().map(|l| l.distance).sum();
    Route {
        geometry,
        legs,
        weight_name: WEIGHT_NAME.to_owned(),
        weight: round1(duration),
        duration: round1(duration),
        distance: round1(distance),
    }
}

/// One leg: totals, summary, and steps and annotations when asked for.
pub fn leg(route: &EngineRoute, options: &RouteOptions) -> RouteLeg {
    RouteLeg {
        steps: if options.steps {
            steps(route, options.geometries)
        } else {
            Vec::new()
        },
        summary: summary(route),
        weight: round1(route.duration_s),
        duration: round1(route.duration_s),
        distance: round1(route.distance_m),
        annotation: (!options.annotations.is_empty())
            .then(|| annotation(route, &options.annotations)),
    }
}

/// OSRM's leg summary: the names of the (at most) two roads carrying the most distance, in
/// route order.
fn summary(route: &EngineRoute) -> String {
    // Routes name a handful of roads: one allocation, not three.
    let mut by_name: Vec<(&str, f64, usize)> = Vec::with_capacity(8);
    for (order, seg) in route.segments.iter().enumerate() {
        if seg.name.is_empty() {
            continue;
        }
        match by_name.iter_mut().find(|(n, _, _)| *n == &*seg.name) {
            Some(entry) => entry.1 += seg.distance_m,
            None => by_name.push((&*seg.name, seg.distance_m, order)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name.truncate(2);
    by_name.sort_by_key(|e| e.2);
    by_name.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")
}

/// Per geometry-segment values, splitting each engine segment's duration by length.
fn annotation(route: &EngineRoute, kinds: &[RouteAnnotation]) -> Annotation {
    let g = &route.geometry;
    let pairs = g.len().saturating_sub(1);
    let mut distance = vec![0.0; pairs];
    let mut duration = vec![0.0; pairs];
    for (i, d) in distance.iter_mut().enumerate() {
        *d = geo::haversine_m(g[i], g[i + 1]);
    }
    for seg in &route.segments {
        let first = seg.geometry.start;
        let last_pair = seg.geometry.end.saturating_sub(1).min(pairs);
        if first >= last_pair {
            continue;
        }
        let total: f64 = distance[first..last_pair].iter().sum();
        let count = (last_pair - first) as f64;
        for i in first..last_pair {
            let share = if total > 0.0 {
                distance[i] / total
            } else {
                1.0 / count
            };
            duration[i] = seg.duration_s * share;
        }
    }
    let speed: Vec<f64> = distance
        .iter()
        .zip(&duration)
        .map(|(d, t)| if *t > 0.0 { round1(d / t) } else { 0.0 })
        .collect();
    let has = |k| kinds.contains(&k);
    Annotation {
        distance: has(RouteAnnotation::Distance)
            .then(|| distance.iter().map(|d| round1(*d)).collect()),
        duration: has(RouteAnnotation::Duration)
            .then(|| duration.iter().map(|d| round1(*d)).collect()),
        weight: has(RouteAnnotation::Weight).then(|| duration.iter().map(|d| round1(*d)).collect()),
        speed: has(RouteAnnotation::Speed).then_some(speed),
        nodes: has(RouteAnnotation::Nodes).then(|| route.nodes.clone()),
    }
}

/// Bearing leaving point `i` forward, skipping repeated points.
fn bearing_out(g: &[Coord], i: usize) -> Option<f64> {
    let from = *g.get(i)?;
    g[i + 1..]
        .iter()
        .find(|&&c| c != from)
        .map(|&c| geo::bearing(from, c))
}

/// Bearing arriving at point `i`, skipping repeated points.
fn bearing_in(g: &[Coord], i: usize) -> Option<f64> {
    let to = *g.get(i)?;
    g[..i]
        .iter()
        .rev()
        .find(|&&c| c != to)
        .map(|&c| geo::bearing(c, to))
}

fn deg(b: f64) -> u16 {
    // `as` saturates; the value is in [0, 360].
    (b.round() as u16) % 360
}

/// OSRM's modifier for a change of heading.
pub fn modifier(before: f64, after: f64) -> &'static str {
    let turn = (after - before + 360.0) % 360.0;
    match turn {
        t if !(20.0..=340.0).contains(&t) => "straight",
        t if t < 60.0 => "slight right",
        t if t < 140.0 => "right",
        t if t < 170.0 => "sharp right",
        t if t <= 190.0 => "uturn",
        t if t < 220.0 => "sharp left",
        t if t < 300.0 => "left",
        _ => "slight left",
    }
}

fn intersection(at: Coord, before: Option<f64>, after: Option<f64>) -> Intersection {
    let mut bearings: Vec<(u16, bool)> = Vec::new();
    if let Some(b) = before {
        bearings.push((deg((b + 180.0) % 360.0), true));
    }
    if let Some(a) = after {
        bearings.push((deg(a), false));
    }
    bearings.sort_by_key(|b| b.0);
    let in_ = bearings.iter().position(|b| b.1 && before.is_some());
    let out = bearings.iter().position(|b| !b.1);
    Intersection {
        location: location(at),
        bearings: bearings.iter().map(|b| b.0).collect(),
        entry: vec![true; bearings.len()],
        in_,
        out,
    }
}

/// Steps of a leg: consecutive segments with the same road name form one step; a `depart`
/// step starts it and an `arrive` step ends it.
pub fn steps(route: &EngineRoute, format: Geometries) -> Vec<RouteStep> {
    let g = &route.geometry;
    if g.is_empty() {
        return Vec::new();
    }
    // Group segments by name: (name, first point, last point, metres, seconds).
    let mut groups: Vec<(&str, usize, usize, f64, f64)> = Vec::new();
    for seg in &route.segments {
        let start = seg.geometry.start.min(g.len() - 1);
        let end = seg.geometry.end.saturating_sub(1).clamp(start, g.len() - 1);
        match groups.last_mut() {
            Some(last) if last.0 == &*seg.name => {
                last.2 = end;
                last.3 += seg.distance_m;
                last.4 += seg.duration_s;
            }
            _ => groups.push((&*seg.name, start, end, seg.distance_m, seg.duration_s)),
        }
    }
    if groups.is_empty() {
        groups.push(("", 0, g.len() - 1, route.distance_m, route.duration_s));
    }
    let mut steps = Vec::with_capacity(groups.len() + 1);
    for (k, &(name, start, end, distance, duration)) in groups.iter().enumerate() {
        let at = g[start];
        let before = (k > 0).then(|| bearing_in(g, start)).flatten();
        let after = bearing_out(g, start).filter(|_| end > start);
        let (kind, modifier) = if k == 0 {
            ("depart", None)
        } else {
            let m = modifier(before.unwrap_or(0.0), after.unwrap_or(0.0));
            if m == "straight" {
                ("new name", Some(m))
            } else {
                ("turn", Some(m))
            }
        };
        steps.push(RouteStep {
            geometry: encode(&g[start..=end], format),
            maneuver: StepManeuver {
                bearing_after: after.map_or(0, deg),
                bearing_before: before.map_or(0, deg),
                location: location(at),
                kind: kind.to_owned(),
                modifier: modifier.map(str::to_owned),
            },
            mode: "driving".to_owned(),
            driving_side: "right".to_owned(),
            name: name.to_owned(),
            intersections: vec![intersection(at, before, after)],
            weight: round1(duration),
            duration: round1(duration),
            distance: round1(distance),
        });
    }
    let last = g.len() - 1;
    let before = bearing_in(g, last);
    let end = g[last];
    steps.push(RouteStep {
        geometry: encode(&[end, end], format),
        maneuver: StepManeuver {
            bearing_after: 0,
            bearing_before: before.map_or(0, deg),
            location: location(end),
            kind: "arrive".to_owned(),
            modifier: None,
        },
        mode: "driving".to_owned(),
        driving_side: "right".to_owned(),
        name: groups.last().map_or("", |g| g.0).to_owned(),
        intersections: vec![intersection(end, before, None)],
        weight: 0.0,
        duration: 0.0,
        distance: 0.0,
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroute_engine::RouteSegment;

    fn c(lon: f64, lat: f64) -> Coord {
        Coord { lon, lat }
    }

    /// East along "A" for two points, then north along "B".
    fn l_shaped() -> EngineRoute {
        let geometry = vec![
            c(7.0, 43.0),
            c(7.001, 43.0),
            c(7.002, 43.0),
            c(7.002, 43.001),
        ];
        EngineRoute {
            duration_s: 30.0,
            distance_m: 270.0,
            segments: vec![
                RouteSegment {
                    name: "A".into(),
                    duration_s: 10.0,
                    distance_m: 81.0,
                    geometry: 0..2,
                },
                RouteSegment {
                    name: "A".into(),
                    duration_s: 10.0,
                    distance_m: 81.0,
                    geometry: 1..3,
                },
                RouteSegment {
                    name: "B".into(),
                    duration_s: 10.0,
                    distance_m: 111.0,
                    geometry: 2..4,
                },
            ],
            geometry,
            nodes: vec![11, 12, 13, 14],
        }
    }

    #[test]
    fn steps_depart_turn_arrive() {
        let steps = steps(&l_shaped(), Geometries::Geojson);
        let kinds: Vec<_> = steps.iter().map(|s| s.maneuver.kind.as_str()).collect();
        assert_eq!(kinds, ["depart", "turn", "arrive"]);
        assert_eq!(steps[0].name, "A");
        assert_eq!(steps[0].distance, 162.0);
        assert_eq!(steps[0].maneuver.bearing_after, 90);
        assert_eq!(steps[0].maneuver.bearing_before, 0);
        assert_eq!(steps[1].maneuver.modifier.as_deref(), Some("left"));
        assert_eq!(steps[1].maneuver.bearing_before, 90);
        assert_eq!(steps[1].maneuver.bearing_after, 0);
        assert_eq!(steps[1].maneuver.location, [7.002, 43.0]);
        assert_eq!(steps[2].maneuver.location, [7.002, 43.001]);
        assert_eq!(steps[2].distance, 0.0);
        let Geometry::GeoJson(line) = &steps[0].geometry else {
            panic!("geojson requested")
        };
        assert_eq!(line.coordinates.len(), 3);
        // The turn's intersection: arriving from the west (bearing 270), leaving north (0).
        assert_eq!(steps[1].intersections[0].bearings, [0, 270]);
        assert_eq!(steps[1].intersections[0].in_, Some(1));
        assert_eq!(steps[1].intersections[0].out, Some(0));
    }

    #[test]
    fn modifiers_cover_the_circle() {
        assert_eq!(modifier(0.0, 5.0), "straight");
        assert_eq!(modifier(355.0, 10.0), "straight");
        assert_eq!(modifier(0.0, 45.0), "slight right");
        assert_eq!(modifier(0.0, 90.0), "right");
        assert_eq!(modifier(0.0, 180.0), "uturn");
        assert_eq!(modifier(90.0, 0.0), "left");
        assert_eq!(modifier(0.0, 320.0), "slight left");
    }

    #[test]
    fn annotations_split_durations_by_length() {
        let options = RouteOptions {
            annotations: vec![RouteAnnotation::Duration, RouteAnnotation::Distance],
            ..RouteOptions::default()
        };
        let leg = leg(&l_shaped(), &options);
        let a = leg.annotation.unwrap();
        let duration = a.duration.unwrap();
        assert_eq!(duration.len(), 3);
        assert!((duration.iter().sum::<f64>() - 30.0).abs() < 0.2);
        assert_eq!(a.distance.unwrap().len(), 3);
        assert!(a.speed.is_none());
        assert_eq!(leg.summary, "A, B");
    }

    #[test]
    fn node_annotations_are_the_engine_nodes() {
        let options = RouteOptions {
            annotations: vec![RouteAnnotation::Nodes],
            ..RouteOptions::default()
        };
        let a = leg(&l_shaped(), &options).annotation.unwrap();
        assert_eq!(a.nodes, Some(vec![11, 12, 13, 14]));
        assert!(a.duration.is_none());
    }

    #[test]
    fn overview_options() {
        let mut options = RouteOptions {
            overview: Overview::False,
            ..RouteOptions::default()
        };
        let legs = [l_shaped(), l_shaped()];
        assert!(route(&legs, &options).geometry.is_none());
        options.overview = Overview::Full;
        options.geometries = Geometries::Geojson;
        let r = route(&legs, &options);
        let Some(Geometry::GeoJson(line)) = r.geometry else {
            panic!("geojson requested")
        };
        assert_eq!(line.coordinates.len(), 8, "legs are concatenated");
        assert_eq!(r.distance, 540.0);
        assert_eq!(r.weight_name, WEIGHT_NAME);
        // Straight collinear points simplify away.
        let line = [c(7.0, 43.0), c(7.001, 43.0), c(7.002, 43.0)];
        assert_eq!(simplify(&line, 5.0).len(), 2);
        assert_eq!(simplify(&l_shaped().geometry, 5.0).len(), 3);
    }
}
