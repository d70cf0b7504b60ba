//! The center's `GET /metrics`, in process: counters move with the reports the center
//! answers, the fleet gauges follow the node records, and every center metric the Grafana
//! dashboard queries exists in a scrape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::serve::Settings;
use edgeroute_protocol::sync::{Event, EventKind, Health, MetricsWindow, Report};

mod support;

use support::center::{TOKEN, TestCenter};
use support::events::plan_event;

fn graph_event(seq: u64) -> Event {
    Event {
        seq,
        at_ms: 1,
        kind: EventKind::GraphActivated {
            version: "v1".into(),
            sha256: "ab".into(),
            previous: None,
            reason: "directive".into(),
        },
    }
}

fn report(node: &str, region: &str, outbox_depth: u64, events: Vec<Event>) -> Report {
    Report {
        node: node.into(),
        stream: format!("stream-{node}"),
        region: region.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health {
            ready: true,
            ..Health::default()
        },
        advertise_url: None,
        location: None,
        metrics: MetricsWindow::default(),
        outbox_depth,
        events,
    }
}

/// A scrape as Prometheus makes it (OpenMetrics).
async fn scrape(c: &TestCenter) -> String {
    let (status, headers, body) = c
        .call(
            Request::get("/metrics")
                .header(
                    header::ACCEPT,
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    text
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn reports_events_and_errors_are_counted() {
    let c = TestCenter::new(Settings::default());
    let before = scrape(&c).await;
    assert_eq!(
        value(
            &before,
            r#"edgeroute_center_sync_reports_total{result="ok"}"#
        ),
        0.0
    );
    // Two plans and a graph activation; then a retry of the same events plus one plan:
    // the retried ones are acknowledged already and must not count again.
    c.ack(&report(
        "edge-1",
        "monaco",
        3,
        vec![
            plan_event("edge-1", 1),
            plan_event("edge-1", 2),
            graph_event(3),
        ],
    ))
    .await;
    c.ack(&report(
        "edge-1",
        "monaco",
        4,
        vec![
            plan_event("edge-1", 1),
            plan_event("edge-1", 2),
            graph_event(3),
            plan_event("edge-1", 4),
        ],
    ))
    .await;
    let text = scrape(&c).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_events_ingested_total{kind="plan"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_events_ingested_total{kind="graph_activated"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"edgeroute_center_sync_reports_total{result="ok"}"#),
        2.0
    );
    assert_eq!(
        value(&text, "edgeroute_center_sync_ingest_duration_seconds_count"),
        2.0
    );

    // A wrong token and a malformed body are rejected, each with its reason.
    let (status, _) = c
        .json(
            Request::post("/sync/v1/report")
                .header(header::AUTHORIZATION, "Bearer wrong")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c
        .json(
            Request::post("/sync/v1/report")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An unknown graph version is a download error.
    let (status, _, _) = c
        .call(
            Request::get("/sync/v1/graphs/nope")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = scrape(&c).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_reports_total{result="rejected"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_errors_total{call="report",reason="unauthorized"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_errors_total{call="report",reason="malformed"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_sync_errors_total{call="graph_download",reason="not_found"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_graph_downloads_total{range="full"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn fleet_gauges_are_per_region_and_follow_the_node_records() {
    let c = TestCenter::new(Settings::default());
    c.ack(&report("a-1", "monaco", 5, vec![])).await;
    c.ack(&report("a-2", "monaco", 7, vec![])).await;
    c.ack(&report("b-1", "porto", 0, vec![])).await;
    let text = scrape(&c).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_nodes{region="monaco",state="online"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_nodes{region="monaco",state="stale"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_nodes{region="porto",state="online"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_region_outbox_events{region="monaco"}"#
        ),
        12.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_region_outbox_max_events{region="monaco"}"#
        ),
        7.0
    );
    assert!(
        !text.contains("a-1"),
        "nodes are never labels: the series count must not grow with the fleet"
    );
    // A later report of one node replaces its depth.
    c.ack(&report("a-2", "monaco", 1, vec![])).await;
    let text = scrape(&c).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_region_outbox_events{region="monaco"}"#
        ),
        6.0
    );
}

#[tokio::test]
async fn silent_nodes_turn_stale_then_offline_at_scrape_time() {
    let stale = TestCenter::new(Settings {
        stale_after_ms: 0,
        offline_after_ms: 3_600_000,
        ..Settings::default()
    });
    stale.ack(&report("a-1", "monaco", 0, vec![])).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let text = scrape(&stale).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_nodes{region="monaco",state="stale"}"#
        ),
        1.0
    );
    let age = value(
        &text,
        r#"edgeroute_center_region_report_age_max_seconds{region="monaco"}"#,
    );
    assert!((0.02..60.0).contains(&age), "{age}");

    let offline = TestCenter::new(Settings {
        stale_after_ms: 0,
        offline_after_ms: 0,
        ..Settings::default()
    });
    offline.ack(&report("a-1", "monaco", 0, vec![])).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let text = scrape(&offline).await;
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_nodes{region="monaco",state="offline"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"edgeroute_center_region_report_age_max_seconds{region="monaco"}"#
        ),
        0.0,
        "offline nodes leave the staleness gauge (their count says they are gone)"
    );
}

#[tokio::test]
async fn without_an_openmetrics_accept_the_text_format_is_served() {
    let c = TestCenter::new(Settings::default());
    c.ack(&report("a-1", "monaco", 0, vec![])).await;
    let (status, headers, body) = c.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE edgeroute_center_sync_reports_total counter"));
    assert_eq!(
        value(&text, r#"edgeroute_center_sync_reports_total{result="ok"}"#),
        1.0
    );
}

/// Every `edgeroute_*` name in the dashboard's queries.
fn dashboard_metric_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/grafana/edgeroute-fleet.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has queries: {exprs:?}");
    exprs.iter().flat_map(|e| metric_names(e)).collect()
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    // Panel queries, and the variables' label_values() queries.
                    ("expr" | "definition", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `edgeroute_...` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("edgeroute_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn every_center_metric_the_dashboard_queries_is_exposed() {
    let c = TestCenter::new(Settings::default());
    c.ack(&report("a-1", "monaco", 0, vec![plan_event("edge-1", 1)]))
        .await;
    let text = scrape(&c).await;
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let wanted: Vec<String> = dashboard_metric_names()
        .into_iter()
        .filter(|n| n.starts_with("edgeroute_center_"))
        .collect();
    assert!(wanted.len() >= 5, "{wanted:?}");
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !exposed.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries center metrics no scrape has: {missing:?}"
    );
}
