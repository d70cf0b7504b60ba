//! A single snap is the nearest of every road in range: checked against the many-roads
//! search, which looks at every road within the radius.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, monaco};
use edgeroute_engine::{Coord, Error};

#[test]
fn a_single_snap_is_the_nearest_road_in_range() {
    let graph = monaco();
    let [min_lon, min_lat, max_lon, max_lat] = graph.info().bbox;
    let mut rng = Rng(0x005e_ed0f_5a4b);
    let (mut snapped, mut out_of_range) = (0, 0);
    for i in 0..3000 {
        // A margin around the box, so some points (the sea, beyond the border) have no road
        // in range and the search past the nearest segment runs too.
        let at = Coord {
            lon: min_lon - 0.002 + rng.unit() * (max_lon - min_lon + 0.004),
            lat: min_lat - 0.002 + rng.unit() * (max_lat - min_lat + 0.004),
        };
        let radius = [5.0, 50.0, 500.0][i % 3];
        let all = graph.nearest(at, 100_000, radius);
        match (graph.snap(at, radius), all) {
            (Ok(one), Ok(all)) => {
                // The projection the tree works in is exact to millimetres, so the nearest
                // segment there is the nearest in metres up to that.
                assert!(
                    (one.distance_m - all[0].distance_m).abs() < 0.01,
                    "{at:?} r={radius}: snap {} m, nearest road {} m",
                    one.distance_m,
                    all[0].distance_m
                );
                assert!(one.distance_m <= radius);
                snapped += 1;
            }
            (Err(Error::NoSegment { .. }), Err(Error::NoSegment { .. })) => out_of_range += 1,
            (one, all) => panic!("{at:?} r={radius}: snap {one:?}, nearest roads {all:?}"),
        }
    }
    // Both outcomes were exercised.
    assert!(
        snapped > 500 && out_of_range > 100,
        "{snapped} / {out_of_range}"
    );
}
