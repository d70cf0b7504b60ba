//! The fleet API the dashboard reads (paging, filters, counts, node detail, latest plans,
//! credentials) and the dashboard's own page and assets, in process (`Router::oneshot`).
//! The page in a real browser is `tests/tests/dashboard.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::{fleet::view::HistoryConfig, serve::Settings};
use edgeroute_protocol::{
    fleet::{NodeDetail, NodePage},
    sync::{EndpointCounts, Event, Health, Histogram, MetricsWindow, Report},
};

mod support;

use support::center::TestCenter;
use support::events::plan_event;

fn metrics(requests: u64, server_errors: u64, latency_ms: f64) -> MetricsWindow {
    let mut latency = Histogram::default();
    (0..requests).for_each(|_| latency.observe(latency_ms));
    MetricsWindow {
        window_ms: 1000,
        endpoints: [(
            "route".to_owned(),
            EndpointCounts {
                requests,
                server_errors,
                ..EndpointCounts::default()
            },
        )]
        .into(),
        latency,
        ..MetricsWindow::default()
    }
}

fn report(node: &str, region: &str, metrics: MetricsWindow, events: Vec<Event>) -> Report {
    Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: region.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health {
            ready: true,
            ..Health::default()
        },
        advertise_url: Some(format!("http://{node}.example:5000")),
        location: None,
        metrics,
        outbox_depth: events.len() as u64,
        events,
    }
}

fn center() -> TestCenter {
    TestCenter::new(Settings {
        history: HistoryConfig {
            point_ms: 1,
            ..HistoryConfig::default()
        },
        ..Settings::default()
    })
}

async fn page(c: &TestCenter, query: &str) -> NodePage {
    let (status, body) = c.admin_get(&format!("/api/v1/nodes{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    serde_json::from_value(body).unwrap()
}

fn names(page: &NodePage) -> Vec<&str> {
    page.nodes.iter().map(|n| n.status.node.as_str()).collect()
}

#[tokio::test]
async fn the_node_list_pages_filters_and_counts() {
    let c = center();
    for (i, region) in ["north", "north", "north", "south", "south"]
        .iter()
        .enumerate()
    {
        let errors = u64::from(i == 4);
        c.ack(&report(
            &format!("edge-{i}"),
            region,
            metrics(10, errors, 2.0),
            vec![],
        ))
        .await;
    }
    // Without parameters: every node, as before paging, plus the new fields.
    let all = page(&c, "").await;
    assert_eq!(all.total, 5);
    assert_eq!(
        names(&all),
        ["edge-0", "edge-1", "edge-2", "edge-3", "edge-4"]
    );
    assert_eq!(all.counts.all.online, 5);
    assert_eq!(all.counts.all.attention, 1);
    assert_eq!(all.counts.regions["south"].total(), 2);
    assert_eq!(all.nodes[0].last_window.request_rate, 10.0);
    assert_eq!(all.nodes[0].last_window.p99_ms, Some(2.0));

    let p = page(&c, "?region=north&offset=1&limit=1").await;
    assert_eq!(
        (names(&p), p.total, p.offset, p.limit),
        (vec!["edge-1"], 3, 1, 1)
    );
    let p = page(&c, "?state=online,stale&sort=-node&limit=2").await;
    assert_eq!(names(&p), ["edge-4", "edge-3"]);
    let p = page(&c, "?state=stale").await;
    assert_eq!(p.total, 0);
    assert_eq!(p.counts.all.online, 5, "counts ignore the filters");
    let p = page(&c, "?attention=true").await;
    assert_eq!(names(&p), ["edge-4"]);
    let p = page(&c, "?q=GE-3&region=").await;
    assert_eq!(names(&p), ["edge-3"], "an empty filter is no filter");

    for bad in [
        "?limit=0",
        "?limit=10001",
        "?state=asleep",
        "?sort=height",
        "?offset=-1",
        "?bogus=1",
    ] {
        let (status, body) = c.admin_get(&format!("/api/v1/nodes{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "InvalidRequest");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_node_has_history_and_its_latest_plans() {
    let c = center();
    c.ack(&report(
        "edge-1",
        "monaco",
        metrics(10, 0, 1.0),
        vec![plan_event("edge-1", 1)],
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    c.ack(&report(
        "edge-1",
        "monaco",
        metrics(40, 2, 30.0),
        vec![plan_event("edge-1", 2), plan_event("edge-1", 3)],
    ))
    .await;
    let (status, body) = c.admin_get("/api/v1/nodes/edge-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail: NodeDetail = serde_json::from_value(body).unwrap();
    assert_eq!(detail.node.status.acked_seq, 3);
    assert!(detail.node.attention, "5xx in the last window");
    let h = &detail.history;
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!((h[0].window.requests, h[1].window.requests), (10, 40));
    assert_eq!(h[1].window.p99_ms, Some(50.0));
    assert_eq!(h[1].window.error_rate, 0.05);
    assert_eq!((h[0].acked_seq, h[1].acked_seq), (1, 3));

    let (status, body) = c.admin_get("/api/v1/nodes/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (_, latest) = c
        .admin_get("/api/v1/plans?node=edge-1&order=desc&limit=2")
        .await;
    let seqs: Vec<u64> = latest["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2]);
    let (_, since) = c
        .admin_get("/api/v1/plans?node=edge-1&order=desc&since=2")
        .await;
    assert_eq!(since["plans"].as_array().unwrap().len(), 1);
    let (status, _) = c.admin_get("/api/v1/plans?order=desc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "newest first needs a node");
    let (status, _) = c.admin_get("/api/v1/plans?node=edge-1&order=up").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_data_needs_the_admin_key_and_the_page_does_not() {
    let c = center();
    c.ack(&report("edge-1", "monaco", metrics(1, 0, 1.0), vec![]))
        .await;
    for path in [
        "/api/v1/nodes",
        "/api/v1/nodes/edge-1",
        "/api/v1/plans?node=edge-1",
    ] {
        let (status, body) = c.get_json(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["code"], "Unauthorized");
        let (status, _) = c
            .json(
                Request::get(path)
                    .header(header::AUTHORIZATION, "Bearer wrong")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for (path, media) in [
        ("/", "text/html"),
        ("/nodes/edge-1", "text/html"),
        ("/nodes/no%20such%20node", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let h = |name| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap())
                .unwrap_or_default()
        };
        assert!(h(header::CONTENT_TYPE).starts_with(media), "{path}");
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(h(header::CACHE_CONTROL), "no-cache");
        let text = String::from_utf8(body).unwrap();
        let text = text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} refers to another origin"
        );
        // Revalidation is a bodiless 304.
        let etag = h(header::ETAG).to_owned();
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let (status, _, body) = c
            .call(
                Request::get(path)
                    .header(header::IF_NONE_MATCH, &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            (status, body.len()),
            (StatusCode::NOT_MODIFIED, 0),
            "{path}"
        );
    }
    let (status, body) = c.get_json("/assets/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_forgotten_node_leaves_the_fleet_and_keeps_its_plans() {
    let mut c = center();
    // A decommissioned node: it reported once, long ago.
    c.ack(&report(
        "old",
        "monaco",
        metrics(1, 0, 1.0),
        vec![plan_event("old", 1)],
    ))
    .await;
    c.ack(&report("edge-1", "monaco", metrics(1, 0, 1.0), vec![]))
        .await;
    let delete = |path: &str| {
        Request::delete(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", support::center::ADMIN),
            )
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = c
        .json(
            Request::delete("/api/v1/nodes/old")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = c.call(delete("/api/v1/nodes/old")).await;
    assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
    assert_eq!(names(&page(&c, "").await), ["edge-1"]);
    let (status, body) = c.admin_get("/api/v1/nodes/old").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Gone from the metrics the offline alert reads, and from discovery's candidates.
    let (_, _, text) = c.get("/metrics").await;
    let text = String::from_utf8(text).unwrap();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("edgeroute_center_nodes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 1.0, "{text}");
    assert_eq!(c.center.fleet.records().len(), 1);
    // Its plans are history and stay.
    let (status, body) = c.admin_get("/api/v1/plans?node=old").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["plans"].as_array().unwrap().len(), 1, "{body}");
    // Forgetting twice, or a node never seen: 404 in JSON.
    let (status, body) = c.json(delete("/api/v1/nodes/old")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    // Still forgotten after a restart (the store forgot, not just the view)...
    c = c.restart(Settings::default());
    assert_eq!(names(&page(&c, "").await), ["edge-1"]);
    // ... until the node reports again.
    c.ack(&report("old", "monaco", metrics(1, 0, 1.0), vec![]))
        .await;
    assert_eq!(names(&page(&c, "").await), ["edge-1", "old"]);
}
