//! Helpers for cross-process integration tests: a TCP fault proxy, the real binaries as
//! child processes, and the VRP benchmark instances.

pub mod data;
pub mod fault_proxy;
pub mod procs;
pub mod vrp_instances;
