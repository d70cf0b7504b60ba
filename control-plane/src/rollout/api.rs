//! The rollout API (admin key):
//! - `GET /api/v1/regions/{region}/rollout`: the region's current or last rollout
//!   (`RolloutStatus`), 404 when it never had one;
//! - `POST /api/v1/regions/{region}/rollout/{promote|abort|pause|resume}`: an operator's
//!   action, answered with the new status; 409 when there is no rollout or it is over;
//! - `POST /api/v1/regions/{region}/analysis`: the controller's question (an
//!   `AnalysisRequest`), answered with a `Verdict` judged on the agents' reports.

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::HeaderMap,
    routing::{get, post},
};
use edgeroute_protocol::rollout::{AnalysisRequest, RolloutAction, RolloutStatus, Verdict};

use super::graph::{self, RolloutError};
use crate::serve::{
    Center,
    error::{ApiError, json_rejection},
};

/// Most canary nodes one analysis request may name.
pub const MAX_CANARY_NODES: usize = 10_000;

/// Routes of the rollout API.
pub fn router() -> Router<Center> {
    Router::new()
        .route("/api/v1/regions/{region}/rollout", get(status))
        .route("/api/v1/regions/{region}/rollout/{action}", post(action))
        .route("/api/v1/regions/{region}/analysis", post(analysis))
}

/// The API error of a rollout failure.
pub fn rollout_error(err: RolloutError) -> ApiError {
    match err {
        RolloutError::Storage(e) => ApiError::storage(e),
        RolloutError::NoRollout(m) | RolloutError::Refused(m) => ApiError::conflict(m),
    }
}

async fn status(
    State(center): State<Center>,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RolloutStatus>, ApiError> {
    center.auth.admin(&headers)?;
    match graph::record(&center, &region)
        .await
        .map_err(ApiError::storage)?
    {
        Some(r) => Ok(Json(r.status)),
        None => Err(ApiError::not_found(format!(
            "region {region:?} has no rollout"
        ))),
    }
}

fn parse_action(raw: &str) -> Option<RolloutAction> {
    match raw {
        "promote" => Some(RolloutAction::Promote),
        "abort" => Some(RolloutAction::Abort),
        "pause" => Some(RolloutAction::Pause),
        "resume" => Some(RolloutAction::Resume),
        _ => None,
    }
}

async fn action(
    State(center): State<Center>,
    Path((region, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<RolloutStatus>, ApiError> {
    center.auth.admin(&headers)?;
    let Some(action) = parse_action(&action) else {
        return Err(ApiError::not_found(format!(
            "no rollout action {action:?}: use promote, abort, pause or resume"
        )));
    };
    let status = graph::act(&center, &region, action)
        .await
        .map_err(rollout_error)?;
    Ok(Json(status))
}

async fn analysis(
    State(center): State<Center>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<Json<Verdict>, ApiError> {
    center.auth.admin(&headers)?;
    let Json(request) = body.map_err(json_rejection)?;
    if request.canary_nodes.is_empty() || request.canary_nodes.len() > MAX_CANARY_NODES {
        return Err(ApiError::invalid(format!(
            "canaryNodes must name 1 to {MAX_CANARY_NODES} nodes; got {}",
            request.canary_nodes.len()
        )));
    }
    let p = &request.policy;
    let rates_ok = [p.max_error_rate, p.max_shadow_diff_rate]
        .iter()
        .all(|r| (0.0..=1.0).contains(r));
    if !rates_ok {
        return Err(ApiError::invalid(
            "policy.maxErrorRate and policy.maxShadowDiffRate must be 0 to 1",
        ));
    }
    let verdict = graph::analyse(&center, &region, &request);
    center.rollouts.metrics.verdict(verdict.kind);
    Ok(Json(verdict))
}
