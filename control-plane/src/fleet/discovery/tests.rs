#![allow(clippy::unwrap_used)]

use edgeroute_protocol::sync::{EndpointCounts, GraphRef, Health, MetricsWindow, Report};

use super::*;

const NOW: u64 = 1_000_000;
/// Monaco's graph bbox, roughly.
const MONACO: [f64; 4] = [7.40, 43.72, 7.44, 43.76];
/// A point inside it.
const PORT: Location = Location {
    lat: 43.735,
    lon: 7.425,
};

fn settings() -> Settings {
    Settings {
        stale_after_ms: 15_000,
        offline_after_ms: 60_000,
        ..Settings::default()
    }
}

fn record(node: &str, at: Option<(f64, f64)>) -> NodeRecord {
    NodeRecord {
        report: Report {
            node: node.into(),
            stream: format!("{node}-stream"),
            region: "monaco".into(),
            boot_id: "boot".into(),
            agent_version: "0.1.0".into(),
            profiles: Default::default(),
            graph: Some(GraphRef {
                version: "monaco-1".into(),
                sha256: "00".into(),
                bbox: Some(MONACO),
            }),
            health: Health {
                ready: true,
                ..Health::default()
            },
            advertise_url: Some(format!("http://{node}:5000")),
            location: at.map(|(lat, lon)| Location { lat, lon }),
            metrics: MetricsWindow {
                window_ms: 10_000,
                ..MetricsWindow::default()
            },
            outbox_depth: 0,
            events: Vec::new(),
        },
        received_at_ms: NOW,
        acked_seq: 0,
    }
}

fn with_requests(mut r: NodeRecord, requests: u64, window_ms: u64) -> NodeRecord {
    r.report.metrics.window_ms = window_ms;
    r.report.metrics.endpoints.insert(
        "route".into(),
        EndpointCounts {
            requests,
            ..EndpointCounts::default()
        },
    );
    r
}

fn names(endpoints: &[Endpoint]) -> Vec<&str> {
    endpoints.iter().map(|e| e.node.as_str()).collect()
}

#[test]
fn haversine_matches_known_distances() {
    let a = Location { lat: 0.0, lon: 0.0 };
    assert_eq!(haversine_m(a, a), 0.0);
    // One degree of longitude on the equator is about 111.2 km.
    let d = haversine_m(a, Location { lat: 0.0, lon: 1.0 });
    assert!((d - 111_195.0).abs() < 10.0, "{d}");
    // Paris to London, about 343.5 km.
    let d = haversine_m(
        Location {
            lat: 48.8566,
            lon: 2.3522,
        },
        Location {
            lat: 51.5074,
            lon: -0.1278,
        },
    );
    assert!((d - 343_500.0).abs() < 1_000.0, "{d}");
}

#[test]
fn a_point_outside_every_bbox_gets_nothing() {
    let records = vec![record("a", Some((43.73, 7.42))), record("b", None)];
    let paris = Location {
        lat: 48.8566,
        lon: 2.3522,
    };
    assert!(rank(records.clone(), paris, NOW, &settings()).is_empty());
    assert_eq!(names(&rank(records, PORT, NOW, &settings())), ["a", "b"]);
    // Edges of the box are covered.
    assert!(bbox_contains(
        MONACO,
        Location {
            lat: 43.72,
            lon: 7.44
        }
    ));
    // A box over the antimeridian.
    let fiji = [177.0, -19.0, -179.0, -16.0];
    assert!(bbox_contains(
        fiji,
        Location {
            lat: -17.0,
            lon: 178.0
        }
    ));
    assert!(bbox_contains(
        fiji,
        Location {
            lat: -17.0,
            lon: -179.5
        }
    ));
    assert!(!bbox_contains(
        fiji,
        Location {
            lat: -17.0,
            lon: 0.0
        }
    ));
}

#[test]
fn stale_offline_unready_and_unreachable_agents_are_excluded() {
    let mut stale = record("stale", Some((43.735, 7.425)));
    stale.received_at_ms = NOW - 15_001;
    let mut offline = record("offline", Some((43.735, 7.425)));
    offline.received_at_ms = NOW - 60_001;
    let mut unready = record("unready", Some((43.735, 7.425)));
    unready.report.health.ready = false;
    let mut no_url = record("no-url", Some((43.735, 7.425)));
    no_url.report.advertise_url = None;
    let mut no_graph = record("no-graph", Some((43.735, 7.425)));
    no_graph.report.graph = None;
    let mut no_bbox = record("no-bbox", Some((43.735, 7.425)));
    no_bbox.report.graph.as_mut().unwrap().bbox = None;
    let mut just_fresh = record("fresh", Some((43.75, 7.43)));
    just_fresh.received_at_ms = NOW - 15_000;
    let records = vec![
        stale, offline, unready, no_url, no_graph, no_bbox, just_fresh,
    ];
    assert_eq!(names(&rank(records, PORT, NOW, &settings())), ["fresh"]);
}

#[test]
fn nearest_first_and_agents_without_a_location_last() {
    let records = vec![
        record("nowhere", None),
        record("far", Some((43.75, 7.43))),
        record("near", Some((43.736, 7.426))),
        record("mid", Some((43.74, 7.42))),
    ];
    let ranked = rank(records, PORT, NOW, &settings());
    assert_eq!(names(&ranked), ["near", "mid", "far", "nowhere"]);
    let near = &ranked[0];
    assert_eq!(near.url, "http://near:5000");
    assert_eq!(near.region, "monaco");
    assert_eq!(near.graph_version, "monaco-1");
    let d = near.distance_m.unwrap();
    assert!(d > 100.0 && d < 200.0, "{d}");
    assert_eq!(ranked[3].distance_m, None);
}

#[test]
fn equal_distance_goes_to_the_least_loaded_then_by_name() {
    let at = Some((43.736, 7.426));
    // 50 requests in 10 s is 5/s; 30 in 3 s is 10/s; 0 is idle.
    let records = vec![
        with_requests(record("busy", at), 30, 3_000),
        with_requests(record("calm", at), 50, 10_000),
        record("idle-b", at),
        record("idle-a", at),
    ];
    assert_eq!(
        names(&rank(records, PORT, NOW, &settings())),
        ["idle-a", "idle-b", "calm", "busy"]
    );
    // Distance wins over load.
    let records = vec![
        with_requests(record("near-busy", at), 1_000, 1_000),
        record("far-idle", Some((43.75, 7.43))),
    ];
    assert_eq!(
        names(&rank(records, PORT, NOW, &settings())),
        ["near-busy", "far-idle"]
    );
}

#[test]
fn p99_comes_from_the_last_window() {
    let mut r = record("a", Some((43.735, 7.425)));
    for _ in 0..100 {
        r.report.metrics.latency.observe(4.0);
    }
    let ranked = rank(vec![r, record("b", None)], PORT, NOW, &settings());
    assert_eq!(ranked[0].p99_ms, Some(5.0));
    assert_eq!(ranked[1].p99_ms, None);
}

#[test]
fn the_first_osrm_coordinate_is_parsed() {
    let at = first_coordinate("7.425,43.735;7.43,43.75").unwrap();
    assert_eq!((at.lat, at.lon), (43.735, 7.425));
    let at = first_coordinate("7.425,43.735.json").unwrap();
    assert_eq!((at.lat, at.lon), (43.735, 7.425));
    // Google's example polyline: (38.5, -120.2), (40.7, -120.95), (43.252, -126.453).
    let at = first_coordinate("polyline(_p~iF~ps|U_ulLnnqC_mqNvxq`@)").unwrap();
    assert_eq!((at.lat, at.lon), (38.5, -120.2));
    let at = first_coordinate("polyline6(_izlhA~rlgdF)").unwrap();
    assert_eq!((at.lat, at.lon), (38.5, -120.2));
    for bad in [
        "",
        "7.4",
        "a,b",
        "7.4,95",
        "190,43",
        "polyline(",
        "polyline()",
        "polyline(~)",
    ] {
        assert!(first_coordinate(bad).is_err(), "{bad:?}");
    }
}
