//! A real OTLP/HTTP receiver in the test process (`POST /v1/traces`, protobuf decoded with
//! the `opentelemetry-proto` types), an in-process center, and the other pieces the trace
//! tests share: captured log lines, a traced `/optimize`, the center's view of a plan.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use edgeroute_control_plane::serve::{Center, Settings, app, auth::CenterAuth};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    trace::v1::Span,
};
use prost::Message;
use tokio::sync::oneshot;

/// Spans received so far.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Span>>>);

impl Received {
    pub fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}

async fn traces(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut spans = received.0.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// A receiver on a random port; returns its `/v1/traces` URL.
pub async fn receiver() -> (String, Received, oneshot::Sender<()>) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(edgeroute_server::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    (url, received, stop)
}

/// The agent token and admin key of the test center.
pub const TOKEN: &str = "sync-token-for-tests";
pub const ADMIN: &str = "admin-key-for-tests";

/// A center served in process; returns its base URL.
pub async fn center(dir: &std::path::Path) -> (String, oneshot::Sender<()>) {
    let center = Center::open(
        dir,
        CenterAuth::new(&[TOKEN.into()], Some(ADMIN), false),
        Settings {
            agent_sync_interval_ms: Some(200),
            ..Settings::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(edgeroute_server::serve(listener, app(center), async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A VRP on Monaco coordinates.
pub fn problem() -> serde_json::Value {
    serde_json::json!({
        "vehicles": [{"id": 1, "start": [7.4197, 43.7314], "end": [7.4197, 43.7314]}],
        "jobs": [
            {"id": 1, "location": [7.4246, 43.7384]},
            {"id": 2, "location": [7.4200, 43.7350]}
        ]
    })
}

/// Log lines written so far.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The JSON line of the event with `message`.
    pub fn line_with(&self, message: &str) -> serde_json::Value {
        let text = self.text();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no JSON line for {message:?} in:\n{text}"))
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An agent in process on the Monaco graph that syncs to `center_url` every 200 ms.
pub async fn agent(
    db: &std::path::Path,
    api_key: &str,
    node: &str,
    center_url: &str,
) -> crate::common::InProcess {
    let agent = crate::common::start_in_process(
        db,
        &[
            "--graph",
            crate::common::artifact_a().to_str().unwrap(),
            "--api-key",
            api_key,
            "--node-name",
            node,
            "--region",
            "riviera",
            "--control-plane",
            center_url,
            "--sync-token",
            TOKEN,
            "--sync-interval-ms",
            "200",
        ],
    )
    .await;
    agent.ready(&crate::common::client()).await;
    agent
}

/// Solves [`problem`] on `agent_url` as a client in the trace of `traceparent`; returns the
/// plan id.
pub async fn optimize_traced(
    client: &reqwest::Client,
    agent_url: &str,
    api_key: &str,
    traceparent: &str,
) -> String {
    let response = client
        .post(format!("{agent_url}/optimize"))
        .bearer_auth(api_key)
        .header("traceparent", traceparent)
        .json(&problem())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<serde_json::Value>().await.unwrap()["plan_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The center's summary of plan `plan_id`, once the agent has synced it (20 s at most).
pub async fn center_plan(
    client: &reqwest::Client,
    center_url: &str,
    plan_id: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let plans: serde_json::Value = client
            .get(format!("{center_url}api/v1/plans"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(p) = plans["plans"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["plan_id"] == plan_id))
        {
            return p.clone();
        }
        assert!(Instant::now() < deadline, "the center never got {plan_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
