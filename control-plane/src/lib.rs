//! The edgeroute control plane.
//!
//! # Layout
//! - [`cli`]: the command line, and the wiring of each subcommand (tracing, signals, the
//!   metrics server, the runners).
//! - [`controller`]: the `EdgeRegion` controller (reconcile, error policy, context, runners).
//! - [`graphs`]: graph artifacts: `graph build|route|info|push` and the center's registry.
//! - [`serve`]: `serve`, the center's long-lived server: its state, auth and errors.
//! - [`sync`]: the sync API agents report to, and the center's store behind a trait.
//! - [`fleet`]: the fleet JSON API (nodes, collected plans).
//! - [`dev`]: `dev`, a local fleet (the center in process, agents as child processes).
//! - [`fleet`]: the fleet JSON API (nodes, collected plans) and its in-memory view.
//! - [`dashboard`]: the fleet dashboard's page and embedded assets.
//! - [`crdgen`]: renders the CRD YAML committed under `manifests/`.
//! - [`metrics`]: Prometheus metrics of the controller.
//!
//! - [`rollout`]: progressive delivery: canary analysis of agent and graph versions, the
//!   graph rollout driver and its API.
//!
//! Every server runs through `edgeroute_server::serve(listener, app, shutdown)`.

pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod dashboard;
pub mod dev;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod graphs;
pub mod metrics;
pub mod rollout;
pub mod serve;
pub mod sync;
