//! The agent's graph management API (`/admin/graph`, behind the admin key).

use serde::{Deserialize, Serialize};

/// Result of an upload or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphChange {
    /// Version now served.
    pub version: String,
    /// Its artifact checksum (SHA-256 hex).
    pub checksum: String,
    /// The version served before (rollback target).
    pub previous: Option<String>,
}

/// Stored graph versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphVersions {
    /// Version served.
    pub active: Option<String>,
    /// Rollback target.
    pub previous: Option<String>,
    /// Every stored version.
    pub versions: Vec<String>,
}
