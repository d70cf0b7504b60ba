//! Graph artifacts: what the control plane builds and distributes to agents.
//!
//! # Layout
//! - [`cli`]: `graph build` / `graph route` / `graph info`, the artifact builder agents are
//!   fed from, and `graph push` ([`push`]) into a running center's registry.
//! - [`registry`]: artifact files at the center, verified uploads, HTTP range parsing.
//! - [`api`]: `PUT/GET /api/v1/graphs`, `PUT /api/v1/regions/{region}/graph[?profile=]`.
//! - [`profiles`]: a region's graphs for extra profiles (`truck`), sent beside the default.

pub mod api;
pub mod cli;
pub mod profiles;
pub mod push;
pub mod registry;
