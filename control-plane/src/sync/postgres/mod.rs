//! The shared [`CenterStore`]: PostgreSQL (or a compatible distributed database), for
//! several center replicas ingesting at once with no leader.
//!
//! Exactly-once across replicas comes from the database, not from a replica: an event's
//! key is (stream, seq) and is inserted with `ON CONFLICT DO NOTHING`, and the stream's
//! watermark row is locked by the same transaction that inserts the events and advances
//! it, so two replicas handling a report and its retry serialise on that row and the
//! second one finds the first one's events. The watermark is returned only after the
//! commit: an acknowledged event is a committed event.
//!
//! A lost connection surfaces as [`Error::Shared`], which the handlers turn into 503 (the
//! agents retry); the pool drops closed connections and reconnects when the database is
//! back.
//!
//! Reports arriving together share a transaction ([`batch`], group commit); the
//! one-report transaction below is its fallback and its single-report case.
//!
//! # Layout
//! - [`batch`]: group commit of concurrent reports.
//! - [`schema`]: tables, versioned migrations, the `u64` sequence mapping.
//! - [`connect`]: the bounded pool, TLS with rustls.
//! - [`refresh`]: replicas' fleet views follow what the others ingested.
//! - `rollouts`: the rollout driver's lease and the windows shared by replicas.

pub mod batch;
pub mod connect;
pub mod refresh;
mod rollouts;
pub mod schema;

use std::collections::BTreeSet;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use edgeroute_protocol::sync::{Event, EventHeader, EventKind, RawEvent, Report};
use serde_json::Value;

use self::schema::{from_db, to_db};
use super::store::{
    CenterStore, Error, GraphMeta, Ingested, NodeRecord, Result, RolloutRecord, StoredPlan,
    WindowSample, advance_watermark,
};

/// How many times a transaction the database aborted for a conflict (serialization
/// failure, deadlock: routine under SERIALIZABLE databases like CockroachDB) is retried.
const CONFLICT_RETRIES: usize = 5;

/// Rows read at a time while advancing a watermark over held events.
const ADVANCE_PAGE: i64 = 1000;

/// Event streams, node records, plans, graph metadata and region state in PostgreSQL.
#[derive(Clone)]
pub struct PgCenterStore {
    pool: Pool,
    /// Group commit, when on; its committers hold clones without it.
    batcher: Option<std::sync::Arc<batch::Batcher>>,
}

impl std::fmt::Debug for PgCenterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCenterStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

fn shared(err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Shared(Box::new(err))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt(what))
}

fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|_| Error::Corrupt(what))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Unix milliseconds as `bigint` (saturating: no clock is that far ahead).
fn ms(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

/// The report less its events, without copying the events (the retry loop keeps the
/// report whole).
fn without_events(r: &Report<RawEvent>) -> Report<RawEvent> {
    Report {
        node: r.node.clone(),
        stream: r.stream.clone(),
        region: r.region.clone(),
        boot_id: r.boot_id.clone(),
        agent_version: r.agent_version.clone(),
        profiles: r.profiles.clone(),
        graph: r.graph.clone(),
        health: r.health.clone(),
        advertise_url: r.advertise_url.clone(),
        location: r.location,
        metrics: r.metrics.clone(),
        outbox_depth: r.outbox_depth,
        events: Vec::new(),
    }
}

/// Whether the database aborted the transaction for a conflict that a retry resolves.
fn is_conflict(err: &Error) -> bool {
    use tokio_postgres::error::SqlState;
    let Error::Shared(e) = err else { return false };
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

fn stored_plan(node: String, body: &str) -> Result<StoredPlan> {
    let event: Event = decode(body, "events")?;
    let EventKind::Plan { plan } = event.kind else {
        return Err(Error::Corrupt("plans"));
    };
    Ok(StoredPlan {
        node,
        event_seq: event.seq,
        plan: *plan,
    })
}

const PLAN_SELECT: &str = "SELECT p.node, e.body FROM plans p \
     JOIN events e ON e.stream = p.stream AND e.seq = p.event_seq";

impl PgCenterStore {
    /// A store on a pool whose database is migrated (see [`connect::connect`]), with a
    /// transaction per report.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            batcher: None,
        }
    }

    /// A store that commits concurrent reports together ([`batch`]). Starts the
    /// committer tasks, which stop once every clone of the store is dropped.
    pub fn with_group_commit(pool: Pool, options: &batch::BatchOptions) -> Self {
        let batcher = batch::Batcher::start(Self::new(pool.clone()), options);
        Self {
            pool,
            batcher: Some(std::sync::Arc::new(batcher)),
        }
    }

    /// What group commit did so far (zeros without it).
    pub fn batch_counts(&self) -> batch::BatchCounts {
        self.batcher.as_ref().map(|b| b.stats()).unwrap_or_default()
    }

    /// One report in its own transaction, retried on conflicts.
    async fn ingest_retrying(
        &self,
        report: &Report<RawEvent>,
        headers: &[EventHeader],
        received_at_ms: u64,
    ) -> Result<Ingested> {
        let mut attempt = 0;
        loop {
            match self.ingest_once(report, headers, received_at_ms).await {
                Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// The pool, for callers that share it (the fleet refresher).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(shared)
    }

    /// One attempt at [`CenterStore::ingest`]: one transaction.
    async fn ingest_once(
        &self,
        report: &Report<RawEvent>,
        headers: &[EventHeader],
        received_at_ms: u64,
    ) -> Result<Ingested> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(shared)?;
        let stream = report.stream.as_str();
        let node = report.node.as_str();
        // Creates the row or locks it: every ingest of this stream, on any replica, waits
        // here for the one before it to commit, then reads its watermark.
        let lock = tx
            .prepare_cached(
                "INSERT INTO streams (stream, watermark) VALUES ($1, $2) \
                 ON CONFLICT (stream) DO UPDATE SET watermark = streams.watermark \
                 RETURNING watermark",
            )
            .await
            .map_err(shared)?;
        let held = from_db(
            tx.query_one(&lock, &[&stream, &to_db(0)])
                .await
                .map_err(shared)?
                .try_get(0)
                .map_err(shared)?,
        );
        let mut added = BTreeSet::new();
        let (mut seqs, mut bodies) = (Vec::new(), Vec::new());
        let (mut plan_seqs, mut plan_events) = (Vec::new(), Vec::new());
        for (header, raw) in headers.iter().zip(&report.events) {
            if header.seq <= held || header.seq == 0 || !added.insert(header.seq) {
                continue;
            }
            seqs.push(to_db(header.seq));
            bodies.push(raw.get());
            if let Some(plan) = header.plan {
                plan_seqs.push(to_db(plan.seq));
                plan_events.push(to_db(header.seq));
            }
        }
        if !seqs.is_empty() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream, seq, body) \
                     SELECT $1, s, b FROM unnest($2::bigint[], $3::text[]) AS t(s, b) \
                     ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(shared)?;
            tx.execute(&insert, &[&stream, &seqs, &bodies])
                .await
                .map_err(shared)?;
        }
        if !plan_seqs.is_empty() {
            // First writer wins, as for events: a retry never re-points a plan.
            let insert = tx
                .prepare_cached(
                    "INSERT INTO plans (node, seq, stream, event_seq) \
                     SELECT $1, s, $2, e FROM unnest($3::bigint[], $4::bigint[]) AS t(s, e) \
                     ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(shared)?;
            tx.execute(&insert, &[&node, &stream, &plan_seqs, &plan_events])
                .await
                .map_err(shared)?;
        }
        let watermark = self.advance(&tx, stream, held).await?;
        if watermark != held {
            let update = tx
                .prepare_cached("UPDATE streams SET watermark = $2 WHERE stream = $1")
                .await
                .map_err(shared)?;
            tx.execute(&update, &[&stream, &to_db(watermark)])
                .await
                .map_err(shared)?;
        }
        let record = NodeRecord {
            report: without_events(report),
            received_at_ms,
            acked_seq: watermark,
        };
        let upsert = tx
            .prepare_cached(
                "INSERT INTO nodes (node, record, received_at_ms, acked_seq) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (node) DO UPDATE SET record = excluded.record, \
                 received_at_ms = excluded.received_at_ms, acked_seq = excluded.acked_seq",
            )
            .await
            .map_err(shared)?;
        tx.execute(
            &upsert,
            &[
                &node,
                &encode(&record, "nodes")?,
                &ms(received_at_ms),
                &to_db(watermark),
            ],
        )
        .await
        .map_err(shared)?;
        // The ack promises durability: nothing leaves before the commit does.
        tx.commit().await.map_err(shared)?;
        Ok(Ingested { held, watermark })
    }

    /// The watermark over the stored events from `held`, read in pages so a stream with
    /// a large out-of-order backlog is not read at once.
    async fn advance(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        stream: &str,
        held: u64,
    ) -> Result<u64> {
        let page = tx
            .prepare_cached(
                "SELECT seq FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(shared)?;
        let mut w = held;
        loop {
            let rows = tx
                .query(&page, &[&stream, &to_db(w), &ADVANCE_PAGE])
                .await
                .map_err(shared)?;
            let stored = rows
                .iter()
                .map(|r| r.try_get::<_, i64>(0).map(from_db))
                .collect::<Result<BTreeSet<u64>, _>>()
                .map_err(shared)?;
            let next = advance_watermark(w, |s| Ok(stored.contains(&s)))?;
            // A full page walked to its end may continue on the next one.
            if next == w || (rows.len() as i64) < ADVANCE_PAGE || stored.last() != Some(&next) {
                return Ok(next);
            }
            w = next;
        }
    }

    async fn plans_where(
        &self,
        filter: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<StoredPlan>> {
        let client = self.client().await?;
        let sql = format!("{PLAN_SELECT} {filter}");
        let stmt = client.prepare_cached(&sql).await.map_err(shared)?;
        client
            .query(&stmt, params)
            .await
            .map_err(shared)?
            .iter()
            .map(|r| {
                let node: String = r.try_get(0).map_err(shared)?;
                let body: &str = r.try_get(1).map_err(shared)?;
                stored_plan(node, body)
            })
            .collect()
    }

    /// A region's small piece of JSON state under `key` (its graph version, its rollout).
    pub async fn region_state(&self, region: &str, key: &str) -> Result<Option<Value>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT value FROM region_state WHERE region = $1 AND key = $2")
            .await
            .map_err(shared)?;
        client
            .query_opt(&stmt, &[&region, &key])
            .await
            .map_err(shared)?
            .map(|r| r.try_get(0).map_err(shared))
            .transpose()
    }

    /// Replace a region's JSON state under `key`.
    pub async fn put_region_state(&self, region: &str, key: &str, value: &Value) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO region_state (region, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (region, key) DO UPDATE SET value = excluded.value",
            )
            .await
            .map_err(shared)?;
        client
            .execute(&stmt, &[&region, &key, value])
            .await
            .map_err(shared)?;
        Ok(())
    }
}

#[async_trait]
impl CenterStore for PgCenterStore {
    async fn ingest(
        &self,
        report: Report<RawEvent>,
        headers: Vec<EventHeader>,
        received_at_ms: u64,
    ) -> Result<Ingested> {
        match &self.batcher {
            Some(batcher) => batcher.ingest(report, headers, received_at_ms).await,
            None => {
                self.ingest_retrying(&report, &headers, received_at_ms)
                    .await
            }
        }
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let client = self.client().await?;
        client
            .query("SELECT record FROM nodes ORDER BY node", &[])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| decode(r.try_get(0).map_err(shared)?, "nodes"))
            .collect()
    }

    async fn forget_node(&self, name: &str) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM nodes WHERE node = $1")
            .await
            .map_err(shared)?;
        Ok(client.execute(&stmt, &[&name]).await.map_err(shared)? > 0)
    }

    async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT record FROM nodes WHERE node = $1")
            .await
            .map_err(shared)?;
        client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(shared)?
            .map(|r| decode(r.try_get(0).map_err(shared)?, "nodes"))
            .transpose()
    }

    async fn plans(&self, node: Option<&str>, since: u64, n: usize) -> Result<Vec<StoredPlan>> {
        match node {
            Some(node) => {
                self.plans_where(
                    "WHERE p.node = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3",
                    &[&node, &to_db(since), &limit(n)],
                )
                .await
            }
            None => {
                self.plans_where(
                    "WHERE p.seq > $1 ORDER BY p.node, p.seq LIMIT $2",
                    &[&to_db(since), &limit(n)],
                )
                .await
            }
        }
    }

    async fn latest_plans(&self, node: &str, since: u64, n: usize) -> Result<Vec<StoredPlan>> {
        self.plans_where(
            "WHERE p.node = $1 AND p.seq > $2 ORDER BY p.seq DESC LIMIT $3",
            &[&node, &to_db(since), &limit(n)],
        )
        .await
    }

    async fn plan(&self, node: &str, seq: u64) -> Result<Option<StoredPlan>> {
        Ok(self
            .plans_where("WHERE p.node = $1 AND p.seq = $2", &[&node, &to_db(seq)])
            .await?
            .pop())
    }

    async fn events(&self, stream: &str, since: u64, n: usize) -> Result<Vec<Event>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT body FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(shared)?;
        client
            .query(&stmt, &[&stream, &to_db(since), &limit(n)])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| decode(r.try_get(0).map_err(shared)?, "events"))
            .collect()
    }

    async fn put_graph(&self, meta: GraphMeta) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO graphs (version, meta) VALUES ($1, $2) \
                 ON CONFLICT (version) DO UPDATE SET meta = excluded.meta",
            )
            .await
            .map_err(shared)?;
        client
            .execute(&stmt, &[&meta.version, &encode(&meta, "graphs")?])
            .await
            .map_err(shared)?;
        Ok(())
    }

    async fn graphs(&self) -> Result<Vec<GraphMeta>> {
        let client = self.client().await?;
        client
            .query("SELECT meta FROM graphs ORDER BY version", &[])
            .await
            .map_err(shared)?
            .iter()
            .map(|r| decode(r.try_get(0).map_err(shared)?, "graphs"))
            .collect()
    }

    async fn graph(&self, version: &str) -> Result<Option<GraphMeta>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT meta FROM graphs WHERE version = $1")
            .await
            .map_err(shared)?;
        client
            .query_opt(&stmt, &[&version])
            .await
            .map_err(shared)?
            .map(|r| decode(r.try_get(0).map_err(shared)?, "graphs"))
            .transpose()
    }

    async fn set_region_graph(&self, region: &str, version: &str) -> Result<()> {
        self.put_region_state(region, "graph", &Value::from(version))
            .await
    }

    async fn region_graph(&self, region: &str) -> Result<Option<String>> {
        match self.region_state(region, "graph").await? {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v)),
            Some(_) => Err(Error::Corrupt("region_state")),
        }
    }

    async fn rollout(&self, region: &str) -> Result<Option<RolloutRecord>> {
        self.region_state(region, "rollout")
            .await?
            .map(|v| serde_json::from_value(v).map_err(|_| Error::Corrupt("region_state")))
            .transpose()
    }

    async fn put_rollout(&self, region: &str, record: &RolloutRecord) -> Result<()> {
        let value = serde_json::to_value(record).map_err(|_| Error::Corrupt("region_state"))?;
        self.put_region_state(region, "rollout", &value).await
    }

    fn shared(&self) -> bool {
        true
    }

    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        self.take_lease(name, holder, ttl_ms).await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        self.drop_lease(name, holder).await
    }

    async fn put_windows(&self, replica: &str, samples: &[WindowSample]) -> Result<()> {
        self.insert_windows(replica, samples).await
    }

    async fn windows(&self, region: &str, since_ms: u64) -> Result<Vec<WindowSample>> {
        self.region_windows(region, since_ms).await
    }

    async fn prune_windows(&self, before_ms: u64) -> Result<()> {
        self.delete_windows(before_ms).await
    }
}
