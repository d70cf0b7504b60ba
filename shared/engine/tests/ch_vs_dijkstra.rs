//! Every contraction-hierarchy answer must equal plain Dijkstra's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{monaco, porto_pbf, random_snaps};
use edgeroute_engine::oracle::Oracle;
use edgeroute_engine::{BuildOptions, CarProfile, Error, Graph, Snap};

fn assert_matches_oracle(graph: &Graph, pairs: usize, seed: u64) {
    let oracle = Oracle::new(graph);
    let snaps = random_snaps(graph, pairs * 2, seed, 500.0);
    let mut routed = 0;
    for pair in snaps.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let expected = oracle.route(a, b);
        match graph.route(a, b) {
            Ok(route) => {
                let e = expected.unwrap_or_else(|| {
                    panic!("CH found a route the oracle did not: {a:?} -> {b:?}")
                });
                assert_eq!(route.duration_s, e.duration_s, "duration {a:?} -> {b:?}");
                assert_eq!(route.distance_m, e.distance_m, "distance {a:?} -> {b:?}");
                check_route_consistency(&route, a, b);
                routed += 1;
            }
            Err(Error::NoRoute) => assert!(
                expected.is_none(),
                "oracle found {expected:?} for {a:?} -> {b:?}"
            ),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    // The largest SCC is kept, so every pair of snapped points is connected.
    assert_eq!(routed, pairs);
}

fn check_route_consistency(route: &edgeroute_engine::Route, a: &Snap, b: &Snap) {
    assert_eq!(route.geometry.first(), Some(&a.location));
    assert_eq!(route.geometry.last(), Some(&b.location));
    let d: f64 = route.segments.iter().map(|s| s.duration_s).sum();
    let m: f64 = route.segments.iter().map(|s| s.distance_m).sum();
    assert!(
        (d - route.duration_s).abs() < 1e-6,
        "segment durations {d} vs {}",
        route.duration_s
    );
    assert!(
        (m - route.distance_m).abs() < 1e-6,
        "segment distances {m} vs {}",
        route.distance_m
    );
    let mut expected_start = 0;
    for s in &route.segments {
        assert_eq!(s.geometry.start, expected_start, "segments are contiguous");
        assert!(s.geometry.end <= route.geometry.len());
        expected_start = s.geometry.end - 1;
    }
    assert_eq!(expected_start, route.geometry.len() - 1);
    // The geometry's length should match the reported distance (it is the same path):
    // allow for the decimetre rounding per edge.
    let geo_len: f64 = route
        .geometry
        .windows(2)
        .map(|w| edgeroute_engine::geo::haversine_m(w[0], w[1]))
        .sum();
    let tolerance = 0.1 * route.segments.len() as f64 + 1.0;
    assert!(
        (geo_len - route.distance_m).abs() <= tolerance,
        "geometry {geo_len} m vs distance {} m",
        route.distance_m
    );
}

#[test]
fn monaco_ch_equals_dijkstra_on_1000_random_pairs() {
    assert_matches_oracle(monaco(), 1000, 0x5eed_0001);
}

/// Both ways of answering a table: 12x12 and 1x60 combine per-line searches through the
/// core table (at most 16 cells per row and column), 40x45 uses buckets.
#[test]
fn monaco_table_equals_pairwise_routes() {
    let g = monaco();
    for (n, m) in [(12, 12), (1, 60), (40, 45)] {
        let sources = random_snaps(g, n, 7, 500.0);
        let targets = random_snaps(g, m, 8, 500.0);
        assert_table_equals_routes(g, &sources, &targets);
    }
}

fn assert_table_equals_routes(g: &Graph, sources: &[Snap], targets: &[Snap]) {
    let table = g.table(sources, targets);
    assert_eq!(
        (table.sources(), table.targets()),
        (sources.len(), targets.len())
    );
    for (i, s) in sources.iter().enumerate() {
        for (j, t) in targets.iter().enumerate() {
            let r = g.route(s, t).unwrap();
            assert_eq!(
                table.duration_s(i, j),
                Some(r.duration_s),
                "duration [{i}][{j}]"
            );
            assert_eq!(
                table.distance_m(i, j),
                Some(r.distance_m),
                "distance [{i}][{j}]"
            );
        }
    }
    assert_eq!(
        table.duration_s(sources.len(), 0),
        None,
        "out of range cell"
    );
}

#[test]
fn same_point_and_same_road() {
    let g = monaco();
    for s in random_snaps(g, 50, 99, 500.0) {
        let r = g.route(&s, &s).unwrap();
        assert_eq!(r.duration_s, 0.0);
        assert_eq!(r.distance_m, 0.0);
        // Two points on the same road, in both orders, agree with the oracle.
        let oracle = Oracle::new(g);
        let other = g.nearest(s.input, 1, 500.0).unwrap().remove(0);
        let shifted = g
            .snap(
                edgeroute_engine::Coord {
                    lon: (s.location.lon + other.location.lon) / 2.0 + 1e-5,
                    lat: s.location.lat,
                },
                500.0,
            )
            .unwrap();
        for (a, b) in [(&s, &shifted), (&shifted, &s)] {
            let expected = oracle.route(a, b).unwrap();
            let got = g.route(a, b).unwrap();
            assert_eq!(
                (got.duration_s, got.distance_m),
                (expected.duration_s, expected.distance_m)
            );
        }
    }
}

#[test]
fn porto_ch_equals_dijkstra_on_1000_random_pairs() {
    let Some(path) = porto_pbf() else {
        return;
    };
    let g = Graph::from_osm_file(&path, &CarProfile::default(), &BuildOptions::default()).unwrap();
    assert!(
        g.info().node_count > 40_000,
        "Porto's junction graph: {:?}",
        g.info()
    );
    // The oracle is turn-aware; make sure there are turns to be aware of.
    assert!(g.info().split_nodes > 0, "{:?}", g.info());
    assert_matches_oracle(&g, 1000, 0x5eed_0002);
    // 1x1 tables go through the core table, not the path query: same answers as routes
    // (which the oracle checked above) on a graph whose core is a small part of it.
    let pairs = random_snaps(&g, 600, 0x5eed_0004, 300.0);
    for (k, pair) in pairs.chunks(2).enumerate() {
        let table = g.table(&pair[..1], &pair[1..]);
        let r = g.route(&pair[0], &pair[1]).unwrap();
        assert_eq!(table.duration_s(0, 0), Some(r.duration_s), "1x1 pair {k}");
        assert_eq!(table.distance_m(0, 0), Some(r.distance_m), "1x1 pair {k}");
    }
    let sources = random_snaps(&g, 10, 3, 300.0);
    let targets = random_snaps(&g, 12, 4, 300.0);
    let table = g.table(&sources, &targets);
    for (i, s) in sources.iter().enumerate() {
        for (j, t) in targets.iter().enumerate() {
            let r = g.route(s, t).unwrap();
            assert_eq!(table.duration_s(i, j), Some(r.duration_s));
            assert_eq!(table.distance_m(i, j), Some(r.distance_m));
        }
    }
}

#[test]
fn small_tables_take_the_point_to_point_path_and_equal_dijkstra() {
    // Tables with no more cells than rows plus columns are answered by one pruned
    // point-to-point search per cell instead of buckets: check that path on its own.
    let g = monaco();
    let oracle = Oracle::new(g);
    let pts = random_snaps(g, 120, 0x5eed_0003, 500.0);
    for (k, pair) in pts.chunks(2).enumerate() {
        let table = g.table(&pair[..1], &pair[1..]);
        let expected = oracle.route(&pair[0], &pair[1]);
        assert_eq!(
            table.duration_s(0, 0),
            expected.as_ref().map(|r| r.duration_s),
            "1x1 pair {k}"
        );
        assert_eq!(
            table.distance_m(0, 0),
            expected.as_ref().map(|r| r.distance_m),
            "1x1 pair {k}"
        );
    }
    for shape in pts.chunks(4) {
        let (sources, targets) = shape.split_at(2);
        let table = g.table(sources, targets);
        for (i, s) in sources.iter().enumerate() {
            for (j, t) in targets.iter().enumerate() {
                let expected = oracle.route(s, t).map(|r| r.duration_s);
                assert_eq!(table.duration_s(i, j), expected, "2x2 cell [{i}][{j}]");
            }
        }
    }
}

/// A summary route is the full route without its shape: same totals, same named segments.
/// A geometry route is the full route without its OSM node ids.
#[test]
fn summary_and_geometry_routes_are_full_routes_without_parts() {
    let graph = monaco();
    let snaps = random_snaps(graph, 600, 0x5eed_5a11, 500.0);
    // Same-road pairs take the direct path; include some.
    let same_road = snaps.iter().map(|s| (s, s));
    let pairs = snaps
        .chunks(2)
        .map(|p| (&p[0], &p[1]))
        .chain(same_road.take(20));
    for (a, b) in pairs {
        let full = graph.route(a, b).unwrap();
        let summary = graph
            .route_with(a, b, edgeroute_engine::Detail::Summary)
            .unwrap();
        assert!(summary.geometry.is_empty() && summary.nodes.is_empty());
        assert!(!full.geometry.is_empty());
        assert_eq!(summary.duration_s, full.duration_s);
        assert_eq!(summary.distance_m, full.distance_m);
        assert_eq!(summary.segments.len(), full.segments.len());
        for (s, f) in summary.segments.iter().zip(&full.segments) {
            assert_eq!(
                (&s.name, s.duration_s, s.distance_m, s.geometry.clone()),
                (&f.name, f.duration_s, f.distance_m, 0..0)
            );
        }
        let geometry = graph
            .route_with(a, b, edgeroute_engine::Detail::Geometry)
            .unwrap();
        assert!(geometry.nodes.is_empty());
        assert_eq!(full.nodes.len(), full.geometry.len());
        assert_eq!(
            edgeroute_engine::Route {
                nodes: full.nodes.clone(),
                ..geometry
            },
            full
        );
    }
}
