//! Side-by-side figures for the routing engine on one map, in one process: build time,
//! search-space size, point-to-point route (with geometry), 1x1 table (duration only),
//! 100x100 and 1,000x1,000 tables; snapping separately (the query figures exclude it, as
//! pandana's do). A second argument writes the artifact there, for `ch_queries`.
//!
//! ```sh
//! cargo run --release -p edgeroute-engine --example ch_profile -- ../shared/data/osm/porto.osm.pbf
//! RAYON_NUM_THREADS=1 cargo run --release -p edgeroute-engine --example ch_profile -- <pbf>
//! ```
//!
//! Plain wall-clock loops rather than criterion: the point is to run the same binary
//! right after the pandana anchor (`../shared/tools/anchors-routing`) and compare ratios.
//! Points are drawn exactly as in `benches/routing.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeroute_engine::{BuildOptions, CarProfile, Coord, Detail, Graph, Snap};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn snaps(g: &Graph, n: usize, mut seed: u64) -> Vec<Snap> {
    let [a, b, c, d] = g.info().bbox;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = Coord {
            lon: a + next() * (c - a),
            lat: b + next() * (d - b),
        };
        if let Ok(s) = g.snap(p, 300.0) {
            out.push(s);
        }
    }
    out
}

/// Mean time per call of `f` over `rounds` passes of `n` calls, best pass reported too.
fn time_per_call(rounds: usize, n: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut passes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..n {
            f(i);
        }
        passes.push(started.elapsed().as_secs_f64() / n as f64);
    }
    let mean = passes.iter().sum::<f64>() / rounds as f64;
    let best = passes.iter().cloned().fold(f64::INFINITY, f64::min);
    (mean, best)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .expect("usage: ch_profile <osm.pbf> [artifact-out]");
    let started = Instant::now();
    let graph =
        Graph::from_osm_file(&path, &CarProfile::default(), &BuildOptions::default()).unwrap();
    let build = started.elapsed().as_secs_f64();
    let info = graph.info();
    println!(
        "build: import + CH {build:.2} s, {} threads; {} nodes, {} arcs, artifact sha256 {}",
        rayon_threads(),
        info.node_count,
        info.arc_count,
        &graph.sha256()[..16]
    );

    if let Some(out) = std::env::args().nth(2) {
        // For `ch_queries` (callgrind counts on the same graph).
        graph.write_artifact(std::path::Path::new(&out)).unwrap();
    }

    let pts = snaps(&graph, 2000, 0xbe_7c_4a);
    let inputs: Vec<Coord> = pts.iter().map(|s| s.input).collect();
    let (mean, best) = time_per_call(5, inputs.len(), |i| {
        black_box(graph.snap(inputs[i], 300.0).ok());
    });
    println!(
        "snap one coordinate: {:.2} us mean, {:.2} us best pass",
        mean * 1e6,
        best * 1e6
    );
    let pairs = 1000;
    let (mut settled, mut relaxed) = (0, 0);
    for i in 0..pairs {
        let s = graph.search_space(&pts[2 * i], &pts[2 * i + 1]);
        settled += s.settled;
        relaxed += s.relaxed;
    }
    println!(
        "search space: {:.0} settled nodes, {:.0} relaxed arcs per query (mean of {pairs})",
        settled as f64 / pairs as f64,
        relaxed as f64 / pairs as f64
    );

    let (mean, best) = time_per_call(5, pairs, |i| {
        black_box(graph.route(&pts[2 * i], &pts[2 * i + 1]).ok());
    });
    println!(
        "route with geometry: {:.1} us mean, {:.1} us best pass",
        mean * 1e6,
        best * 1e6
    );
    let (mean, best) = time_per_call(5, pairs, |i| {
        black_box(
            graph
                .route_with(&pts[2 * i], &pts[2 * i + 1], Detail::Summary)
                .ok(),
        );
    });
    println!(
        "route, totals and named segments only: {:.1} us mean, {:.1} us best pass",
        mean * 1e6,
        best * 1e6
    );
    let (mean, best) = time_per_call(5, pairs, |i| {
        let t = graph.table(&pts[2 * i..2 * i + 1], &pts[2 * i + 1..2 * i + 2]);
        black_box(t.duration_s(0, 0));
    });
    println!(
        "1x1 table (duration only): {:.1} us mean, {:.1} us best pass",
        mean * 1e6,
        best * 1e6
    );
    // Narrow and small tables: one search per row and column through the core table.
    let lines = snaps(&graph, 100, 0x11e5);
    for (n, m, reps) in [(1, 100, 200), (10, 10, 500), (30, 30, 60)] {
        let (mean, best) = time_per_call(5, reps, |r| {
            let off = r % (lines.len() - n.max(m) + 1);
            black_box(graph.table(&lines[off..off + n], &lines[..m]));
        });
        println!(
            "{n}x{m} table: {:.1} us mean, {:.1} us best pass",
            mean * 1e6,
            best * 1e6
        );
    }
    let hundred = snaps(&graph, 100, 0x7ab1e);
    let (mean, best) = time_per_call(5, 4, |_| {
        black_box(graph.table(&hundred, &hundred));
    });
    println!(
        "100x100 table: {:.2} ms mean, {:.2} ms best pass",
        mean * 1e3,
        best * 1e3
    );
    let thousand = snaps(&graph, 1000, 0x7ab1e);
    let (mean, best) = time_per_call(3, 1, |_| {
        black_box(graph.table(&thousand, &thousand));
    });
    println!(
        "1000x1000 table: {:.1} ms mean, {:.1} ms best pass",
        mean * 1e3,
        best * 1e3
    );
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}
