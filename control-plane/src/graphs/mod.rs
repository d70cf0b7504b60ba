//! Graph artifacts at the center: the registry agents download from, and its API.
//!
//! # Layout
//! - [`registry`]: artifact files, verified uploads, HTTP range parsing.
//! - [`api`]: `PUT/GET /api/v1/graphs`, `PUT /api/v1/regions/{region}/graph`.

pub mod api;
pub mod registry;
