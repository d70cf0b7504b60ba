//! What the center keeps: event streams, node records, plans and the graph registry's
//! metadata, behind [`CenterStore`] so the sled default and a shared database for several
//! replicas are interchangeable.
//!
//! The contract that makes delivery exactly-once: [`CenterStore::ingest`] stores every
//! event of a report idempotently by (stream, seq), makes it durable, and only then returns
//! the stream's watermark, the highest sequence number below which it holds every event.
//! An agent deletes events at or below the watermark and nothing else.

use async_trait::async_trait;
use edgeroute_protocol::{
    plans::Plan,
    sync::{Event, EventHeader, MetricsWindow, RawEvent, Report},
};
use serde::{Deserialize, Serialize};

pub use crate::rollout::machine::RolloutRecord;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded database failed.
    #[error("database error")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("stored value in {0} is corrupt")]
    Corrupt(&'static str),
    /// A blocking task was cancelled or panicked.
    #[error("storage task failed")]
    Task,
    /// The shared database (PostgreSQL) failed or cannot be reached.
    #[error("shared database error")]
    Shared(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result alias for storage.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the center remembers of a node: its last report, less the events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The report, with `events` emptied.
    pub report: Report<RawEvent>,
    /// Unix milliseconds when it arrived.
    pub received_at_ms: u64,
    /// The watermark of the node's current stream.
    pub acked_seq: u64,
}

/// A stored plan with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// Node name.
    pub node: String,
    /// The stream's event sequence number that carried it.
    pub event_seq: u64,
    /// The plan as the agent stored it.
    pub plan: Plan,
}

/// Metadata of an artifact in the graph registry (the bytes are files, see
/// [`crate::graphs::registry`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphMeta {
    /// Version label.
    pub version: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Unix milliseconds of the upload.
    pub uploaded_at_ms: u64,
    /// Graph nodes.
    pub node_count: u64,
    /// `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: [f64; 4],
}

/// A node's metrics window as a replica received it, kept where every replica's rollout
/// judge reads it (see [`CenterStore::put_windows`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSample {
    /// The node's region.
    pub region: String,
    /// Node name.
    pub node: String,
    /// Unix milliseconds when the report arrived.
    pub at_ms: u64,
    /// The graph version the node served.
    pub graph: Option<String>,
    /// The window.
    pub window: MetricsWindow,
}

/// What [`CenterStore::ingest`] did to a stream's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The watermark the report found: its events at or below it were held already, so
    /// counting the events above it counts each event once (read where the ingest read it,
    /// not in a statement of its own).
    pub held: u64,
    /// The watermark after the report, which the agent is answered with.
    pub watermark: u64,
}

/// The center's durable state.
#[async_trait]
pub trait CenterStore: Send + Sync + 'static {
    /// Store the report's events idempotently, record the node, make both durable, and
    /// return the stream's watermark before and after. Must not return before the events
    /// are durable.
    /// `headers[i]` is the header of `report.events[i]` (the caller has read them already
    /// to validate the report); events are stored as the raw JSON they arrived as.
    async fn ingest(
        &self,
        report: Report<RawEvent>,
        headers: Vec<EventHeader>,
        received_at_ms: u64,
    ) -> Result<Ingested>;
    /// Every node that ever reported, by name.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
    /// One node.
    async fn node(&self, name: &str) -> Result<Option<NodeRecord>>;
    /// Forget a node's record (a decommissioned node); its plans and events stay. Whether
    /// there was one. A node that reports again is recorded again.
    async fn forget_node(&self, name: &str) -> Result<bool>;
    /// Up to `limit` plans with a plan sequence number above `since`, of one node or of
    /// all, in (node, seq) order.
    async fn plans(&self, node: Option<&str>, since: u64, limit: usize) -> Result<Vec<StoredPlan>>;
    /// Up to `limit` plans of `node` with a plan sequence number above `since`, newest
    /// first (what a node's page shows).
    async fn latest_plans(&self, node: &str, since: u64, limit: usize) -> Result<Vec<StoredPlan>>;
    /// One plan by node and plan sequence number.
    async fn plan(&self, node: &str, seq: u64) -> Result<Option<StoredPlan>>;
    /// Up to `limit` events of a stream above `since`, in order.
    async fn events(&self, stream: &str, since: u64, limit: usize) -> Result<Vec<Event>>;
    /// Record a registered graph artifact.
    async fn put_graph(&self, meta: GraphMeta) -> Result<()>;
    /// The registered artifacts, by version.
    async fn graphs(&self) -> Result<Vec<GraphMeta>>;
    /// One registered artifact.
    async fn graph(&self, version: &str) -> Result<Option<GraphMeta>>;
    /// Set the graph version a region's agents should serve.
    async fn set_region_graph(&self, region: &str, version: &str) -> Result<()>;
    /// The graph version a region's agents should serve, if one was set. During a graph
    /// rollout this is the stable (previous) version; the rollout record names the new one.
    async fn region_graph(&self, region: &str) -> Result<Option<String>>;
    /// The region's current or last rollout, if it ever had one.
    async fn rollout(&self, region: &str) -> Result<Option<RolloutRecord>>;
    /// Replace the region's rollout record (one JSON value per region), durably.
    async fn put_rollout(&self, region: &str, record: &RolloutRecord) -> Result<()>;

    /// Whether several replicas share this store: then one of them drives each region's
    /// rollout ([`CenterStore::lease`]) and the windows it judges come from all of them
    /// ([`CenterStore::windows`]). A store for one replica (sled) keeps the defaults.
    fn shared(&self) -> bool {
        false
    }
    /// Take or renew the lease `name` for `holder` for `ttl_ms` (the store's clock); whether
    /// `holder` holds it now. A store for one replica always grants it.
    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        let _ = (name, holder, ttl_ms);
        Ok(true)
    }
    /// Give up the lease `name` if `holder` holds it (a replica shutting down).
    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let _ = (name, holder);
        Ok(())
    }
    /// Keep windows `replica` received for the other replicas' rollout judges.
    async fn put_windows(&self, replica: &str, samples: &[WindowSample]) -> Result<()> {
        let _ = (replica, samples);
        Ok(())
    }
    /// The windows of `region` that any replica received after `since_ms`.
    async fn windows(&self, region: &str, since_ms: u64) -> Result<Vec<WindowSample>> {
        let _ = (region, since_ms);
        Ok(Vec::new())
    }
    /// Forget the windows received before `before_ms`.
    async fn prune_windows(&self, before_ms: u64) -> Result<()> {
        let _ = before_ms;
        Ok(())
    }
}

/// The highest sequence number reachable from `watermark` through stored events without a
/// gap: what the center may acknowledge. `held(seq)` says whether event `seq` is stored.
pub fn advance_watermark(watermark: u64, mut held: impl FnMut(u64) -> Result<bool>) -> Result<u64> {
    let mut w = watermark;
    while let Some(next) = w.checked_add(1) {
        if !held(next)? {
            break;
        }
        w = next;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn advance(w: u64, held: &[u64]) -> u64 {
        let held: BTreeSet<u64> = held.iter().copied().collect();
        advance_watermark(w, |s| Ok(held.contains(&s))).unwrap()
    }

    #[test]
    fn the_watermark_stops_at_the_first_gap() {
        assert_eq!(advance(0, &[]), 0);
        assert_eq!(advance(0, &[1, 2, 3]), 3);
        assert_eq!(advance(0, &[2, 3]), 0, "1 is missing: nothing may be acked");
        assert_eq!(advance(0, &[1, 2, 4, 5]), 2);
        // Once 3 arrives, the earlier 4 and 5 count too.
        assert_eq!(advance(2, &[1, 2, 3, 4, 5]), 5);
        // Duplicates and events below the watermark change nothing.
        assert_eq!(advance(5, &[1, 2, 3]), 5);
        assert_eq!(advance(u64::MAX, &[]), u64::MAX);
    }
}
