//! The agent's link to the control plane (`--control-plane`): a background loop that
//! reports health, a metrics window and the outbox to `POST /sync/v1/report`, deletes what
//! the center acknowledged, and follows its directives (graph downloads, report interval).
//! Without `--control-plane` none of this runs and the agent is standalone.
//!
//! # Layout
//! - [`client`]: the loop, its configuration and the status it shares.
//! - [`download`]: resumable, verified graph downloads.
//! - `follow`: the directives' default graph and shadow graph, downloaded and held.
//! - [`profiles`]: the directives' extra profiles (`truck`), downloaded and removed.
//! - [`window`]: the metrics window reports carry.
//! - [`backoff`]: retry delays with jitter.

pub mod backoff;
pub mod client;
pub mod download;
mod follow;
pub mod profiles;
pub mod window;

use std::sync::Arc;

pub use client::{SyncConfig, SyncContext, SyncState, SyncStatus};

/// What the API sees of the link (for `/v1/status`).
#[derive(Debug)]
pub struct SyncHandle {
    /// The control plane's URL.
    pub control_plane: String,
    /// The loop's status.
    pub state: Arc<SyncState>,
}

pub use edgeroute_protocol::sync::rfc3339;
