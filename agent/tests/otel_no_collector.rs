//! Span export to a collector that is not there costs the requests nothing: they answer as
//! usual, and the spans are dropped and counted. Own binary: the tracer provider is
//! process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use edgeroute_server::{
    LogFormat,
    telemetry::{self, TraceArgs},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collector_costs_the_requests_nothing() {
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let telemetry = telemetry::init_with_writer(
        "edgeroute-test",
        LogFormat::Text,
        &TraceArgs {
            otlp_endpoint: Some(format!("http://{closed}/v1/traces")),
            ..TraceArgs::default()
        },
        std::io::sink,
        false,
    )
    .unwrap();
    let served = common::serve_monaco(&["--no-auth", "--request-timeout-ms", "10000"]).await;
    let url = format!(
        "{}/route/v1/driving/{};{}",
        served.agent.url,
        common::A,
        common::B
    );
    let started = Instant::now();
    for _ in 0..20 {
        let response = served
            .client
            .get(&url)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Well within one request timeout for all twenty together.
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    while telemetry::stats().dropped_export_failed() == 0 {
        telemetry.flush(Duration::from_secs(6)).await;
        assert!(Instant::now() < deadline, "no dropped span was counted");
    }
    assert_eq!(telemetry::stats().exported(), 0);
    // The agent's metrics say so too.
    let metrics = common::metrics_text(&served.client, &served.agent.url).await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("edgeroute_agent_trace_spans_dropped_total{reason=\"export_failed\"}")),
        "{metrics}"
    );
    served.agent.stop().await.unwrap();
    let stopping = Instant::now();
    telemetry.shutdown(Duration::from_secs(2)).await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
}
