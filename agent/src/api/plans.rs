//! `GET /plans/{id}` and `GET /plans?since=<seq>&limit=<n>`: the stored `/optimize` results.
//!
//! A plan belongs to the key that made it ([`PlanOwner`]); `/plans` answers with the
//! caller's plans only, and someone else's plan id is a 404 like an unknown one, so ids
//! reveal nothing. The admin key sees every plan; under `--no-auth` every caller is one
//! tenant and sees every plan. Plans stored before owners were recorded have none and are
//! seen by those readers only.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, Query, State, rejection::QueryRejection},
    http::request::Parts,
    routing::get,
};
use edgeroute_protocol::{osrm::ErrorCode, plans::PlanList};
use tower_http::limit::RequestBodyLimitLayer;

use super::{AppState, middleware::KeyId};
use crate::{
    error::ApiError,
    storage::{Plan, Tenant, plans::seq_of},
};

/// Plans listed when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// Most plans listed at once.
const MAX_LIMIT: usize = 1000;

/// Routes of this module.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/plans", get(list))
        .route("/plans/{id}", get(one))
        .layer(RequestBodyLimitLayer::new(state.limits.max_body_bytes))
}

/// Who is asking for or storing plans, from the key the request was authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOwner {
    /// The key id (a hash prefix, never the key); `None` without a key (`--no-auth`).
    key: Option<String>,
    /// The caller may read every plan: the admin key, or anyone under `--no-auth`.
    sees_all: bool,
}

impl PlanOwner {
    /// The owner to store with a plan this caller makes.
    pub fn id(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whose plans this caller may read.
    pub fn tenant(&self) -> Tenant<'_> {
        match (&self.key, self.sees_all) {
            (Some(key), false) => Tenant::Owner(key),
            // A caller without a key passed authentication only because it is off.
            _ => Tenant::All,
        }
    }
}

impl FromRequestParts<AppState> for PlanOwner {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The middleware's anonymous id under `--no-auth` is not a key: it owns nothing.
        let key = parts
            .extensions
            .get::<KeyId>()
            .filter(|id| !id.is_anonymous());
        let sees_all = state.auth.open || (key.is_some() && key == state.auth.admin_id());
        let key = key.map(|id| id.as_str().to_owned());
        Ok(Self { key, sees_all })
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("No plan with id {id:?}"))
}

/// One plan by id.
#[utoipa::path(get, path = "/plans/{id}", tag = "vroom",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Plan id (`<node>-<seq>`)")),
    responses(
        (status = 200, description = "The plan", body = Plan),
        (status = 404, description = "No such plan, or another key's", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn one(
    State(state): State<AppState>,
    owner: PlanOwner,
    Path(id): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    let Some(seq) = seq_of(&id) else {
        return Err(not_found(&id));
    };
    let store = Arc::clone(&state.store);
    let plan = tokio::task::spawn_blocking(move || store.plan(seq, owner.tenant()))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal_chain(&e))?;
    match plan {
        Some(plan) if plan.id == id => Ok(Json(plan)),
        _ => Err(not_found(&id)),
    }
}

/// Plans after a sequence number.
#[utoipa::path(get, path = "/plans", tag = "vroom",
    security(("bearer" = [])),
    params(
        ("since" = Option<u64>, Query, description = "List plans with a greater sequence number (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, max 1000)"),
    ),
    responses(
        (status = 200, description = "This key's plans (every plan for the admin key or under `--no-auth`) in sequence order", body = PlanList),
        (status = 400, description = "`since` or `limit` is not a non-negative integer", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn list(
    State(state): State<AppState>,
    owner: PlanOwner,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<PlanList>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::invalid_query("Query string malformed"))?;
    let number = |key: &str, default: u64| -> Result<u64, ApiError> {
        query.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                ApiError::invalid_value(format!("{key} must be a non-negative integer"))
            })
        })
    };
    let since = number("since", 0)?;
    let limit = number("limit", DEFAULT_LIMIT as u64)?;
    let limit = usize::try_from(limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let store = Arc::clone(&state.store);
    let plans =
        tokio::task::spawn_blocking(move || store.plans_since(since, limit, owner.tenant()))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal_chain(&e))?;
    let next_since = plans.last().map_or(since, |p| p.seq);
    Ok(Json(PlanList { plans, next_since }))
}
