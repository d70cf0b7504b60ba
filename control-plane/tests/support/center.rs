//! The center's router in process, driven with `Router::oneshot`: what the center and
//! discovery tests share.

#![allow(dead_code)]

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use edgeroute_control_plane::serve::{Center, Settings, app, auth::CenterAuth};
use edgeroute_protocol::sync::{Report, ReportAck};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The admin key of every test center.
pub const ADMIN: &str = "adm";
/// The agent token of every test center.
pub const TOKEN: &str = "tok";

/// A center on a temporary data directory.
pub struct TestCenter {
    _dir: tempfile::TempDir,
    /// Its whole API.
    pub app: Router,
    /// Its state (store, fleet view, rollouts), for what the API does not reach.
    pub center: Center,
}

impl TestCenter {
    /// A center with these settings, [`ADMIN`] and [`TOKEN`].
    pub fn new(settings: Settings) -> TestCenter {
        Self::in_dir(tempfile::tempdir().unwrap(), settings)
    }

    fn in_dir(dir: tempfile::TempDir, settings: Settings) -> TestCenter {
        let center = Center::open(
            dir.path(),
            CenterAuth::new(&[TOKEN.into()], Some(ADMIN), false),
            settings,
        )
        .unwrap();
        TestCenter {
            app: app(center.clone()),
            center,
            _dir: dir,
        }
    }

    /// Stop this center and start another on the same data directory (a restart).
    pub fn restart(self, settings: Settings) -> TestCenter {
        let TestCenter { _dir, app, center } = self;
        drop(app);
        drop(center);
        Self::in_dir(_dir, settings)
    }

    /// Status, headers and body of one request.
    pub async fn call(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }

    /// A request whose answer must be JSON.
    pub async fn json(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, headers, body) = self.call(request).await;
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

    /// GET without credentials.
    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// GET without credentials, answered in JSON.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        self.json(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// GET with the admin key, answered in JSON.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.json(
            Request::get(path)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// A request with the admin key and an optional JSON body, answered in JSON.
    pub async fn admin_json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        let body = match body {
            Some(v) => {
                r = r.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.json(r.body(body).unwrap()).await
    }

    /// POST a report with the agent token.
    pub async fn report(&self, report: &Report) -> (StatusCode, Value) {
        self.json(
            Request::post("/sync/v1/report")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(report).unwrap()))
                .unwrap(),
        )
        .await
    }

    /// POST a report that must be accepted; its acknowledgement.
    pub async fn ack(&self, report: &Report) -> ReportAck {
        let (status, body) = self.report(report).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }
}
