//! Where verdicts come from: the center holds the agents' reports and judges a canary
//! window (`POST /api/v1/regions/{region}/analysis`); the controller only acts on the answer.

use std::time::Duration;

use async_trait::async_trait;
use edgeroute_protocol::rollout::{AnalysisRequest, Verdict};

/// Why no verdict came back. Every variant counts as silence: the rollout holds.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The controller was started without `--center-url`.
    #[error("no center configured (--center-url)")]
    NotConfigured,
    /// The request did not get an HTTP answer (connection refused, timeout, TLS).
    #[error("center unreachable: {0}")]
    Unreachable(String),
    /// The center answered with an error status.
    #[error("center answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the body (the center's JSON error).
        body: String,
    },
    /// The answer was not a verdict.
    #[error("the center's answer is not a verdict: {0}")]
    Decode(String),
}

impl JudgeError {
    /// Metric label of the error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Unreachable(_) => "unreachable",
            Self::Status { .. } => "status",
            Self::Decode(_) => "decode",
        }
    }
}

/// Judges one analysis window of a region's canary.
#[async_trait]
pub trait Judge: Send + Sync {
    /// The verdict on `req` for `region`.
    async fn judge(&self, region: &str, req: &AnalysisRequest) -> Result<Verdict, JudgeError>;
}

/// Asks the center over HTTP with its admin key.
pub struct HttpJudge {
    client: reqwest::Client,
    base: String,
    admin_key: String,
}

/// Longest wait for the center's answer: a hung center must not stall the reconcile.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body ends up in the error (and the status reason).
const BODY_PREFIX: usize = 300;

impl HttpJudge {
    /// A judge asking the center at `base` (e.g. `http://edgeroute-center.edgeroute.svc:8080`).
    pub fn new(base: &str, admin_key: &str) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default crypto provider; ring is the workspace's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            admin_key: admin_key.to_owned(),
        })
    }

    fn url(&self, region: &str) -> String {
        // Region names are DNS labels (Kubernetes object names), so they need no escaping.
        format!("{}/api/v1/regions/{region}/analysis", self.base)
    }
}

#[async_trait]
impl Judge for HttpJudge {
    async fn judge(&self, region: &str, req: &AnalysisRequest) -> Result<Verdict, JudgeError> {
        let res = self
            .client
            .post(self.url(region))
            .bearer_auth(&self.admin_key)
            .json(req)
            .send()
            .await
            .map_err(|e| JudgeError::Unreachable(error_chain(&e)))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| JudgeError::Unreachable(error_chain(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(JudgeError::Status {
                status: status.as_u16(),
                body: text.chars().take(BODY_PREFIX).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| JudgeError::Decode(e.to_string()))
    }
}

/// The error and its causes on one line (reqwest's Display names only the outer layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
