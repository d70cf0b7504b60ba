//! Artifacts round-trip exactly; bad files and bad inputs give typed errors, never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{monaco, random_snaps};
use edgeroute_engine::artifact::{FORMAT_VERSION, MAGIC, sha256};
use edgeroute_engine::profile::Direction;
use edgeroute_engine::{ArtifactError, BuildOptions, CarProfile, Coord, Error, Graph, RoadNetwork};
use std::io::Write;

fn artifact_error(bytes: &[u8]) -> ArtifactError {
    match Graph::from_artifact(bytes) {
        Err(Error::Artifact(e)) => e,
        Err(other) => panic!("expected an artifact error, got {other}"),
        Ok(_) => panic!("a bad artifact was accepted"),
    }
}

#[test]
fn artifact_round_trip_answers_identically() {
    let g = monaco();
    let bytes = g.to_artifact();
    assert_eq!(&bytes[..8], MAGIC);
    let loaded = Graph::from_artifact(&bytes).unwrap();
    assert_eq!(loaded.info(), g.info(), "same version and sizes");
    assert_eq!(loaded.sha256(), g.sha256(), "same identity");
    assert_eq!(
        g.sha256(),
        sha256(&bytes),
        "the identity is the file's sha256"
    );
    assert_eq!(loaded.to_artifact(), bytes, "re-encoding is byte-identical");
    let snaps = random_snaps(g, 100, 42, 500.0);
    for pair in snaps.chunks(2) {
        let a = g.route(&pair[0], &pair[1]).unwrap();
        // Snaps belong to the graph that made them: snap the same inputs on the copy.
        let x = loaded.snap(pair[0].input, 500.0).unwrap();
        let y = loaded.snap(pair[1].input, 500.0).unwrap();
        assert_eq!(
            (x.location, y.location),
            (pair[0].location, pair[1].location)
        );
        let b = loaded.route(&x, &y).unwrap();
        assert_eq!(a, b);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monaco.graph");
    g.write_artifact(&path).unwrap();
    let read = Graph::read_artifact(&path).unwrap();
    assert_eq!(read.info(), g.info());
    assert_eq!(read.sha256(), g.sha256());
}

#[test]
fn damaged_artifacts_are_rejected_with_typed_errors() {
    let bytes = monaco().to_artifact();
    assert_eq!(artifact_error(&[]), ArtifactError::BadMagic);
    assert_eq!(
        artifact_error(b"PK\x03\x04 a zip file"),
        ArtifactError::BadMagic
    );
    assert!(matches!(
        artifact_error(&bytes[..30]),
        ArtifactError::Truncated { .. }
    ));
    assert!(matches!(
        artifact_error(&bytes[..bytes.len() - 1]),
        ArtifactError::Truncated { .. }
    ));
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        artifact_error(&newer),
        ArtifactError::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    // Flip one bit at several places in the payload.
    for at in [60, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        assert_eq!(
            artifact_error(&corrupt),
            ArtifactError::ChecksumMismatch,
            "flip at {at}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        artifact_error(&longer),
        ArtifactError::Malformed(_)
    ));
    // A missing file is an I/O error naming the path.
    let err = Graph::read_artifact(std::path::Path::new("/nonexistent/x.graph")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn bad_coordinates_and_far_points() {
    let g = monaco();
    for (lon, lat) in [
        (f64::NAN, 43.7),
        (7.4, f64::INFINITY),
        (200.0, 43.7),
        (7.4, 95.0),
    ] {
        let err = g.snap(Coord { lon, lat }, 100.0).unwrap_err();
        assert!(matches!(err, Error::InvalidCoordinate { .. }), "{err}");
    }
    // The middle of the sea south of Monaco: no road within 100 m.
    let sea = Coord {
        lon: 7.43,
        lat: 43.70,
    };
    assert!(matches!(g.snap(sea, 100.0), Err(Error::NoSegment { .. })));
    assert!(matches!(g.snap(sea, -1.0), Err(Error::NoSegment { .. })));
    assert!(matches!(
        g.snap(sea, f64::NAN),
        Err(Error::NoSegment { .. })
    ));
    // The far side of the planet.
    assert!(matches!(
        g.snap(
            Coord {
                lon: -150.0,
                lat: -40.0
            },
            5_000.0
        ),
        Err(Error::NoSegment { .. })
    ));
    // A point on land snaps, and reports its distance.
    let casino = Coord {
        lon: 7.4275,
        lat: 43.7396,
    };
    let s = g.snap(casino, 200.0).unwrap();
    assert!(s.distance_m <= 200.0);
    assert!((edgeroute_engine::geo::haversine_m(casino, s.location) - s.distance_m).abs() < 1e-9);
    let near = g.nearest(casino, 5, 500.0).unwrap();
    assert!(near.len() == 5 && near.windows(2).all(|w| w[0].distance_m <= w[1].distance_m));
    assert_eq!(near[0].distance_m, s.distance_m);
}

#[test]
fn maps_without_roads_and_unreadable_files() {
    assert!(matches!(
        RoadNetwork::builder().build(),
        Err(Error::NoRoads)
    ));
    // Only a one-way road: its largest strongly connected component is a single node.
    let mut b = RoadNetwork::builder();
    let x = b.add_node(Coord {
        lon: 7.0,
        lat: 43.0,
    });
    let y = b.add_node(Coord {
        lon: 7.001,
        lat: 43.0,
    });
    b.add_road(x, y, &[], 50.0, Direction::Forward, "one way");
    assert!(matches!(b.build(), Err(Error::NoRoads)));

    let dir = tempfile::tempdir().unwrap();
    let not_pbf = dir.path().join("map.osm.pbf");
    std::fs::File::create(&not_pbf)
        .unwrap()
        .write_all(b"<osm>not a pbf</osm>")
        .unwrap();
    let p = CarProfile::default();
    let o = BuildOptions::default();
    assert!(matches!(
        Graph::from_osm_file(&not_pbf, &p, &o),
        Err(Error::Osm { .. })
    ));
    let empty = dir.path().join("empty.osm.pbf");
    std::fs::File::create(&empty).unwrap();
    assert!(matches!(
        Graph::from_osm_file(&empty, &p, &o),
        Err(Error::Osm { .. } | Error::NoRoads)
    ));
    assert!(Graph::from_osm_file(&dir.path().join("missing.pbf"), &p, &o).is_err());
}

#[test]
fn hand_built_network_routes_and_respects_one_way() {
    // A square with one one-way side: a -> b is direct, b -> a must go around.
    let mut b = RoadNetwork::builder();
    let c = |lon, lat| Coord { lon, lat };
    let a = b.add_node(c(7.000, 43.000));
    let bb = b.add_node(c(7.010, 43.000));
    let cc = b.add_node(c(7.010, 43.010));
    let d = b.add_node(c(7.000, 43.010));
    b.add_road(a, bb, &[], 36.0, Direction::Forward, "south");
    b.add_road(bb, cc, &[], 36.0, Direction::Both, "east");
    b.add_road(cc, d, &[], 36.0, Direction::Both, "north");
    b.add_road(d, a, &[], 36.0, Direction::Both, "west");
    let g = Graph::from_network(b.build().unwrap(), &BuildOptions::default()).unwrap();
    let p = |lon, lat| g.snap(c(lon, lat), 50.0).unwrap();
    let west_of_south = p(7.002, 43.0);
    let east_of_south = p(7.008, 43.0);
    let forward = g.route(&west_of_south, &east_of_south).unwrap();
    assert_eq!(forward.segments.len(), 1);
    assert!(
        (forward.distance_m - 0.6 * 811.0).abs() < 5.0,
        "{}",
        forward.distance_m
    );
    let around = g.route(&east_of_south, &west_of_south).unwrap();
    assert!(
        around.distance_m > 3_000.0,
        "must drive around the block: {}",
        around.distance_m
    );
    let names: Vec<&str> = around.segments.iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["south", "east", "north", "west", "south"]);
    // 36 km/h = 10 m/s.
    assert!((around.duration_s - around.distance_m / 10.0).abs() < 0.1);
    // Asked for before any encoding, the identity is still the artifact's sha256.
    let identity = g.sha256().to_owned();
    assert_eq!(identity, sha256(&g.to_artifact()));
}

#[test]
fn snaps_from_another_graph_version_are_refused() {
    let g = monaco();
    let other = Graph::from_artifact(&g.to_artifact()).unwrap();
    let snaps = random_snaps(g, 2, 5, 500.0);
    let mine = random_snaps(&other, 1, 6, 500.0);
    assert!(matches!(
        other.route(&snaps[0], &snaps[1]),
        Err(Error::ForeignSnap)
    ));
    assert!(matches!(
        other.route(&mine[0], &snaps[1]),
        Err(Error::ForeignSnap)
    ));
    let t = other.table(&[mine[0].clone(), snaps[0].clone()], &mine);
    assert!(t.duration_s(0, 0).is_some());
    assert_eq!(t.duration_s(1, 0), None);
}
