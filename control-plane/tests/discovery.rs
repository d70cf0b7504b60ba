//! Nearest-edge discovery on the center's HTTP API: `GET /api/v1/endpoints` in process
//! (`Router::oneshot`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::serve::{Center, Settings, app, auth::CenterAuth};
use edgeroute_protocol::sync::{
    EndpointCounts, EndpointList, GraphRef, Health, Location, MetricsWindow, Report,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const ADMIN: &str = "adm";
const TOKEN: &str = "tok";
/// Monaco's graph bbox, roughly: `[min_lon, min_lat, max_lon, max_lat]`.
const MONACO: [f64; 4] = [7.40, 43.72, 7.44, 43.76];

struct TestCenter {
    _dir: tempfile::TempDir,
    app: Router,
}

fn center() -> TestCenter {
    let dir = tempfile::tempdir().unwrap();
    let center = Center::open(
        dir.path(),
        CenterAuth::new(&[TOKEN.into()], Some(ADMIN), false),
        Settings::default(),
    )
    .unwrap();
    TestCenter {
        app: app(center),
        _dir: dir,
    }
}

/// A ready agent serving Monaco at `at` (lat, lon), reachable at `url`.
fn report(node: &str, url: &str, at: Option<(f64, f64)>) -> Report {
    Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: "monaco".into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        graph: Some(GraphRef {
            version: "monaco-1".into(),
            sha256: "00".into(),
            bbox: Some(MONACO),
        }),
        health: Health {
            ready: true,
            ..Health::default()
        },
        advertise_url: Some(url.into()),
        location: at.map(|(lat, lon)| Location { lat, lon }),
        metrics: MetricsWindow::default(),
        outbox_depth: 0,
        events: Vec::new(),
    }
}

impl TestCenter {
    async fn call(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }

    /// GET without credentials: discovery is for clients.
    async fn get(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let (status, headers, body) = self.get(path).await;
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn ingest(&self, report: &Report) {
        let (status, _, body) = self
            .call(
                Request::post("/sync/v1/report")
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(report).unwrap()))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
}

/// Three agents: near and far from the Port of Monaco, and one without a location.
async fn fleet(c: &TestCenter) {
    c.ingest(&report("far", "http://far:5000", Some((43.75, 7.43))))
        .await;
    c.ingest(&report("near", "http://near:5000/", Some((43.736, 7.426))))
        .await;
    c.ingest(&report("nowhere", "http://nowhere:5000", None))
        .await;
    let mut unready = report("unready", "http://unready:5000", Some((43.735, 7.425)));
    unready.health.ready = false;
    c.ingest(&unready).await;
}

#[tokio::test]
async fn endpoints_lists_the_covering_agents_nearest_first_without_credentials() {
    let c = center();
    fleet(&c).await;
    let (status, body) = c.get_json("/api/v1/endpoints?lat=43.735&lon=7.425").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: EndpointList = serde_json::from_value(body.clone()).unwrap();
    let names: Vec<&str> = list.endpoints.iter().map(|e| e.node.as_str()).collect();
    assert_eq!(names, ["near", "far", "nowhere"], "{body}");
    let near = &body["endpoints"][0];
    assert_eq!(near["url"], "http://near:5000/");
    assert_eq!(near["region"], "monaco");
    assert_eq!(near["graph_version"], "monaco-1");
    assert!(near["distance_m"].as_f64().unwrap() < 200.0, "{body}");
    assert!(near["p99_ms"].is_null());
    assert!(body["endpoints"][2]["distance_m"].is_null());

    let (_, body) = c
        .get_json("/api/v1/endpoints?lat=43.735&lon=7.425&limit=1")
        .await;
    assert_eq!(body["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(body["endpoints"][0]["node"], "near");
}

#[tokio::test]
async fn load_breaks_distance_ties() {
    let c = center();
    let at = Some((43.736, 7.426));
    let mut busy = report("a-busy", "http://a:5000", at);
    busy.metrics = MetricsWindow {
        window_ms: 1_000,
        endpoints: [(
            "route".to_owned(),
            EndpointCounts {
                requests: 100,
                ..EndpointCounts::default()
            },
        )]
        .into(),
        ..MetricsWindow::default()
    };
    c.ingest(&busy).await;
    c.ingest(&report("b-idle", "http://b:5000", at)).await;
    let (_, body) = c.get_json("/api/v1/endpoints?lat=43.735&lon=7.425").await;
    assert_eq!(body["endpoints"][0]["node"], "b-idle", "{body}");
    assert_eq!(body["endpoints"][1]["node"], "a-busy", "{body}");
}

#[tokio::test]
async fn an_uncovered_point_or_bad_query_says_why() {
    let c = center();
    fleet(&c).await;
    let (status, body) = c.get_json("/api/v1/endpoints?lat=48.85&lon=2.35").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no healthy agent covers"),
        "{body}"
    );
    for bad in [
        "/api/v1/endpoints",
        "/api/v1/endpoints?lat=43.7",
        "/api/v1/endpoints?lat=91&lon=7",
        "/api/v1/endpoints?lat=43&lon=-181",
        "/api/v1/endpoints?lat=x&lon=7",
        "/api/v1/endpoints?lat=NaN&lon=7",
        "/api/v1/endpoints?lat=43.7&lon=7.4&limit=0",
        "/api/v1/endpoints?lat=43.7&lon=7.4&limit=101",
    ] {
        let (status, body) = c.get_json(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "InvalidRequest", "{bad}: {body}");
    }
}
