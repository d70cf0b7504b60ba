//! Helpers for cross-process integration tests and the VRP benchmark: the benchmark
//! instance readers ([`vrp_instances`]). The VROOM mapping they post and read back is
//! `edgeroute_vrp::vroom`, the one the agent uses.

pub mod vrp_instances;
