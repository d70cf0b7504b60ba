//! Helpers for cross-process integration tests.

pub mod vrp_instances;
