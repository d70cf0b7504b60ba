//! With several replicas, each one's fleet view ([`crate::fleet::view::FleetView`]) holds
//! only the reports it ingested itself. [`follow`] folds in, every few seconds, the node
//! records the others wrote since the last look, so every replica's fleet API and
//! dashboard show the whole fleet (at most one period late; histories fill only from the
//! reports a replica ingested itself).

use std::{sync::Arc, time::Duration};

use super::PgCenterStore;
use crate::fleet::view::{FleetView, Seen};

/// Refresh `fleet` from `store` every `period` until the task is dropped.
pub async fn follow(store: PgCenterStore, fleet: Arc<FleetView>, period: Duration) {
    // Clocks of replicas differ and a transaction may commit after a later one: look a
    // little behind the newest record seen. Re-reading a record is harmless, the view
    // keeps the newer of two.
    const OVERLAP_MS: u64 = 10_000;
    let mut since = 0u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
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
