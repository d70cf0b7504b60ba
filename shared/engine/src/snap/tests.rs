//! The grid against a sorted scan of every segment.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::profile::Direction;

/// What the index must answer, from a sorted list of every segment of every road: the
/// nearest segments in the projection first, one snap per road, kept when within the
/// radius on the sphere. This is what the R-tree's nearest-first iterator gave.
fn scan_everything(
    index: &SnapIndex,
    net: &RoadNetwork,
    at: Coord,
    number: usize,
    radius_m: f64,
) -> Vec<(u32, u32, f64)> {
    let p = index.projection.project(at);
    let p = [p[0] - index.origin[0], p[1] - index.origin[1]];
    let slack = radius_m * 1.01 + 1.0;
    let mut all = Vec::new();
    for (r, road) in net.roads.iter().enumerate() {
        for (s, pair) in net.geometry(road).windows(2).enumerate() {
            let segment = Segment {
                from: local(index.projection.project(pair[0]), index.origin),
                to: local(index.projection.project(pair[1]), index.origin),
            };
            let d2 = segment.closest(p).1;
            if d2 <= slack * slack {
                all.push((d2, (r as u32, s as u32)));
            }
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<(u32, u32, f64)> = Vec::new();
    for (_, (road, segment)) in all {
        if out.len() == number || out.iter().any(|s| s.0 == road) {
            continue;
        }
        // Placed by hand as well: the fraction does not matter here, the distance does.
        let geometry = net.geometry(&net.roads[road as usize]);
        let (a, b) = (geometry[segment as usize], geometry[segment as usize + 1]);
        let segment_line = Segment {
            from: local(index.projection.project(a), index.origin),
            to: local(index.projection.project(b), index.origin),
        };
        let location = lerp(a, b, segment_line.closest(p).0);
        let distance = haversine_m(at, location);
        if distance <= radius_m {
            out.push((road, segment, distance));
        }
    }
    out.sort_by(|a, b| a.2.total_cmp(&b.2));
    out
}

/// Runs both over points in and around the network's box.
fn compare(net: &RoadNetwork, points: usize, radii: &[f64], numbers: &[usize]) -> usize {
    let index = SnapIndex::build(net, 1);
    let [min_lon, min_lat, max_lon, max_lat] = bounds(&net.nodes);
    let mut state = 0x5eed_1234_u64;
    let mut unit = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut found = 0;
    for i in 0..points {
        // A margin of a fifth of the box on each side: points beyond the grid too.
        let (w, h) = (max_lon - min_lon, max_lat - min_lat);
        let at = Coord {
            lon: min_lon - w * 0.2 + unit() * w * 1.4,
            lat: min_lat - h * 0.2 + unit() * h * 1.4,
        };
        let radius = radii[i % radii.len()];
        let number = numbers[(i / radii.len()) % numbers.len()];
        let want = scan_everything(&index, net, at, number, radius);
        match index.nearest(net, at, number, radius) {
            Ok(got) => {
                let got: Vec<_> = got
                    .iter()
                    .map(|s| (s.road, s.segment, s.distance_m))
                    .collect();
                assert_eq!(got, want, "{at:?} radius {radius} number {number}");
                found += 1;
            }
            Err(Error::NoSegment { .. }) => {
                assert!(
                    want.is_empty(),
                    "{at:?} radius {radius}: none, want {want:?}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    found
}

#[test]
fn the_grid_answers_as_a_scan_of_every_segment_on_monaco() {
    let pbf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/monaco.osm.pbf");
    let net = crate::import::import_osm(&pbf, &crate::CarProfile::default()).unwrap();
    let found = compare(&net, 1500, &[3.0, 30.0, 300.0, 3000.0], &[1, 2, 7, 100_000]);
    assert!(found > 300 && found < 1500, "{found} of 1500 found a road");
}

/// Long diagonal roads cross many cells; a lone short road in a wide box leaves most
/// cells empty, and the search must cross them.
#[test]
fn the_grid_answers_as_a_scan_with_long_roads_and_empty_cells() {
    let mut b = RoadNetwork::builder();
    let at = |lon: f64, lat: f64| Coord { lon, lat };
    let corners = [
        b.add_node(at(7.40, 43.70)),
        b.add_node(at(7.46, 43.76)),
        b.add_node(at(7.40, 43.76)),
        b.add_node(at(7.46, 43.70)),
        b.add_node(at(7.4301, 43.7301)),
        b.add_node(at(7.4302, 43.7301)),
    ];
    for (from, to, interior) in [
        (0, 1, vec![]),
        (2, 3, vec![at(7.43, 43.73), at(7.431, 43.728)]),
        (4, 5, vec![]),
        (0, 2, vec![at(7.39, 43.73)]),
    ] {
        b.add_road(
            corners[from],
            corners[to],
            &interior,
            50.0,
            Direction::Both,
            "r",
        )
        .unwrap();
    }
    let net = b.build().unwrap();
    let found = compare(&net, 2000, &[10.0, 200.0, 1000.0, 10_000.0], &[1, 2, 10]);
    assert!(found > 200 && found < 2000, "{found} of 2000 found a road");
}
