//! The center's HTTP API in process (`Router::oneshot`): the sync endpoint's exactly-once
//! contract, the graph registry with resumable downloads, the fleet API, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write, path::PathBuf, sync::OnceLock};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::serve::Settings;
use edgeroute_engine::{BuildOptions, CarProfile, Graph};
use edgeroute_protocol::{
    plans::{NewPlan, Plan},
    sync::{Event, EventKind, Health, MetricsWindow, Report},
};
use serde_json::json;

mod support;

use support::center::{ADMIN, TOKEN, TestCenter};

fn center_with(settings: Settings) -> TestCenter {
    TestCenter::new(settings)
}

fn center() -> TestCenter {
    TestCenter::new(Settings::default())
}

fn plan_event(seq: u64, plan_seq: u64) -> Event {
    Event {
        seq,
        at_ms: 1,
        kind: EventKind::Plan {
            plan: Box::new(Plan {
                id: format!("edge-1-{plan_seq}"),
                seq: plan_seq,
                created_at_ms: 1_764_700_000_000,
                plan: NewPlan {
                    node: "edge-1".into(),
                    graph_version: Some("monaco".into()),
                    graph_checksum: None,
                    solver_version: "test".into(),
                    jobs: 1,
                    shipments: 0,
                    vehicles: 1,
                    output: json!({"code": 0, "summary": {"cost": plan_seq}}),
                    traceparent: None,
                },
            }),
        },
    }
}

fn report(events: Vec<Event>) -> Report {
    Report {
        node: "edge-1".into(),
        stream: "stream-a".into(),
        region: "monaco".into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health {
            ready: true,
            ..Health::default()
        },
        advertise_url: Some("http://127.0.0.1:5000".into()),
        location: None,
        metrics: MetricsWindow::default(),
        outbox_depth: events.len() as u64,
        events,
    }
}

#[tokio::test]
async fn the_watermark_is_contiguous_and_retries_are_idempotent() {
    let c = center();
    let ack = c
        .ack(&report(vec![plan_event(1, 1), plan_event(2, 2)]))
        .await;
    assert_eq!(ack.acked_seq, 2);
    // A retry of a batch whose ack was lost, plus a new event: stored once.
    let ack = c
        .ack(&report(vec![
            plan_event(1, 1),
            plan_event(2, 2),
            plan_event(3, 3),
        ]))
        .await;
    assert_eq!(ack.acked_seq, 3);
    // A gap holds the watermark until it is filled.
    assert_eq!(c.ack(&report(vec![plan_event(5, 5)])).await.acked_seq, 3);
    assert_eq!(c.ack(&report(vec![plan_event(4, 4)])).await.acked_seq, 5);
    let (status, plans) = c.admin_get("/api/v1/plans?node=edge-1&limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(plans["plans"][0]["plan_id"], "edge-1-1");
    assert_eq!(plans["plans"][0]["summary"]["cost"], 1);
    assert_eq!(plans["plans"][0]["created_at"], "2025-12-02T18:26:40Z");
    let (_, page) = c
        .admin_get("/api/v1/plans?node=edge-1&since=3&limit=1")
        .await;
    assert_eq!(page["plans"].as_array().unwrap().len(), 1);
    assert_eq!(page["plans"][0]["seq"], 4);
    let (status, plan) = c.admin_get("/api/v1/plans/edge-1/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plan["id"], "edge-1-2");
    let (status, body) = c.admin_get("/api/v1/plans/edge-1/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A new stream under the same name (a wiped data directory) starts from 0 again.
    let mut fresh = report(vec![plan_event(1, 1)]);
    fresh.stream = "stream-b".into();
    assert_eq!(c.ack(&fresh).await.acked_seq, 1);
    let (_, nodes) = c.admin_get("/api/v1/nodes").await;
    assert_eq!(nodes["nodes"][0]["node"], "edge-1");
    assert_eq!(nodes["nodes"][0]["state"], "online");
    assert_eq!(nodes["nodes"][0]["acked_seq"], 1);
    assert_eq!(nodes["nodes"][0]["stream"], "stream-b");
}

#[tokio::test]
async fn gzip_reports_are_accepted() {
    let c = center();
    let json = serde_json::to_vec(&report(vec![plan_event(1, 1)])).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json).unwrap();
    let (status, body) = c
        .json(
            Request::post("/sync/v1/report")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(gz.finish().unwrap()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acked_seq"], 1);
}

#[tokio::test]
async fn bad_reports_and_credentials_get_clear_json_errors() {
    let c = center_with(Settings {
        max_report_bytes: 4096,
        ..Settings::default()
    });
    let post = |auth: Option<&str>, body: Vec<u8>| {
        let mut r =
            Request::post("/sync/v1/report").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            r = r.header(header::AUTHORIZATION, a);
        }
        r.body(Body::from(body)).unwrap()
    };
    let good = serde_json::to_vec(&report(vec![])).unwrap();
    let (status, body) = c.json(post(None, good.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "Unauthorized");
    let (status, _) = c.json(post(Some("Bearer wrong"), good.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.json(post(Some("Bearer adm"), good.clone())).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the admin key is not an agent token"
    );
    let bearer = Some("Bearer tok");
    let (status, body) = c.json(post(bearer, b"{not json".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().len() > 5);
    let mut zero = report(vec![plan_event(1, 1)]);
    zero.events[0].seq = 0;
    let (status, body) = c
        .json(post(bearer, serde_json::to_vec(&zero).unwrap()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("start at 1"),
        "{body}"
    );
    let mut nameless = report(vec![]);
    nameless.node = String::new();
    let (status, _) = c
        .json(post(bearer, serde_json::to_vec(&nameless).unwrap()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let big = report((1..=40).map(|s| plan_event(s, s)).collect());
    let (status, _, _) = c
        .call(post(bearer, serde_json::to_vec(&big).unwrap()))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = c
        .json(Request::get("/api/v1/nodes").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = c.admin_get("/api/v1/plans?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = c.admin_get("/api/v1/plans?bogus=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = c.admin_get("/no/such/path").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

fn monaco_artifact(version: &str) -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let pbf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/monaco.osm.pbf");
    let base = BYTES.get_or_init(|| {
        let options = BuildOptions {
            version: "monaco-test".into(),
            ..BuildOptions::default()
        };
        Graph::from_osm_file(&pbf, &CarProfile::default(), &options)
            .unwrap()
            .to_artifact()
    });
    assert_eq!(version, "monaco-test");
    base.clone()
}

#[tokio::test]
async fn graphs_register_verified_and_download_with_ranges() {
    let c = center();
    let bytes = monaco_artifact("monaco-test");
    let put = |path: &str, body: Vec<u8>, key: &str| {
        Request::put(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(body))
            .unwrap()
    };
    let (status, body) = c
        .json(put("/api/v1/graphs/monaco-test", bytes.clone(), TOKEN))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = c
        .json(put(
            "/api/v1/graphs/junk",
            b"EDGRGRPH but not really".to_vec(),
            ADMIN,
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a valid graph artifact"),
        "{body}"
    );
    let (status, body) = c
        .json(put("/api/v1/graphs/other-name", bytes.clone(), ADMIN))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the label must be the artifact's own: {body}"
    );
    let (status, body) = c
        .json(put("/api/v1/graphs/..%2Fescape", bytes.clone(), ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, registered) = c
        .json(put("/api/v1/graphs/monaco-test", bytes.clone(), ADMIN))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let sha = registered["sha256"].as_str().unwrap().to_owned();
    assert_eq!(registered["size_bytes"], bytes.len());
    // The same bytes again are fine; versions are immutable otherwise.
    let (status, _) = c
        .json(put("/api/v1/graphs/monaco-test", bytes.clone(), ADMIN))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = c.admin_get("/api/v1/graphs").await;
    assert_eq!(list["graphs"][0]["version"], "monaco-test");

    // No directive until the region has a graph; then every report carries it.
    assert!(c.ack(&report(vec![])).await.directives.graph.is_none());
    let (status, body) = c
        .json(put(
            "/api/v1/regions/monaco/graph",
            br#"{"version": "nope"}"#.to_vec(),
            ADMIN,
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "JSON only: {body}"
    );
    let (status, body) = c
        .json(
            Request::put("/api/v1/regions/monaco/graph")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"version": "nope"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = c
        .json(
            Request::put("/api/v1/regions/monaco/graph")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"version": "monaco-test"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let directive = c.ack(&report(vec![])).await.directives.graph.unwrap();
    assert_eq!(directive.sha256, sha);
    assert_eq!(directive.url, "/sync/v1/graphs/monaco-test");

    let get = |range: Option<&str>, if_range: Option<&str>, auth: &str| {
        let mut r = Request::get("/sync/v1/graphs/monaco-test")
            .header(header::AUTHORIZATION, format!("Bearer {auth}"));
        if let Some(range) = range {
            r = r.header(header::RANGE, range);
        }
        if let Some(v) = if_range {
            r = r.header(header::IF_RANGE, v);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _, _) = c.call(get(None, None, "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, full) = c.call(get(None, None, TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full, bytes);
    assert_eq!(headers[header::ETAG], format!("\"{sha}\"").as_str());
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    let half = bytes.len() / 2;
    let etag = format!("\"{sha}\"");
    let (status, headers, rest) = c
        .call(get(Some(&format!("bytes={half}-")), Some(&etag), TOKEN))
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(rest, bytes[half..]);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes {half}-{}/{}", bytes.len() - 1, bytes.len()).as_str()
    );
    // A resume against another artifact gets the whole file, never a splice.
    let (status, _, whole) = c
        .call(get(Some("bytes=10-"), Some("\"other\""), TOKEN))
        .await;
    assert_eq!((status, whole.len()), (StatusCode::OK, bytes.len()));
    let (status, headers, _) = c
        .call(get(Some(&format!("bytes={}-", bytes.len())), None, TOKEN))
        .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes */{}", bytes.len()).as_str()
    );
    let (status, body) = c
        .json(
            Request::get("/sync/v1/graphs/unknown")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn silent_nodes_go_stale_then_offline() {
    let c = center_with(Settings {
        stale_after_ms: 0,
        offline_after_ms: 100_000,
        ..Settings::default()
    });
    c.ack(&report(vec![])).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, nodes) = c.admin_get("/api/v1/nodes").await;
    assert_eq!(nodes["nodes"][0]["state"], "stale");
    let c = center_with(Settings {
        stale_after_ms: 0,
        offline_after_ms: 0,
        ..Settings::default()
    });
    c.ack(&report(vec![])).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, nodes) = c.admin_get("/api/v1/nodes").await;
    assert_eq!(nodes["nodes"][0]["state"], "offline");
}
