//! The edgeroute control plane.
//!
//! # Layout
//! - [`controller`]: the `EdgeRegion` controller (reconcile, error policy, context).
//! - [`crdgen`]: renders the CRD YAML committed under `manifests/`.
//! - [`graph_cli`]: `graph build` / `graph route`, the artifact builder agents are fed from.
//! - [`metrics`]: Prometheus metrics of the controller.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod controller;
pub mod fleet;
pub mod graphs;
pub mod serve;
pub mod sync;
pub mod crdgen;
#[cfg(test)]
mod fixtures;
pub mod graph_cli;
pub mod metrics;
pub mod telemetry;
