//! Durable agent state, behind the [`Store`] trait so handlers and tests do not depend on
//! sled directly.
//!
//! What is stored: graph artifacts by version (only those still needed: see
//! `routing::GraphService`), the active and previous version pointers (for rollback), the
//! version the control plane last directed, the content hash of each imported OSM file (so a restart does not re-import),
//! the node identity, the VRP plans and, when the agent syncs with a control plane, the
//! [`outbox`] of events waiting for the center. API keys are not stored: the keys configured
//! at start are the accepted keys.
//!
//! Every method is synchronous and may touch the disk: call it from `spawn_blocking` on
//! request paths.

pub mod artifacts;
pub mod outbox;
pub mod plans;
mod sled_store;

pub use plans::{NewPlan, Plan, Tenant};
pub use sled_store::{PLAN_OWNERS, PLANS, PLANS_BY_OWNER, SledStore};

use serde::{Deserialize, Serialize};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database reported an error.
    #[error("database error")]
    Db(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("stored value under {key} is corrupt")]
    Corrupt {
        /// Which key.
        key: String,
    },
    /// A version to activate is not stored.
    #[error("graph version {0:?} is not stored")]
    UnknownVersion(String),
    /// The sync outbox holds its maximum of events: the change that would add one is
    /// refused until the center acknowledges some.
    #[error("the sync outbox is full ({0} events wait for the control plane)")]
    OutboxFull(u64),
    /// A local file could not be read or written.
    #[error("file error")]
    Io(#[from] std::io::Error),
    /// Another process (or a handle not yet released) holds the database's lock.
    #[error("the database in {0} is in use by another process")]
    Locked(std::path::PathBuf),
}

/// Result alias for storage.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The identity of this agent, created on first start and kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Stable random id (hex).
    pub id: String,
    /// Unix seconds of the first start. Stored as `created_at`, the key databases written
    /// by earlier versions hold.
    #[serde(rename = "created_at")]
    pub created_at_s: u64,
    /// How many times the agent has started on this database, this start included.
    pub boot_count: u64,
    /// The node name the identity was made under, when one was configured. Absent from
    /// databases written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Where a graph version stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphPointers {
    /// The version served.
    pub active: Option<String>,
    /// The version served before it (the rollback target).
    pub previous: Option<String>,
}

/// The agent's durable state. `Debug` so the state holding it can be printed.
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// Store an artifact under `version` (overwrites).
    fn put_graph(&self, version: &str, artifact: &[u8]) -> Result<()>;
    /// The artifact stored under `version`.
    fn graph(&self, version: &str) -> Result<Option<Vec<u8>>>;
    /// All stored versions, sorted.
    fn graph_versions(&self) -> Result<Vec<String>>;
    /// Delete a stored version (never the active or previous one).
    fn delete_graph(&self, version: &str) -> Result<bool>;
    /// Active and previous version.
    fn graph_pointers(&self) -> Result<GraphPointers>;
    /// Make `version` active; the formerly active version becomes `previous`. Atomic, and
    /// with the outbox on, the change is recorded as an event in the same transaction
    /// (`sha256` is the artifact's; `reason` says why: `upload`, `rollback`, `directive`,
    /// `map`, `artifact`, `stored`).
    fn activate_graph(&self, version: &str, sha256: &str, reason: &str) -> Result<GraphPointers>;
    /// The version the control plane's last graph directive named, kept by retention.
    fn directed_graph(&self) -> Result<Option<String>>;
    /// Remember the version the control plane's last graph directive named.
    fn set_directed_graph(&self, version: &str) -> Result<()>;
    /// The version imported from an OSM file with this content hash.
    fn graph_for_source(&self, source_sha256: &str) -> Result<Option<String>>;
    /// Remember that `version` was imported from an OSM file with this content hash.
    fn record_graph_source(&self, source_sha256: &str, version: &str) -> Result<()>;
    /// The node identity, created on the first call ever; each call counts a boot. A
    /// database last started under another configured `node` name (a data directory copied
    /// to another node) gets a new identity, so the two nodes' plan ids never coincide.
    fn boot(&self, node: Option<&str>) -> Result<NodeIdentity>;
    /// Store a plan under the next sequence number (durable after [`Store::flush`]), owned by
    /// `owner` (a key id, see [`plans`]; `None` when no key made it); with the outbox on, its
    /// event is appended in the same transaction, and a full outbox refuses the plan with
    /// [`Error::OutboxFull`].
    fn put_plan(&self, plan: &NewPlan, owner: Option<&str>) -> Result<Plan>;
    /// The plan with this sequence number, if `tenant` may see it.
    fn plan(&self, seq: u64, tenant: Tenant<'_>) -> Result<Option<Plan>>;
    /// Up to `limit` plans `tenant` may see with a sequence number above `since`, in order.
    fn plans_since(&self, since: u64, limit: usize, tenant: Tenant<'_>) -> Result<Vec<Plan>>;
    /// Make everything written so far durable.
    fn flush(&self) -> Result<()>;
    /// Append an event to the outbox on its own (nothing else changes with it).
    fn record_event(&self, kind: edgeroute_protocol::sync::EventKind) -> Result<u64>;
    /// The stream `node` reports in and its oldest waiting events, bounded by count and
    /// bytes, as their stored JSON numbered for the wire (see [`outbox`]).
    fn outbox_batch(
        &self,
        node: &str,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<outbox::Batch>;
    /// Events waiting for the center.
    fn outbox_depth(&self) -> Result<u64>;
    /// Apply the center's watermark for `stream`, whose batch said `last_sent` numbers were
    /// handed out: delete what it covers, or start a new stream when it cannot be this
    /// database's ([`outbox::ack`]).
    fn ack_outbox(&self, stream: &str, last_sent: u64, watermark: u64) -> Result<outbox::Acked>;
}
