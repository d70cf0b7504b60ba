//! The edgeroute control plane.
//!
//! # Layout
//! - [`cli`]: the command line, and the wiring of each subcommand (tracing, signals, the
//!   metrics server, the runners).
//! - [`controller`]: the `EdgeRegion` controller (reconcile, error policy, context, runners).
//! - [`graphs`]: graph artifacts; [`graphs::cli`] is `graph build` / `graph route`, the
//!   artifact builder agents are fed from.
//! - [`crdgen`]: renders the CRD YAML committed under `manifests/`.
//! - [`metrics`]: Prometheus metrics of the controller.
//!
//! Coming next, each in its own module beside these: `sync/` (the server agents report
//! to), `fleet/` (fleet API and dashboard), `rollout/` (canary analysis of agent and graph
//! versions) and `dev.rs` (a local fleet without a cluster). Every server among them runs
//! through `edgeroute_server::serve(listener, app, shutdown)`, as the controller's metrics
//! server does.

pub mod cli;
pub mod controller;
pub mod fleet;
pub mod graphs;
pub mod serve;
pub mod sync;
pub mod crdgen;
#[cfg(test)]
mod fixtures;
pub mod graphs;
pub mod metrics;
