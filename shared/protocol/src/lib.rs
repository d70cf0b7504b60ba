//! Wire types shared by the edgeroute agent and control plane.
//!
//! This crate is the one place a type that crosses a process boundary is defined, so the
//! agent and the control plane cannot drift apart. It holds serde types only: no I/O, no
//! HTTP framework, no storage.
//!
//! # Layout
//! - [`osrm`]: the OSRM-compatible route/table/nearest/trip API shapes served by the agent.
//! - [`vroom`]: the VROOM-compatible `POST /optimize` input and output.
//! - [`crd`]: the `EdgeRegion` custom resource (behind the `kube` feature).

pub mod osrm;
pub mod vroom;

#[cfg(feature = "kube")]
pub mod crd;
