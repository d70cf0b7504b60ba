//! What several replicas need to run one graph rollout between them: a lease per region
//! (one driver) and the metrics windows every replica received (one judge's view).
//!
//! The lease is a row updated only by its holder or once expired, with the database's
//! clock (replicas' clocks may disagree): a conditional upsert, which CockroachDB and
//! YugabyteDB accept as PostgreSQL does (no advisory lock, no session state).

use deadpool_postgres::GenericClient;

use super::{PgCenterStore, decode, encode, ms, shared};
use crate::sync::store::{Result, WindowSample};

/// The database's time in Unix milliseconds, in SQL.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PgCenterStore {
    pub(super) async fn take_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, {DB_NOW_MS} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms < {DB_NOW_MS} \
             RETURNING holder"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(shared)?;
        let row = client
            .query_opt(&stmt, &[&name, &holder, &ms(ttl_ms)])
            .await
            .map_err(shared)?;
        Ok(row.is_some())
    }

    pub(super) async fn drop_lease(&self, name: &str, holder: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .await
            .map_err(shared)?;
        client
            .execute(&stmt, &[&name, &holder])
            .await
            .map_err(shared)?;
        Ok(())
    }

    pub(super) async fn insert_windows(
        &self,
        replica: &str,
        samples: &[WindowSample],
    ) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let (mut regions, mut nodes, mut at, mut graphs, mut metrics) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in samples {
            regions.push(s.region.as_str());
            nodes.push(s.node.as_str());
            at.push(ms(s.at_ms));
            graphs.push(s.graph.as_deref());
            metrics.push(encode(&s.window, "rollout_windows")?);
        }
        let client = self.client().await?;
        // A node reporting twice in one millisecond to one replica keeps its first window.
        let stmt = client
            .prepare_cached(
                "INSERT INTO rollout_windows (region, node, replica, at_ms, graph, metrics) \
                 SELECT r, n, $6, a, g, m FROM \
                 unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) \
                 AS t(r, n, a, g, m) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(shared)?;
        client
            .execute(&stmt, &[&regions, &nodes, &at, &graphs, &metrics, &replica])
            .await
            .map_err(shared)?;
        Ok(())
    }

    pub(super) async fn region_windows(
        &self,
        region: &str,
        since_ms: u64,
    ) -> Result<Vec<WindowSample>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT node, at_ms, graph, metrics FROM rollout_windows \
                 WHERE region = $1 AND at_ms > $2",
            )
            .await
            .map_err(shared)?;
        client
            .query(&stmt, &[&region, &ms(since_ms)])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| {
                let at: i64 = r.try_get(1).map_err(shared)?;
                Ok(WindowSample {
                    region: region.to_owned(),
                    node: r.try_get(0).map_err(shared)?,
                    at_ms: u64::try_from(at).unwrap_or(0),
                    graph: r.try_get(2).map_err(shared)?,
                    window: decode(r.try_get(3).map_err(shared)?, "rollout_windows")?,
                })
            })
            .collect()
    }

    pub(super) async fn delete_windows(&self, before_ms: u64) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM rollout_windows WHERE at_ms < $1")
            .await
            .map_err(shared)?;
        client
            .execute(&stmt, &[&ms(before_ms)])
            .await
            .map_err(shared)?;
        Ok(())
    }
}
