//! Test support shared by the integration tests.

pub mod center;
pub mod controller;
pub mod fake_apiserver;
pub mod rollout;
