//! A real OTLP/HTTP receiver in the test process (`POST /v1/traces`, protobuf decoded with
//! the `opentelemetry-proto` types) and an in-process center, for the trace tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

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
