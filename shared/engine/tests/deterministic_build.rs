//! A graph build uses every core, yet the same input must give the same artifact bytes
//! (the graph's identity) whatever the number of threads: agents and the control plane
//! compare graphs by that identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use edgeroute_engine::{BuildOptions, CarProfile, Graph};

fn build_with_threads(threads: usize) -> Vec<u8> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        Graph::from_osm_file(
            &common::monaco_pbf(),
            &CarProfile::default(),
            &BuildOptions::default(),
        )
        .unwrap()
        .to_artifact()
    })
}

#[test]
fn artifact_bytes_do_not_depend_on_the_thread_count() {
    let one = build_with_threads(1);
    // More threads than this machine's cores too, so that the work is interleaved
    // differently from run to run.
    for threads in [2, 5] {
        let many = build_with_threads(threads);
        assert_eq!(
            one.len(),
            many.len(),
            "{threads} threads: artifact size differs"
        );
        assert!(one == many, "{threads} threads: artifact bytes differ");
    }
    assert!(
        one == build_with_threads(1),
        "two single-thread builds differ"
    );
}
