//! Cross-process test support, end-to-end tests and tools (`publish = false`).
//!
//! # Layout
//! - [`fault_proxy`]: a TCP proxy between the agents and the control plane that injects
//!   real network faults (partitions, black holes, resets, lost responses) on command.
//! - [`procs`]: the real binaries as child processes on port-0 loopback addresses (start,
//!   wait for readiness, `kill -9`, restart on the same data directory).
//! - [`data`]: the shared data set beside the checkout (`../shared/data`) and the one policy
//!   for tests that need it: skip with a notice, or fail under `EDGEROUTE_REQUIRE_DATA=1`.
//! - [`events`]: sync events as the center's tests send them.
//! - [`logs`]: a log writer into memory, for tests that read what a process logged.
//! - [`pg`]: a real PostgreSQL for the center's shared store: a database per test, and
//!   skip or fail under `EDGEROUTE_REQUIRE_POSTGRES=1`.
//! - [`vrp_instances`]: readers for the Solomon, Gehring & Homberger and CVRP X instances
//!   and their best-known solutions.
//! - `tests/`: `sync` (agents and center as real processes, through the fault proxy) and
//!   `vrp_solomon` (solver feasibility and quality on real instances).
//! - binaries: `vrp-bench` (the solver's quality through `/optimize`, see
//!   `docs/vrp-benchmarks.md`) and `loadgen` (open- or closed-loop load on an agent's `/route`) and `fleet-sim`
//!   (thousands of simulated agents reporting to a center, see `docs/scale.md`).

pub mod api_probe;
pub mod data;
pub mod events;
pub mod fault_proxy;
pub mod fleet;
pub mod logs;
pub mod pg;
pub mod procs;
pub mod vrp_instances;
