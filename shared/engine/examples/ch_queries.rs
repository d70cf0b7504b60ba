//! A fixed batch of queries on a built artifact, for instruction counts that do not depend
//! on what else the machine is doing (callgrind), before and after a change to the query
//! code:
//!
//! ```sh
//! cargo build --release -p edgeroute-engine --example ch_queries
//! target/release/examples/ch_queries porto.graph none 1000   # load + snapping only
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/ch_queries porto.graph pair 1000
//! ```
//!
//! An optional fourth argument repeats the queries that many times over the same pairs, so
//! that a sampling profiler (`perf record`) sees mostly queries rather than loading and
//! snapping. Every mode but `digest` prints the wall-clock time per query at the end.
//!
//! Modes: `none` (the baseline to subtract), `pair` (1x1 duration-only table), `route`
//! (route with geometry and OSM node ids), `geometry` (route with geometry, no node ids:
//! what an OSRM `/route` without `annotations=nodes` builds), `summary` (route with totals
//! and named segments only), `snap` (snapping the two points once more), `digest` (prints a
//! hash over every route's full output, one over the 1x1 tables and a 30x30 table, and one
//! over the search-space sizes: run the binaries before and after a change to the query
//! code on the same artifact and compare the line, to show the results are exactly as they
//! were). The points are drawn as in `ch_profile` and `benches/routing.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeroute_engine::{Coord, Detail, Graph, Snap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ch_queries <artifact> <none|pair|route|geometry|summary|snap|digest> <count> [repeat]";
    let path = PathBuf::from(args.next().expect(usage));
    let mode = args.next().expect(usage);
    let count: usize = args.next().expect(usage).parse().expect(usage);
    let repeat: usize = args.next().map_or(1, |r| r.parse().expect(usage));
    let graph = Graph::read_artifact(&path).unwrap();
    let [a, b, c, d] = graph.info().bbox;
    let mut seed = 0xbe_7c_4au64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut coords: Vec<Coord> = Vec::with_capacity(2 * count);
    let mut pts: Vec<Snap> = Vec::with_capacity(2 * count);
    while pts.len() < 2 * count {
        let p = Coord {
            lon: a + next() * (c - a),
            lat: b + next() * (d - b),
        };
        if let Ok(s) = graph.snap(p, 300.0) {
            coords.push(p);
            pts.push(s);
        }
    }
    // `DefaultHasher::new()` has fixed keys, so the digests are comparable across binaries.
    // Three of them: the results (routes, then tables) must not change at all; the search
    // spaces may, if a change makes the searches stop earlier.
    let (mut routes, mut tables, mut spaces) = (
        DefaultHasher::new(),
        DefaultHasher::new(),
        DefaultHasher::new(),
    );
    let started = std::time::Instant::now();
    for i in (0..repeat).flat_map(|_| 0..count) {
        let (from, to) = (&pts[2 * i], &pts[2 * i + 1]);
        match mode.as_str() {
            "pair" => {
                let t = graph.table(std::slice::from_ref(from), std::slice::from_ref(to));
                black_box(t.duration_s(0, 0));
            }
            "route" => {
                black_box(graph.route(from, to).ok());
            }
            "geometry" => {
                black_box(graph.route_with(from, to, Detail::Geometry).ok());
            }
            "summary" => {
                black_box(graph.route_with(from, to, Detail::Summary).ok());
            }
            "snap" => {
                black_box(graph.snap(coords[2 * i], 300.0).ok());
                black_box(graph.snap(coords[2 * i + 1], 300.0).ok());
            }
            "digest" => {
                format!("{:?}", graph.route(from, to)).hash(&mut routes);
                let t = graph.table(std::slice::from_ref(from), std::slice::from_ref(to));
                format!("{:?} {:?}", t.duration_s(0, 0), t.distance_m(0, 0)).hash(&mut tables);
                format!("{:?}", graph.search_space(from, to)).hash(&mut spaces);
            }
            "none" => {}
            other => panic!("unknown mode {other}; {usage}"),
        }
    }
    if mode != "digest" {
        let calls = (repeat * count).max(1) as f64;
        println!(
            "{mode}: {:.2} us per query ({} queries)",
            started.elapsed().as_secs_f64() * 1e6 / calls,
            repeat * count
        );
    }
    if mode == "digest" {
        let n = pts.len().min(30);
        let t = graph.table(&pts[..n], &pts[..n]);
        for i in 0..n {
            for j in 0..n {
                format!("{:?} {:?}", t.duration_s(i, j), t.distance_m(i, j)).hash(&mut tables);
            }
        }
        println!(
            "{count} pairs: routes {:016x}, 1x1 and {n}x{n} tables {:016x}, search spaces {:016x}",
            routes.finish(),
            tables.finish(),
            spaces.finish()
        );
    }
}
