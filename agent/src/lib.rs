//! The edgeroute edge agent: OSRM-compatible route, table, nearest and trip answers and
//! VROOM-compatible vehicle routing (`POST /optimize`, stored as plans) from a local road
//! graph, with sled storage, a production middleware stack, metrics, TLS, atomic graph swaps
//! and an optional sync link to the control plane.
//!
//! # Layout
//! - [`config`]: the command line; every flag also from an `EDGEROUTE_*` variable.
//! - [`server`]: start-up (storage, keys, background graph load) as [`server::Agent`],
//!   served over HTTP or HTTPS by `edgeroute-server` until a shutdown future resolves.
//! - [`api`]: the axum application, one module per concern, merged by [`api::app`] under
//!   the middleware stack of [`api::middleware`]; [`api::osrm`] holds what the OSRM
//!   services share (request preamble, response shaping).
//! - [`routing`]: the served graph ([`routing::GraphHolder`], swapped atomically) and its
//!   management ([`routing::GraphService`]) and [`routing::matrix`], the VRP solver's
//!   matrices from the graph; no HTTP types.
//! - [`storage`]: durable state behind the [`storage::Store`] trait, in sled (graph
//!   artifacts as files beside it); handlers
//!   reach it through [`api::AppState`].
//! - [`sync`]: the link to the control plane (`--control-plane`): reports, the outbox
//!   drained exactly once, graph directives.
//! - [`error`]: [`error::ApiError`], OSRM's error vocabulary as HTTP responses.
//! - [`metrics`]: Prometheus metrics.

pub mod api;
pub mod compute;
pub mod config;
pub mod error;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod storage;
pub mod sync;
