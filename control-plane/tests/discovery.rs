//! Nearest-edge discovery on the center's HTTP API: `GET /api/v1/endpoints` in process
//! (`Router::oneshot`), the OSRM redirects, and a real OSRM client that follows a redirect
//! from the center to an agent over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{
    Json, Router,
    http::{StatusCode, header},
    routing::get,
};
use edgeroute_control_plane::serve::Settings;
use edgeroute_protocol::sync::{
    EndpointCounts, EndpointList, GraphRef, Health, Location, MetricsWindow, Report,
};
use serde_json::{Value, json};

mod support;

use support::center::TestCenter;

/// Monaco's graph bbox, roughly: `[min_lon, min_lat, max_lon, max_lat]`.
const MONACO: [f64; 4] = [7.40, 43.72, 7.44, 43.76];

fn center() -> TestCenter {
    TestCenter::new(Settings::default())
}

/// A ready agent serving Monaco at `at` (lat, lon), reachable at `url`.
fn report(node: &str, url: &str, at: Option<(f64, f64)>) -> Report {
    Report {
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
        advertise_url: Some(url.into()),
        location: at.map(|(lat, lon)| Location { lat, lon }),
        metrics: MetricsWindow::default(),
        outbox_depth: 0,
        events: Vec::new(),
    }
}

/// Three agents: near and far from the Port of Monaco, and one without a location.
async fn fleet(c: &TestCenter) {
    c.ack(&report("far", "http://far:5000", Some((43.75, 7.43))))
        .await;
    c.ack(&report("near", "http://near:5000/", Some((43.736, 7.426))))
        .await;
    c.ack(&report("nowhere", "http://nowhere:5000", None)).await;
    let mut unready = report("unready", "http://unready:5000", Some((43.735, 7.425)));
    unready.health.ready = false;
    c.ack(&unready).await;
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
    c.ack(&busy).await;
    c.ack(&report("b-idle", "http://b:5000", at)).await;
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

#[tokio::test]
async fn osrm_paths_redirect_to_the_best_agent_for_the_first_coordinate() {
    let c = center();
    fleet(&c).await;
    for path in [
        "/route/v1/driving/7.425,43.735;7.42,43.74?overview=false&steps=true",
        "/table/v1/driving/7.425,43.735;7.42,43.74;7.43,43.75",
        "/nearest/v1/driving/7.425,43.735.json?number=2",
        "/trip/v1/driving/7.425,43.735;7.42,43.74",
        "/route/v1/driving/polyline(w~|iGgeil@g^f^)",
    ] {
        let (status, headers, body) = c.get(path).await;
        assert_eq!(
            status,
            StatusCode::TEMPORARY_REDIRECT,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            headers[header::LOCATION].to_str().unwrap(),
            format!("http://near:5000{path}"),
        );
    }
    // A first coordinate near the other agent goes there.
    let (status, headers, _) = c.get("/route/v1/driving/7.43,43.75;7.425,43.735").await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        headers[header::LOCATION],
        "http://far:5000/route/v1/driving/7.43,43.75;7.425,43.735"
    );
    // Nobody covers Paris.
    let (status, body) = c.get_json("/route/v1/driving/2.35,48.85;2.36,48.86").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "NoSegment");
    // Garbage coordinates are the client's fault.
    let (status, body) = c.get_json("/route/v1/driving/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "InvalidUrl");
}

#[tokio::test]
async fn an_osrm_client_follows_the_center_to_its_edge() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A tiny agent answering OSRM routes with what it saw.
    let agent = Router::new().route(
        "/route/v1/driving/{coordinates}",
        get(
            |axum::extract::Path(coordinates): axum::extract::Path<String>,
             uri: axum::http::Uri| async move {
                Json(json!({"code": "Ok", "coordinates": coordinates, "query": uri.query()}))
            },
        ),
    );
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}", agent_listener.local_addr().unwrap());
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(edgeroute_server::serve(agent_listener, agent, async {
        let _ = agent_stopped.await;
    }));

    let c = center();
    c.ack(&report("edge-1", &agent_url, Some((43.736, 7.426))))
        .await;
    let center_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let center_url = format!("http://{}", center_listener.local_addr().unwrap());
    let (stop_center, center_stopped) = tokio::sync::oneshot::channel::<()>();
    let center_task = tokio::spawn(edgeroute_server::serve(
        center_listener,
        c.app.clone(),
        async {
            let _ = center_stopped.await;
        },
    ));

    let client = reqwest::Client::new();
    let response = client
        .get(format!(
            "{center_url}/route/v1/driving/7.425,43.735;7.42,43.74?overview=false"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.url().as_str(),
        format!("{agent_url}/route/v1/driving/7.425,43.735;7.42,43.74?overview=false")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "Ok");
    assert_eq!(body["coordinates"], "7.425,43.735;7.42,43.74");
    assert_eq!(body["query"], "overview=false");

    // Outside the agent's graph, the center itself answers 404 in OSRM's shape.
    let response = client
        .get(format!(
            "{center_url}/route/v1/driving/2.35,48.85;2.36,48.86"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "NoSegment");

    let _ = stop_center.send(());
    let _ = stop_agent.send(());
    center_task.await.unwrap().unwrap();
    agent_task.await.unwrap().unwrap();
}
