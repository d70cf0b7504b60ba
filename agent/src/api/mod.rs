//! The HTTP API: one module per concern, each with a `router()`, merged by [`app`] under
//! one middleware stack ([`middleware::stack`]).
//!
//! # Layout
//! - OSRM services: [`route`], [`table`], [`nearest`], [`trip`]; they share the request
//!   preamble and the response shaping of [`osrm`] and the URL grammar of [`params`].
//! - VROOM: [`optimize`] solves and stores a plan, [`plans`] reads plans back.
//! - Operations: [`health`] (liveness, readiness, metrics), [`status`], [`admin`] (graph
//!   upload and rollback), [`openapi`].
//! - [`middleware`]: the one stack every request goes through; [`json`]: the OSRM services'
//!   response body.
//!
//! Handlers reach everything through [`AppState`]: the graph service, the store, metrics
//! and limits.

pub mod admin;
pub mod admission;
pub mod health;
pub mod json;
pub mod middleware;
pub mod nearest;
pub mod openapi;
pub mod optimize;
pub mod osrm;
pub mod params;
pub mod plans;
pub mod route;
pub mod status;
pub mod table;
pub mod trip;

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::{Router, http::Uri};
use edgeroute_engine::Graph;
use sha2::{Digest, Sha256};

use crate::{
    config::Limits, error::ApiError, metrics::Metrics, routing::GraphService, storage::Store,
};

/// Who may call what.
///
/// Keys are kept as the SHA-256 of the key, never in clear. A request's key is hashed once
/// and looked up by its digest; the id it maps to is the one [`middleware::KeyId`] carries,
/// made once here, so a request costs no hex encoding and no allocation (they were 2.5k
/// instructions of a two-point `/route`, `docs/agent-benchmarks.md`).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// The accepted API keys, by digest.
    api_keys: HashMap<[u8; 32], middleware::KeyId>,
    /// The admin key's digest and id (`None`: admin endpoints disabled).
    admin: Option<([u8; 32], middleware::KeyId)>,
    /// `--no-auth`: the routing API is open.
    pub open: bool,
}

impl Auth {
    /// Build from clear-text keys.
    pub fn new(api_keys: &[String], admin_key: Option<&str>, open: bool) -> Self {
        let entry = |key: &str| {
            let digest = Self::digest(key);
            (digest, middleware::KeyId::of_digest(&digest))
        };
        Self {
            api_keys: api_keys.iter().map(|k| entry(k)).collect(),
            admin: admin_key.map(entry),
            open,
        }
    }

    /// The SHA-256 of a presented key.
    pub fn digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    /// Whether any API key is configured.
    pub fn has_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The id of the API key with this digest, when it is one.
    pub fn api_key(&self, digest: &[u8; 32]) -> Option<&middleware::KeyId> {
        self.api_keys.get(digest)
    }

    /// The admin key's id, when the admin API is enabled.
    pub fn admin_id(&self) -> Option<&middleware::KeyId> {
        self.admin.as_ref().map(|(_, id)| id)
    }

    /// The admin key's id, when `digest` is the admin key's.
    pub fn admin_key(&self, digest: &[u8; 32]) -> Option<&middleware::KeyId> {
        self.admin
            .as_ref()
            .filter(|(admin, _)| admin == digest)
            .map(|(_, id)| id)
    }
}

/// Static facts about this node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Display name.
    pub name: String,
    /// Stable id from storage.
    pub id: String,
    /// Region served.
    pub region: String,
    /// Starts on this database, this one included.
    pub boot_count: u64,
    /// When the process started.
    pub started: Instant,
}

/// Shared state of every handler and middleware: one reference-counted [`Shared`], because
/// the middleware stack clones the state about twenty times per request (every
/// `from_fn_with_state` layer clones the layers below it), and a struct of fourteen `Arc`s
/// made those clones and drops 4% of a saturated agent's CPU.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl From<Shared> for AppState {
    fn from(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// The served graph and its management.
    pub graphs: Arc<GraphService>,
    /// Durable state: plans here; graphs only through [`Shared::graphs`].
    pub store: Arc<dyn Store>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Arc<Limits>,
    /// Keys.
    pub auth: Arc<Auth>,
    /// Per-key token buckets.
    pub rate: Arc<middleware::RateLimiter>,
    /// CORS origins (`*` for any).
    pub cors_origins: Arc<Vec<String>>,
    /// This node.
    pub node: Arc<NodeInfo>,
    /// Admission control: the request gate, the solve queue, the runtime-lag probe.
    pub admission: Arc<admission::Admission>,
    /// Requests answered since the last report to the control plane.
    pub window: Arc<crate::sync::window::WindowRecorder>,
    /// The link to the control plane, when there is one.
    pub sync: Option<Arc<crate::sync::SyncHandle>>,
    /// The shadow graph of a graph canary and its comparison queue.
    pub shadow: Arc<crate::routing::shadow::Shadow>,
    /// The graphs of the profiles served beside the default one.
    pub profiles: Arc<crate::routing::profiles::Profiles>,
}

/// Admission control sized by `limits`, reporting to `metrics`.
pub fn admission(limits: &Limits, metrics: &Metrics) -> admission::Admission {
    let m = metrics.overload();
    admission::Admission {
        requests: admission::Gate::new(
            limits.concurrency_limit,
            limits.admission_queue,
            Some(limits.admission_max_wait),
            m.queue_depth.clone(),
            m.admitted.clone(),
        ),
        // No wait limit of its own: a queued solve waits within the request timeout.
        solves: admission::Gate::new(
            limits.max_concurrent_solves,
            limits.solve_queue,
            None,
            m.solve_queue_depth.clone(),
            m.solves_running.clone(),
        ),
        lag: Arc::new(admission::LagProbe::new(limits.standing_lag)),
        max_lag: limits.max_runtime_lag,
        queue_delay: Arc::new(edgeroute_server::queue_delay::QueueDelay::new()),
        max_queue_delay: limits.max_queue_delay,
        compute: crate::compute::Compute::new(limits.compute_threads, limits.compute_queue),
    }
}

impl AppState {
    /// The graph to answer with, or 503 before the first load.
    pub fn graph(&self) -> Result<Arc<Graph>, ApiError> {
        self.graphs.holder().get().ok_or_else(ApiError::not_ready)
    }

    /// The graph of the profile a URL names: an extra profile's, or the default graph for
    /// `car`, `driving` and the default graph's own profile. `None` inside means the
    /// default graph is not loaded yet; an unknown profile is an error naming the served ones.
    pub fn graph_for_profile(&self, name: &str) -> Result<ProfileGraph, ApiError> {
        if let Some(graph) = self.profiles.get(name) {
            return Ok(ProfileGraph {
                graph: Some(graph),
                default: false,
            });
        }
        let default = self.graphs.holder().get();
        let own = default.as_ref().is_some_and(|g| g.info().profile == name);
        if crate::routing::profiles::is_default(name) || own {
            return Ok(ProfileGraph {
                graph: default,
                default: true,
            });
        }
        let mut served = vec!["car (also driving)".to_owned()];
        served.extend(self.profiles.all().into_iter().map(|(n, _)| n));
        Err(ApiError::new(
            edgeroute_protocol::osrm::ErrorCode::InvalidUrl,
            format!(
                "Unknown profile {name:?}; this agent serves: {}",
                served.join(", ")
            ),
        ))
    }
}

/// The graph a request's profile picks (see [`AppState::graph_for_profile`]).
#[derive(Debug, Clone)]
pub struct ProfileGraph {
    /// The graph; `None` while the default graph is not loaded.
    pub graph: Option<Arc<Graph>>,
    /// Whether it is the default graph (the one the control plane directs, and the only
    /// one compared on a shadow graph).
    pub default: bool,
}

/// The whole application: every module's routes, the JSON 404 fallback and the middleware.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(route::router())
        .merge(table::router())
        .merge(nearest::router())
        .merge(health::router())
        .merge(status::router())
        .merge(admin::router(&state))
        .merge(optimize::router(&state))
        .merge(plans::router(&state))
        .merge(trip::router())
        .merge(openapi::router())
        .fallback(not_found)
        .with_state(state.clone());
    middleware::stack(routes, &state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        edgeroute_protocol::osrm::ErrorCode::NotFound,
        format!("No endpoint at {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::Auth;

    #[test]
    fn keys_are_known_by_digest_and_named_by_its_first_hex_digits() {
        let auth = Auth::new(&["k1".to_owned(), "k2".to_owned()], Some("root"), false);
        assert!(auth.has_api_keys());
        let id = auth.api_key(&Auth::digest("k1")).unwrap();
        // The id rate limits and plan ownership have always used: 16 hex digits of the hash.
        let hex = hex::encode(Auth::digest("k1"));
        assert_eq!(id.as_str(), &hex[..16]);
        assert_ne!(auth.api_key(&Auth::digest("k2")), Some(id));
        assert_eq!(auth.api_key(&Auth::digest("k3")), None);
        assert_eq!(auth.api_key(&Auth::digest("root")), None, "admin is apart");
        let admin = auth.admin_key(&Auth::digest("root")).unwrap();
        assert_eq!(Some(admin), auth.admin_id());
        assert_eq!(auth.admin_key(&Auth::digest("k1")), None);
        assert!(!admin.is_anonymous());

        let open = Auth::new(&[], None, true);
        assert!(!open.has_api_keys());
        assert_eq!(open.admin_id(), None);
    }
}
