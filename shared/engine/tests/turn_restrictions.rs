//! Turn restrictions are honoured, and routes carry the OSM node ids of their geometry.
//!
//! The Porto checks read the extract a second time with `osmpbf` directly, independently of
//! the engine's import: the restrictions, the ways' node lists and the node coordinates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{monaco, monaco_pbf, porto_pbf, random_snaps};
use edgeroute_engine::geo::haversine_m;
use edgeroute_engine::oracle::Oracle;
use edgeroute_engine::profile::Direction;
use edgeroute_engine::{
    BuildOptions, CarProfile, Coord, Graph, NodeHandle, RoadHandle, RoadNetwork,
    RoadNetworkBuilder, Route,
};
use osmpbf::{Element, ElementReader, RelMemberType};
use std::collections::HashMap;
use std::path::Path;

fn c(lon: f64, lat: f64) -> Coord {
    Coord { lon, lat }
}

/// A plus-shaped crossing at `x` with arms to the west, east, north and south, and a ring
/// road joining the arms' ends so every forbidden turn has a detour.
fn crossing(restrict: impl FnOnce(&mut RoadNetworkBuilder, [RoadHandle; 4], NodeHandle)) -> Graph {
    let mut b = RoadNetwork::builder();
    let x = b.add_node(c(7.0, 43.0));
    let w = b.add_node(c(6.99, 43.0));
    let e = b.add_node(c(7.01, 43.0));
    let n = b.add_node(c(7.0, 43.01));
    let s = b.add_node(c(7.0, 42.99));
    let arms = [w, e, n, s].map(|end| {
        b.add_road(end, x, &[], 36.0, Direction::Both, "arm")
            .unwrap()
    });
    for (p, q) in [(w, n), (n, e), (e, s), (s, w)] {
        b.add_road(p, q, &[], 36.0, Direction::Both, "ring")
            .unwrap();
    }
    restrict(&mut b, arms, x);
    Graph::from_network(b.build().unwrap(), &BuildOptions::default()).unwrap()
}

/// Drives from near the crossing on one arm to near it on another.
fn across(g: &Graph, from: Coord, to: Coord) -> Route {
    let a = g.snap(from, 50.0).unwrap();
    let b = g.snap(to, 50.0).unwrap();
    let r = g.route(&a, &b).unwrap();
    let o = Oracle::new(g).route(&a, &b).unwrap();
    assert_eq!((r.duration_s, r.distance_m), (o.duration_s, o.distance_m));
    r
}

#[test]
fn a_forbidden_turn_is_driven_around_and_an_only_turn_is_the_only_one() {
    let west = c(6.999, 43.0);
    let north = c(7.0, 43.001);
    let east = c(7.001, 43.0);
    let free = crossing(|_, _, _| {});
    assert!(across(&free, west, north).distance_m < 300.0);
    // West arm -> north arm forbidden: the car takes the ring instead.
    let no_left = crossing(|b, [w, _, n, _], x| assert!(b.restrict_turn(w, x, n, false)));
    assert!(across(&no_left, west, north).distance_m > 1_000.0);
    assert!(
        across(&no_left, west, east).distance_m < 300.0,
        "other turns stay"
    );
    assert!(
        across(&no_left, north, west).distance_m < 300.0,
        "the reverse stays"
    );
    assert_eq!(no_left.info().split_nodes, 1);
    // Only straight on from the west arm: north is forbidden too, east is not.
    let only = crossing(|b, [w, e, _, _], x| assert!(b.restrict_turn(w, x, e, true)));
    assert!(across(&only, west, north).distance_m > 1_000.0);
    assert!(across(&only, west, east).distance_m < 300.0);
    // A restriction naming roads that do not meet at the junction is refused.
    crossing(|b, [w, e, _, _], _| {
        let elsewhere = b.add_node(c(8.0, 44.0));
        assert!(!b.restrict_turn(w, elsewhere, e, false));
    });
    // Survives the artifact.
    let loaded = Graph::from_artifact(&no_left.to_artifact()).unwrap();
    assert!(across(&loaded, west, north).distance_m > 1_000.0);
    assert_eq!(loaded.info(), no_left.info());
}

#[test]
fn old_artifacts_are_refused_with_a_rebuild_hint() {
    let mut bytes = monaco().to_artifact();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let err = Graph::from_artifact(&bytes).unwrap_err();
    let text = format!("{}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("version 1") && text.contains("rebuild"),
        "{text}"
    );
}

/// A restriction as tagged: (only, from way, via node or via ways, to way).
type Tagged = (bool, i64, Result<i64, Vec<i64>>, i64);

/// What the tests need from an OSM file, read without the engine.
struct Osm {
    coords: HashMap<i64, Coord>,
    ways: HashMap<i64, Vec<i64>>,
    restrictions: Vec<Tagged>,
}

fn read_osm(path: &Path) -> Osm {
    let mut osm = Osm {
        coords: HashMap::new(),
        ways: HashMap::new(),
        restrictions: Vec::new(),
    };
    ElementReader::from_path(path)
        .unwrap()
        .for_each(|e| match e {
            Element::DenseNode(n) => {
                osm.coords.insert(n.id(), c(n.lon(), n.lat()));
            }
            Element::Node(n) => {
                osm.coords.insert(n.id(), c(n.lon(), n.lat()));
            }
            Element::Way(w) => {
                osm.ways.insert(w.id(), w.refs().collect());
            }
            Element::Relation(r) => {
                let tags: HashMap<&str, &str> = r.tags().collect();
                if tags.get("type") != Some(&"restriction") {
                    return;
                }
                let value = tags
                    .get("restriction:motorcar")
                    .or_else(|| tags.get("restriction"));
                let Some(value) = value else { return };
                if tags.get("except").is_some_and(|e| e.contains("motorcar")) {
                    return;
                }
                let (mut from, mut to, mut via_n, mut via_w) = (vec![], vec![], vec![], vec![]);
                for m in r.members() {
                    let way = m.member_type == RelMemberType::Way;
                    match (m.role().unwrap(), way) {
                        ("from", true) => from.push(m.member_id),
                        ("to", true) => to.push(m.member_id),
                        ("via", true) => via_w.push(m.member_id),
                        ("via", false) => via_n.push(m.member_id),
                        _ => {}
                    }
                }
                let via = match (via_n.as_slice(), via_w.is_empty()) {
                    (&[n], true) => Ok(n),
                    (&[], false) => Err(via_w),
                    _ => return,
                };
                if let (&[f], &[t]) = (from.as_slice(), to.as_slice()) {
                    osm.restrictions
                        .push((value.starts_with("only_"), f, via, t));
                }
            }
        })
        .unwrap();
    osm
}

/// The neighbour of `end` on `way`, if `end` is the way's first or last node.
fn neighbour(way: &[i64], end: i64) -> Option<i64> {
    if way.first() == Some(&end) {
        way.get(1).copied()
    } else if way.last() == Some(&end) {
        way.get(way.len().checked_sub(2)?).copied()
    } else {
        None
    }
}

fn towards(a: Coord, b: Coord, t: f64) -> Coord {
    c(a.lon + (b.lon - a.lon) * t, a.lat + (b.lat - a.lat) * t)
}

#[test]
fn porto_routes_never_take_a_restricted_turn() {
    let Some(path) = porto_pbf() else { return };
    let osm = read_osm(&path);
    let g = Graph::from_osm_file(&path, &CarProfile::default(), &BuildOptions::default()).unwrap();
    let stats = g.info().restrictions;
    eprintln!(
        "Porto restrictions: {stats:?}, split nodes {}",
        g.info().split_nodes
    );
    assert!(stats.applied >= 300, "{stats:?}");
    let oracle = Oracle::new(&g);
    let (mut checked, mut detours) = (0, 0);
    for (only, from, via, to) in &osm.restrictions {
        let (Some(fw), Some(tw)) = (osm.ways.get(from), osm.ways.get(to)) else {
            continue;
        };
        // The node sequence of the restricted manoeuvre: p, via node(s), q.
        let vias: Vec<i64> = match via {
            Ok(node) => vec![*node],
            Err(ways) => {
                let mut chain: Vec<i64> = Vec::new();
                for w in ways {
                    let Some(nodes) = osm.ways.get(w) else { break };
                    let mut nodes = nodes.clone();
                    let joins_prev = chain.last().copied().or_else(|| {
                        [fw.first(), fw.last()]
                            .into_iter()
                            .flatten()
                            .copied()
                            .find(|n| nodes.first() == Some(n) || nodes.last() == Some(n))
                    });
                    if nodes.last().copied() == joins_prev {
                        nodes.reverse();
                    }
                    if chain.last().is_some() {
                        nodes.remove(0);
                    }
                    chain.extend(nodes);
                }
                chain
            }
        };
        let (Some(&first), Some(&last)) = (vias.first(), vias.last()) else {
            continue;
        };
        let (Some(p), Some(q)) = (neighbour(fw, first), neighbour(tw, last)) else {
            continue;
        };
        let (Some(&cp), Some(&cf), Some(&cl), Some(&cq)) = (
            osm.coords.get(&p),
            osm.coords.get(&first),
            osm.coords.get(&last),
            osm.coords.get(&q),
        ) else {
            continue;
        };
        let (Ok(a), Ok(b)) = (
            g.snap(towards(cp, cf, 0.9), 1.0),
            g.snap(towards(cl, cq, 0.1), 1.0),
        ) else {
            continue; // not a car road in this profile, or outside the kept component
        };
        let Ok(route) = g.route(&a, &b) else { continue };
        // The hierarchy and the edge-based oracle agree right where restrictions bite.
        let expected = oracle.route(&a, &b).unwrap();
        assert_eq!(
            (route.duration_s, route.distance_m),
            (expected.duration_s, expected.distance_m),
            "restriction {from} -> {to}"
        );
        let mut manoeuvre = vec![p];
        manoeuvre.extend(&vias);
        let k = manoeuvre.len();
        let n = &route.nodes;
        for i in 0..n.len().saturating_sub(k) {
            if n[i..i + k] == manoeuvre[..] {
                let next = n[i + k];
                if *only {
                    assert_eq!(next, q, "only_ turn {from} -> {to} left via {next}: {n:?}");
                } else {
                    assert_ne!(next, q, "no_ turn {from} -> {to} taken: {n:?}");
                }
            }
        }
        manoeuvre.push(q);
        if !only && n.windows(k + 1).all(|w| w != manoeuvre) {
            detours += 1;
        }
        checked += 1;
    }
    eprintln!("checked {checked} restrictions, {detours} no_ routes avoid the turn");
    assert!(
        checked >= 250,
        "only {checked} restrictions could be checked"
    );
}

/// Every interior geometry point is the OSM node named for it; the snapped ends lie on the
/// segment between the first (last) two named nodes.
fn assert_nodes_match_geometry(route: &Route, coords: &HashMap<i64, Coord>) {
    let (g, n) = (&route.geometry, &route.nodes);
    assert_eq!(g.len(), n.len());
    for i in 1..g.len() - 1 {
        let at = coords[&n[i]];
        assert!(
            haversine_m(at, g[i]) < 0.01,
            "point {i}: {:?} vs node {}",
            g[i],
            n[i]
        );
    }
    for (end, a, b) in [
        (g[0], n[0], n[1]),
        (g[g.len() - 1], n[n.len() - 2], n[n.len() - 1]),
    ] {
        let (ca, cb) = (coords[&a], coords[&b]);
        let via = haversine_m(ca, end) + haversine_m(end, cb);
        assert!(
            via - haversine_m(ca, cb) < 0.5,
            "end {end:?} is not between {a} and {b}"
        );
    }
}

#[test]
fn route_nodes_are_the_osm_nodes_of_the_geometry() {
    let osm = read_osm(&monaco_pbf());
    let g = monaco();
    let snaps = random_snaps(g, 400, 0x0de5, 500.0);
    for pair in snaps.chunks(2) {
        let r = g.route(&pair[0], &pair[1]).unwrap();
        assert_nodes_match_geometry(&r, &osm.coords);
    }
    let Some(path) = porto_pbf() else { return };
    let osm = read_osm(&path);
    let g = Graph::from_osm_file(&path, &CarProfile::default(), &BuildOptions::default()).unwrap();
    for pair in random_snaps(&g, 200, 0x0de6, 300.0).chunks(2) {
        let r = g.route(&pair[0], &pair[1]).unwrap();
        assert_nodes_match_geometry(&r, &osm.coords);
    }
}
