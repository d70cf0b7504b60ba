//! The replica's cache of directive inputs, through the public API: a change made through
//! a replica is in the very next report's directives there, however long the cache keeps
//! values; with two replicas on one PostgreSQL, a change made on one reaches the other's
//! agents within the cache's time, and a rollout promoted on one is never paired with the
//! other's cached, older region graph.
//!
//! The PostgreSQL tests need `EDGEROUTE_TEST_POSTGRES_URL` (a URL whose user may
//! `CREATE DATABASE`); without it they are skipped, or fail under
//! `EDGEROUTE_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::{
    rollout::{Clock, graph},
    serve::{Center, Settings, app, auth::CenterAuth},
    sync::{postgres::connect::PoolOptions, store::GraphMeta},
};
use edgeroute_protocol::{
    crd::RolloutSpec,
    sync::{Directives, Health, Report, ReportAck},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;

use support::center::{ADMIN, TOKEN, TestCenter};

/// Long enough that only an invalidation, never an expiry, can explain a change.
const AN_HOUR_MS: u64 = 3_600_000;

fn meta(version: &str) -> GraphMeta {
    GraphMeta {
        version: version.into(),
        sha256: format!("{version:0>64}"),
        size_bytes: 10,
        uploaded_at_ms: 1,
        node_count: 1,
        bbox: [7.4, 43.7, 7.5, 43.8],
    }
}

fn report(node: &str, region: &str) -> Report {
    Report {
        node: node.into(),
        stream: format!("stream-{node}"),
        region: region.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        health: Health {
            ready: true,
            ..Health::default()
        },
        ..Report::default()
    }
}

fn settings(clock: &Clock, cache_ms: u64, replica: &str) -> Settings {
    Settings {
        rollout_policy: RolloutSpec {
            steps: vec![25, 100],
            analysis_window_seconds: 60,
            shadow_sample_rate: 0.5,
            ..RolloutSpec::default()
        },
        clock: clock.clone(),
        stale_after_ms: u64::MAX / 4,
        offline_after_ms: u64::MAX / 2,
        replica: replica.into(),
        directive_cache_ms: cache_ms,
        ..Settings::default()
    }
}

fn graph_of(d: &Directives) -> Option<&str> {
    d.graph.as_ref().map(|g| g.version.as_str())
}

fn profile_of<'a>(d: &'a Directives, profile: &str) -> Option<&'a str> {
    d.profile_graphs.get(profile).map(|g| g.version.as_str())
}

#[tokio::test]
async fn a_change_through_the_api_is_in_the_next_reports_directives() {
    let clock = Clock::manual(1_764_700_000_000);
    let c = TestCenter::new(settings(&clock, AN_HOUR_MS, "one"));
    for v in ["v1", "v2", "t1"] {
        c.center.store.put_graph(meta(v)).await.unwrap();
    }
    let put = |path: &'static str, version: &'static str| {
        let c = &c;
        async move {
            let (status, body) = c
                .admin_json("PUT", path, Some(json!({ "version": version })))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let nodes = ["edge-1", "edge-2", "edge-3", "edge-4"];
    // Reported before the region has a graph: the absence is what is cached.
    for node in nodes {
        let ack = c.ack(&report(node, "monaco")).await;
        assert_eq!(graph_of(&ack.directives), None);
        assert!(ack.directives.profile_graphs.is_empty());
    }
    put("/api/v1/regions/monaco/graph", "v1").await;
    for node in nodes {
        assert_eq!(
            graph_of(&c.ack(&report(node, "monaco")).await.directives),
            Some("v1")
        );
    }

    put("/api/v1/regions/monaco/graph?profile=truck", "t1").await;
    let ack = c.ack(&report("edge-1", "monaco")).await;
    assert_eq!(profile_of(&ack.directives, "truck"), Some("t1"));
    let (status, _, body) = c
        .call(
            Request::delete("/api/v1/regions/monaco/graph?profile=truck")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
    let ack = c.ack(&report("edge-1", "monaco")).await;
    assert_eq!(profile_of(&ack.directives, "truck"), None);

    // A region with nodes and a graph gets a new one as a rollout: the canary at once, the
    // others still the stable graph; a promotion reaches everyone at their next report.
    put("/api/v1/regions/monaco/graph", "v2").await;
    let (_, status) = c.admin_get("/api/v1/regions/monaco/rollout").await;
    let canaries: Vec<String> = serde_json::from_value(status["canaryNodes"].clone()).unwrap();
    assert_eq!(canaries.len(), 1, "{status}");
    for node in nodes {
        let d = c.ack(&report(node, "monaco")).await.directives;
        if canaries.iter().any(|c| c == node) {
            assert_eq!(graph_of(&d), Some("v2"));
            assert_eq!(d.shadow.map(|s| s.graph.version).as_deref(), Some("v1"));
        } else {
            assert_eq!(graph_of(&d), Some("v1"));
            assert!(d.shadow.is_none());
        }
    }
    let (status, body) = c
        .admin_json("POST", "/api/v1/regions/monaco/rollout/promote", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for node in nodes {
        let d = c.ack(&report(node, "monaco")).await.directives;
        assert_eq!(graph_of(&d), Some("v2"), "{node}");
        assert!(d.shadow.is_none());
    }

    // A region graph naming a version registered later (an EdgeRegion ahead of its upload):
    // the registration is in the next directive.
    c.center
        .store
        .set_region_graph("monaco", "v3")
        .await
        .unwrap();
    assert_eq!(
        graph_of(&c.ack(&report("edge-1", "monaco")).await.directives),
        None
    );
    c.center.store.put_graph(meta("v3")).await.unwrap();
    assert_eq!(
        graph_of(&c.ack(&report("edge-1", "monaco")).await.directives),
        Some("v3")
    );
}

/// A replica on the PostgreSQL database at `url`, driven in process.
struct Replica {
    app: Router,
    center: Center,
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(url: &str, settings: Settings) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let options = PoolOptions {
            max_size: 4,
            timeout: Duration::from_secs(5),
            ..PoolOptions::default()
        };
        let (center, _) = Center::open_postgres(
            url,
            &options,
            dir.path(),
            CenterAuth::new(&[TOKEN.into()], Some(ADMIN), false),
            settings,
        )
        .await
        .unwrap();
        Replica {
            app: app(center.clone()),
            center,
            _dir: dir,
        }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
            .unwrap();
        let (status, value) = self.call(request).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {value}");
        value
    }

    async fn directives(&self, node: &str, region: &str) -> Directives {
        let request = Request::post("/sync/v1/report")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::to_vec(&report(node, region)).unwrap(),
            ))
            .unwrap();
        let (status, value) = self.call(request).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        serde_json::from_value::<ReportAck>(value)
            .unwrap()
            .directives
    }
}

/// An empty database of its own on the test server, or `None` (skip) without one.
async fn database(test: &str) -> Option<String> {
    const URL_VAR: &str = "EDGEROUTE_TEST_POSTGRES_URL";
    let base = match std::env::var(URL_VAR) {
        Ok(v) if !v.is_empty() => v,
        _ if std::env::var("EDGEROUTE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("{URL_VAR} is not set, and EDGEROUTE_REQUIRE_POSTGRES=1 forbids skipping")
        }
        _ => {
            eprintln!("NOTICE: {URL_VAR} is not set; PostgreSQL test skipped");
            return None;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    let name = format!("edgeroute_{test}_{:08x}", rand::random::<u32>());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    let (head, query) = base
        .split_once('?')
        .map_or((base.as_str(), None), |(h, q)| (h, Some(q)));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let path = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    Some(match query {
        Some(q) => format!("{}/{name}?{q}", &head[..path]),
        None => format!("{}/{name}", &head[..path]),
    })
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_the_others_agents_within_the_ttl() {
    let Some(url) = database("directive_ttl").await else {
        return;
    };
    const TTL_MS: u64 = 1_500;
    let clock = Clock::manual(1_764_700_000_000);
    let a = Replica::start(&url, settings(&clock, TTL_MS, "replica-a")).await;
    let b = Replica::start(&url, settings(&clock, TTL_MS, "replica-b")).await;
    for v in ["v1", "v2", "t1"] {
        a.center.store.put_graph(meta(v)).await.unwrap();
    }
    for region in ["porto", "lisbon"] {
        let path = format!("/api/v1/regions/{region}/graph");
        a.admin("PUT", &path, Some(json!({"version": "v1"}))).await;
    }
    // Both replicas have porto's directives cached from a report of their own, B lisbon's
    // too. Replica A knows no node of lisbon, so a new graph there is set directly (no
    // rollout).
    assert_eq!(graph_of(&a.directives("a-1", "porto").await), Some("v1"));
    let b_filled = Instant::now();
    assert_eq!(graph_of(&b.directives("b-1", "porto").await), Some("v1"));
    assert_eq!(graph_of(&b.directives("b-2", "lisbon").await), Some("v1"));

    a.admin(
        "PUT",
        "/api/v1/regions/porto/graph?profile=truck",
        Some(json!({"version": "t1"})),
    )
    .await;
    a.admin(
        "PUT",
        "/api/v1/regions/lisbon/graph",
        Some(json!({"version": "v2"})),
    )
    .await;
    let changed = Instant::now();
    let on_a = a.directives("a-1", "porto").await;
    assert_eq!(
        profile_of(&on_a, "truck"),
        Some("t1"),
        "at once on the replica that wrote"
    );

    let early = b.directives("b-1", "porto").await;
    if b_filled.elapsed() < Duration::from_millis(TTL_MS) {
        assert_eq!(
            profile_of(&early, "truck"),
            None,
            "B answers from its cache"
        );
    }
    let deadline = changed + Duration::from_millis(TTL_MS) + Duration::from_secs(3);
    loop {
        let porto = b.directives("b-1", "porto").await;
        let lisbon = b.directives("b-2", "lisbon").await;
        if profile_of(&porto, "truck") == Some("t1") && graph_of(&lisbon) == Some("v2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B still answers {porto:?} and {lisbon:?} {:?} after the change",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_promotion_seen_by_another_replica_comes_with_its_region_graph() {
    let Some(url) = database("directive_promote").await else {
        return;
    };
    let clock = Clock::manual(1_764_700_000_000);
    // Only the rollout record's change can refresh B's region graph within the test.
    let a = Replica::start(&url, settings(&clock, AN_HOUR_MS, "replica-a")).await;
    let b = Replica::start(&url, settings(&clock, AN_HOUR_MS, "replica-b")).await;
    for v in ["v1", "v2"] {
        a.center.store.put_graph(meta(v)).await.unwrap();
    }
    a.admin(
        "PUT",
        "/api/v1/regions/porto/graph",
        Some(json!({"version": "v1"})),
    )
    .await;
    let nodes = ["edge-1", "edge-2", "edge-3", "edge-4"];
    for node in nodes {
        assert_eq!(graph_of(&a.directives(node, "porto").await), Some("v1"));
        assert_eq!(graph_of(&b.directives(node, "porto").await), Some("v1"));
    }
    a.admin(
        "PUT",
        "/api/v1/regions/porto/graph",
        Some(json!({"version": "v2"})),
    )
    .await;
    let status = a.admin("GET", "/api/v1/regions/porto/rollout", None).await;
    let canaries: Vec<String> = serde_json::from_value(status["canaryNodes"].clone()).unwrap();
    assert_eq!(canaries.len(), 1, "{status}");
    graph::tick(&b.center).await.unwrap();
    for node in nodes {
        let expected = if canaries.iter().any(|c| c == node) {
            "v2"
        } else {
            "v1"
        };
        assert_eq!(graph_of(&b.directives(node, "porto").await), Some(expected));
    }

    a.admin("POST", "/api/v1/regions/porto/rollout/promote", None)
        .await;
    graph::tick(&b.center).await.unwrap();
    for node in nodes {
        assert_eq!(
            graph_of(&b.directives(node, "porto").await),
            Some("v2"),
            "{node} after the promotion reached replica B"
        );
    }
}
