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
    /// The graphs served for the profiles beside the default one (`truck`, ...), by name.
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, ProfileGraph>,
}

/// The graph an extra profile is served from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileGraph {
    /// Version label.
    pub version: String,
    /// Its artifact checksum (SHA-256 hex).
    pub checksum: String,
    /// Installed by a control plane directive (and removed when a directive drops it),
    /// rather than by an upload or `--profile-graph`.
    pub directed: bool,
}
