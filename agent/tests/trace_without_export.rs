//! A client's trace from the agent to the center when neither exports spans: the ids come
//! from the light layer `telemetry::init` installs without an OTLP endpoint, and must still
//! reach the stored plan, the center's plan list and the JSON log lines. The subscriber is
//! process-wide: this binary holds one test only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod otel_support;

use std::time::Duration;

use edgeroute_server::{
    LogFormat,
    telemetry::{self, TraceArgs},
};
use otel_support::Captured;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
const API_KEY: &str = "trace-test-api-key-0815";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_reaches_plans_center_and_logs_without_export() {
    let logs = Captured::default();
    let writer = logs.clone();
    let telemetry = telemetry::init_with_writer(
        "edgeroute-test",
        LogFormat::Json,
        &TraceArgs::default(),
        move || writer.clone(),
        false,
    )
    .unwrap();
    assert!(!telemetry.exporting());

    let center_dir = tempfile::tempdir().unwrap();
    let (center_url, _stop_center) = otel_support::center(center_dir.path()).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = otel_support::agent(
        &agent_dir.path().join("db"),
        API_KEY,
        "edge-untraced",
        &center_url,
    )
    .await;
    let client = common::client();
    let client_traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let plan_id =
        otel_support::optimize_traced(&client, &agent.url, API_KEY, &client_traceparent).await;

    // The stored plan carries the client's trace, under a span of the agent's own.
    let plan: serde_json::Value = client
        .get(format!("{}/plans/{plan_id}", agent.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let traceparent = plan["traceparent"].as_str().unwrap_or_default().to_owned();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{plan}");
    assert_eq!(fields[1], CLIENT_TRACE, "{plan}");
    assert_eq!(fields[2].len(), 16, "{plan}");
    assert_ne!(fields[2], CLIENT_SPAN, "the agent's span, not the client's");
    assert_eq!(
        fields[3], "01",
        "the client's sampling decision is followed"
    );

    // The center shows the plan with the client's trace id.
    let summary = otel_support::center_plan(&client, &center_url, &plan_id).await;
    assert_eq!(summary["trace_id"], CLIENT_TRACE, "{summary}");

    // A log line inside a span of the client's trace carries it, with its own span id.
    {
        let span = tracing::info_span!("log-check");
        telemetry::set_parent_from_traceparent(&span, &traceparent);
        let _entered = span.enter();
        tracing::info!(answer = 42, "inside a span");
    }
    let line = logs.line_with("inside a span");
    assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
    let span_id = line["span_id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16, "{line}");
    assert_ne!(span_id, fields[2], "{line}");

    agent.stop().await.unwrap();
    telemetry.shutdown(Duration::from_secs(1)).await;
}
