//! Wire types shared by the edgeroute agent and control plane.
//!
//! This crate is the one place a type that crosses a process boundary is defined, so the
//! agent and the control plane cannot drift apart. It holds serde types only: no I/O, no
//! HTTP framework, no storage.
//!
//! # Layout
//! - [`osrm`]: the OSRM-compatible route/table/nearest/trip API shapes served by the agent.
//! - [`vroom`]: the VROOM-compatible `POST /optimize` input and output (plus the agent's
//!   `plan_id`, [`vroom::OptimizeResponse`]).
//! - [`plans`]: the stored `/optimize` results served by `GET /plans`.
//! - [`admin`]: the agent's graph management answers (`/admin/graph`).
//! - [`status`]: the agent's `GET /v1/status` body.
//! - [`sync`]: agent <-> control-plane reports, acknowledgements and directives, and the
//!   center's fleet API shapes built on them.
//! - [`fleet`]: the center's paged node list, node detail and history (the dashboard's API).
//! - [`rollout`]: a region's progressive rollout of an agent or graph version.
//! - [`crd`]: the `EdgeRegion` custom resource (behind the `kube` feature).

pub mod admin;
pub mod fleet;
pub mod osrm;
pub mod plans;
pub mod profile;
pub mod rollout;
pub mod status;
pub mod sync;
pub mod vroom;

#[cfg(feature = "kube")]
pub mod crd;
