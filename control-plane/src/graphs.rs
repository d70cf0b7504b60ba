//! Graph artifacts: what the control plane builds and distributes to agents.
//!
//! # Layout
//! - [`cli`]: `graph build` / `graph route` / `graph info`, the artifact builder agents are
//!   fed from. The graph registry joins it here.

pub mod cli;
