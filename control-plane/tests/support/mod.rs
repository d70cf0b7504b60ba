//! Test support shared by the integration tests.

pub mod center;
pub mod controller;
// One source for the plan events of the center's tests, in process here and end to end in
// `edgeroute-tests`; each test binary uses part of it.
#[allow(dead_code)]
#[path = "../../../tests/src/events.rs"]
pub mod events;
pub mod fake_apiserver;
pub mod rollout;
