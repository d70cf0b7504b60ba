//! With several replicas, each one's fleet view ([`crate::fleet::view::FleetView`]) holds
//! only the reports it ingested itself. [`follow`] folds in, every few seconds, the node
//! records the others wrote since the last look, so every replica's fleet API and
//! dashboard show the whole fleet (at most one period late; histories fill only from the
//! reports a replica ingested itself). It also drops the nodes another replica forgot
//! (`DELETE /api/v1/nodes/{node}`), checking the store's node names every few periods.

use std::{sync::Arc, time::Duration};

use super::{PgCenterStore, decode, ms, shared};
use crate::{
    fleet::view::{FleetView, Seen},
    sync::store::{NodeRecord, Result},
};

impl PgCenterStore {
    /// The names of every node with a record (what a replica's fleet view checks its own
    /// against, to drop the nodes another replica forgot).
    pub async fn node_names(&self) -> Result<std::collections::BTreeSet<String>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT node FROM nodes")
            .await
            .map_err(shared)?;
        client
            .query(&stmt, &[])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| r.try_get(0).map_err(shared))
            .collect()
    }

    /// Node records received after `since_ms` (what a replica's fleet view missed).
    pub async fn nodes_since(&self, since_ms: u64) -> Result<Vec<NodeRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT record FROM nodes WHERE received_at_ms > $1")
            .await
            .map_err(shared)?;
        client
            .query(&stmt, &[&ms(since_ms)])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| decode(r.try_get(0).map_err(shared)?, "nodes"))
            .collect()
    }
}

/// Refresh `fleet` from `store` every `period` until the task is dropped.
pub async fn follow(store: PgCenterStore, fleet: Arc<FleetView>, period: Duration) {
    // Clocks of replicas differ and a transaction may commit after a later one: look a
    // little behind the newest record seen. Re-reading a record is harmless, the view
    // keeps the newer of two.
    const OVERLAP_MS: u64 = 10_000;
    // Names are checked less often than records are read: forgetting a node is rare, and
    // the list is the whole fleet.
    const NAMES_EVERY: u64 = 5;
    // Records this replica ingests reach its view just after their commit, so one may be
    // missing from names read a moment earlier: spare the newest. (Records read back from
    // the store are merged by this task, after the names, so none of those can race.)
    const NAMES_MARGIN_MS: u64 = 2_000;
    let mut since = 0u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tick.tick().await;
        if round % NAMES_EVERY == NAMES_EVERY - 1 {
            // Before the read: a record written after it is newer than `read_at`.
            let read_at = crate::graphs::registry::now_ms().saturating_sub(NAMES_MARGIN_MS);
            match store.node_names().await {
                Ok(names) => {
                    let dropped = fleet.forget_unknown(&names, read_at);
                    if dropped > 0 {
                        tracing::info!(dropped, "nodes forgotten on another replica");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the node names from the store")
                }
            }
        }
        match store.nodes_since(since.saturating_sub(OVERLAP_MS)).await {
            Ok(records) => {
                for record in records {
                    since = since.max(record.received_at_ms);
                    fleet.merge(
                        Seen::of(&record.report),
                        record.received_at_ms,
                        record.acked_seq,
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot refresh the fleet view from the store")
            }
        }
    }
}
