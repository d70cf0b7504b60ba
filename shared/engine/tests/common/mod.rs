//! Shared helpers of the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use edgeroute_engine::{BuildOptions, CarProfile, Coord, Graph, Snap};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled Monaco map.
pub fn monaco_pbf() -> PathBuf {
    repo_root().join("data/monaco.osm.pbf")
}

/// The Porto extract from the shared data set, if this checkout has it beside it; a missing
/// extract prints a notice, or fails the test under `EDGEROUTE_REQUIRE_DATA=1`.
pub fn porto_pbf() -> Option<PathBuf> {
    edgeroute_tests::data::shared_data("osm/porto.osm.pbf")
}

/// Monaco, imported and prepared once per test binary.
pub fn monaco() -> &'static Graph {
    static G: OnceLock<Graph> = OnceLock::new();
    G.get_or_init(|| {
        Graph::from_osm_file(
            &monaco_pbf(),
            &CarProfile::default(),
            &BuildOptions {
                version: "monaco-test".into(),
                progress: None,
            },
        )
        .expect("Monaco imports")
    })
}

/// A tiny deterministic generator (xorshift), so failures reproduce without a rand
/// dependency in every test.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` random points inside the graph's bounding box that snap within `radius` metres.
pub fn random_snaps(graph: &Graph, n: usize, seed: u64, radius: f64) -> Vec<Snap> {
    let [min_lon, min_lat, max_lon, max_lat] = graph.info().bbox;
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let c = Coord {
            lon: min_lon + rng.unit() * (max_lon - min_lon),
            lat: min_lat + rng.unit() * (max_lat - min_lat),
        };
        if let Ok(s) = graph.snap(c, radius) {
            out.push(s);
        }
    }
    out
}
