//! Engine benchmarks: build, point-to-point query (with geometry and duration only),
//! 100x100 and 1,000x1,000 tables, snapping, artifact load.
//!
//! `cargo bench -p edgeroute-engine --bench routing`. Porto comes from the shared data set
//! beside the repository (`../shared/data/osm/porto.osm.pbf`) and is skipped with a notice
//! when it is absent. Building Porto takes long enough that it is timed once, not sampled.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeroute_engine::{BuildOptions, CarProfile, Coord, Graph, Snap};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn maps() -> Vec<(&'static str, PathBuf)> {
    let mut maps = vec![("monaco", repo().join("data/monaco.osm.pbf"))];
    if let Some(porto) = edgeroute_tests::data::shared_data("osm/porto.osm.pbf") {
        maps.push(("porto", porto));
    }
    maps
}

fn build(path: &Path) -> Graph {
    Graph::from_osm_file(path, &CarProfile::default(), &BuildOptions::default()).unwrap()
}

/// Deterministic random snapped points inside the graph's bounding box.
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

fn benches(c: &mut Criterion) {
    for (name, path) in maps() {
        let started = Instant::now();
        let graph = build(&path);
        let build_time = started.elapsed();
        let bytes = graph.to_artifact();
        eprintln!(
            "{name}: import + CH build {:.2}s (one run); {} nodes, {} edges, {} arcs; artifact {:.1} MiB",
            build_time.as_secs_f64(),
            graph.info().node_count,
            graph.info().edge_count,
            graph.info().arc_count,
            bytes.len() as f64 / (1024.0 * 1024.0)
        );

        if name == "monaco" {
            let mut group = c.benchmark_group("build");
            group.sample_size(10);
            group.bench_function("monaco_import_and_ch", |b| {
                b.iter(|| black_box(build(&path)))
            });
            group.finish();
        }

        let pairs = snaps(&graph, 2000, 0xbe_7c_4a);
        let mut i = 0;
        c.bench_function(&format!("route/{name}/random_pair"), |b| {
            b.iter(|| {
                let (x, y) = (&pairs[i % 2000], &pairs[(i + 1) % 2000]);
                i += 2;
                black_box(graph.route(x, y).ok())
            })
        });

        // Duration only, one pair: what the VRP's lookups and a 1x1 `/table` cost.
        let mut i = 0;
        c.bench_function(&format!("route/{name}/random_pair_duration_only"), |b| {
            b.iter(|| {
                let (x, y) = (i % 2000, (i + 1) % 2000);
                i += 2;
                black_box(
                    graph
                        .table(&pairs[x..x + 1], &pairs[y..y + 1])
                        .duration_s(0, 0),
                )
            })
        });

        let pts = snaps(&graph, 100, 0x7ab1e);
        let mut group = c.benchmark_group("table");
        group.sample_size(20);
        group.bench_with_input(BenchmarkId::new(name, "100x100"), &pts, |b, pts| {
            b.iter(|| black_box(graph.table(pts, pts)))
        });
        let pts = snaps(&graph, 1000, 0x7ab1e);
        group.sample_size(10);
        group.bench_with_input(BenchmarkId::new(name, "1000x1000"), &pts, |b, pts| {
            b.iter(|| black_box(graph.table(pts, pts)))
        });
        group.finish();

        let [a, bb, cc, d] = graph.info().bbox;
        let mut k = 0u64;
        c.bench_function(&format!("snap/{name}"), |b| {
            b.iter(|| {
                k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let f = (k >> 11) as f64 / (1u64 << 53) as f64;
                let p = Coord {
                    lon: a + f * (cc - a),
                    lat: bb + (1.0 - f) * (d - bb),
                };
                black_box(graph.snap(p, 300.0).ok())
            })
        });

        let mut group = c.benchmark_group("artifact_load");
        group.sample_size(10);
        group.bench_function(name, |b| {
            b.iter(|| black_box(Graph::from_artifact(&bytes).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(engine, benches);
criterion_main!(engine);
