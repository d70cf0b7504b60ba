//! One trace from a client through an agent to the center, exported over OTLP to a real
//! receiver in the test, and the JSON log lines of the same process. The tracer provider
//! and the log subscriber are process-wide: this binary holds one test only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod otel_support;

use std::time::{Duration, Instant};

use edgeroute_server::{
    LogFormat,
    telemetry::{self, TraceArgs},
};
use otel_support::{Captured, TOKEN, hex};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const API_KEY: &str = "very-secret-api-key-4711";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_client_through_agent_to_center() {
    let (endpoint, received, _stop_receiver) = otel_support::receiver().await;
    let logs = Captured::default();
    let writer = logs.clone();
    let telemetry = telemetry::init_with_writer(
        "edgeroute-test",
        LogFormat::Json,
        &TraceArgs {
            otlp_endpoint: Some(endpoint),
            ..TraceArgs::default()
        },
        move || writer.clone(),
        false,
    )
    .unwrap();
    assert!(telemetry.exporting());

    let center_dir = tempfile::tempdir().unwrap();
    let (center_url, _stop_center) = otel_support::center(center_dir.path()).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = otel_support::agent(
        &agent_dir.path().join("db"),
        API_KEY,
        "edge-traced",
        &center_url,
    )
    .await;
    let client = common::client();

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let plan_id = otel_support::optimize_traced(&client, &agent.url, API_KEY, &traceparent).await;

    // The center shows the plan with the client's trace id.
    let summary = otel_support::center_plan(&client, &center_url, &plan_id).await;
    assert_eq!(summary["trace_id"], CLIENT_TRACE, "{summary}");

    // The request's latency bucket points at its trace (an OpenMetrics exemplar), so a
    // dashboard goes from a slow bucket to this trace.
    let scrape = client
        .get(format!("{}/metrics", agent.url))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exemplar = format!(" # {{trace_id=\"{CLIENT_TRACE}\"}} ");
    assert!(
        scrape.lines().any(|l| l
            .starts_with("edgeroute_agent_http_request_duration_seconds_bucket{")
            && l.contains("endpoint=\"/optimize\"")
            && l.contains(&exemplar)),
        "{scrape}"
    );

    // A log line inside a span carries the trace, the span and the node.
    {
        let span = tracing::info_span!("log-check");
        let _entered = span.enter();
        tracing::info!(answer = 42, "inside a span");
    }

    // The receiver holds spans of both sides with one trace id and the right parents.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (request, store, ingest) = loop {
        telemetry.flush(Duration::from_secs(5)).await;
        let spans = received.spans();
        let in_trace: Vec<_> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == CLIENT_TRACE)
            .collect();
        let find = |name: &str| {
            in_trace
                .iter()
                .find(|s| s.name == name)
                .map(|s| (*s).clone())
        };
        if let (Some(r), Some(s), Some(i)) = (
            find("POST /optimize"),
            find("plan.store"),
            find("sync.ingest_plan"),
        ) {
            break (r, s, i);
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace: {:?}",
            in_trace.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(
        store.parent_span_id, request.span_id,
        "plan.store under the request"
    );
    assert_eq!(
        ingest.parent_span_id, store.span_id,
        "the center's ingest under plan.store"
    );
    assert_eq!(ingest.links.len(), 1, "the ingest links its report's span");
    let spans = received.spans();
    let report = spans
        .iter()
        .find(|s| s.span_id == ingest.links[0].span_id)
        .expect("the linked report span was exported");
    assert_eq!(report.name, "POST /sync/v1/report");
    // The agent's report POST is the center's request span's parent.
    let posted = spans
        .iter()
        .find(|s| s.span_id == report.parent_span_id)
        .expect("the agent's sync.report span");
    assert_eq!(posted.name, "POST /sync/v1/report");
    assert_eq!(posted.trace_id, report.trace_id);
    let attributes: Vec<(String, String)> = request
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
        .collect();
    for key in [
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "url.scheme",
        "edgeroute.vrp.jobs",
    ] {
        assert!(
            attributes.iter().any(|(k, _)| k == key),
            "{key} missing: {attributes:?}"
        );
    }
    // A count is an integer attribute, not its text.
    let jobs = attributes.iter().find(|(k, _)| k == "edgeroute.vrp.jobs");
    assert!(
        jobs.is_some_and(|(_, v)| v.contains("IntValue")),
        "edgeroute.vrp.jobs: {jobs:?}"
    );
    assert!(telemetry::stats().exported() > 0);

    let text = logs.text();
    let line = logs.line_with("inside a span");
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32), "{line}");
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
    assert_eq!(line["node"], "edge-traced", "{line}");
    assert_eq!(line["region"], "riviera", "{line}");
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(!text.contains(API_KEY), "the API key reached the logs");
    assert!(!text.contains(TOKEN), "the sync token reached the logs");
    assert!(!text.contains("43.7384"), "a coordinate reached the logs");

    agent.stop().await.unwrap();
    telemetry.shutdown(Duration::from_secs(2)).await;
}
