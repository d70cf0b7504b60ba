//! Helpers for cross-process integration tests.

pub mod fault_proxy;
pub mod procs;
pub mod vroom_bridge;
pub mod vrp_instances;
