//! Group commit: the reports that arrive together are ingested in one transaction, so a
//! replica pays one commit (one WAL flush) per batch instead of one per report.
//!
//! Reports are queued to a few committer tasks. A committer takes every report waiting
//! (and those arriving within [`BatchOptions::window`]), while the others are committing:
//! under load the batches grow by themselves, and a lone report waits at most the window.
//! One batch holds at most one report per stream and per node (the rows it upserts);
//! later ones of the same stream go into a following transaction of the same committer.
//!
//! What a batch keeps from the one-report transaction: events are inserted with
//! `ON CONFLICT DO NOTHING` keyed by (stream, seq); each stream's row is locked by the
//! batch's first statement, in stream order (so two batches never wait on each other in
//! a cycle), and its contiguous watermark is computed and written in the transaction; no
//! report is answered before `COMMIT` returns. A batch the database aborts for a conflict
//! is retried whole; any other failure sends each of its reports through its own
//! transaction, so one report the database refuses never fails the others. When no
//! connection can be had at all, the reports fail at once (503: the agents retry).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::GenericClient;
use edgeroute_protocol::sync::{EventHeader, RawEvent, Report};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    ADVANCE_PAGE, CONFLICT_RETRIES, PgCenterStore, encode, is_conflict, ms,
    schema::{from_db, to_db},
    shared, without_events,
};
use crate::sync::store::{Error, Ingested, NodeRecord, Result, advance_watermark};

/// How reports are grouped into transactions.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Most reports in one transaction (1: a transaction per report).
    pub max_reports: usize,
    /// How long a committer waits for more reports after the first (zero: only those
    /// already queued).
    pub window: Duration,
    /// Committers at once; each holds one pooled connection while it commits.
    pub committers: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_reports: 128,
            window: Duration::from_millis(2),
            committers: 4,
        }
    }
}

/// What the committers did, for tests and measurements.
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    reports: AtomicU64,
    fallbacks: AtomicU64,
}

/// A copy of [`BatchStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchCounts {
    /// Transactions committed with more than one report.
    pub batches: u64,
    /// Reports those transactions carried.
    pub reports: u64,
    /// Batches that failed and were ingested report by report instead.
    pub fallbacks: u64,
}

impl BatchStats {
    /// The counts so far.
    pub fn counts(&self) -> BatchCounts {
        BatchCounts {
            batches: self.batches.load(Ordering::Relaxed),
            reports: self.reports.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// One report waiting for its transaction.
struct Job {
    report: Report<RawEvent>,
    headers: Vec<EventHeader>,
    received_at_ms: u64,
    reply: oneshot::Sender<Result<Ingested>>,
}

/// The queue to the committers (they stop when it is dropped).
pub(super) struct Batcher {
    queue: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// Start the committers; `store` must not batch itself (it is their one-report path).
    pub(super) fn start(store: PgCenterStore, options: &BatchOptions) -> Self {
        let max = options.max_reports.max(1);
        // Bounded: the center's admission limit keeps it far from full; if it ever is,
        // ingests wait here rather than queue without end.
        let (queue, rx) = mpsc::channel(max.saturating_mul(16));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(BatchStats::default());
        for _ in 0..options.committers.max(1) {
            tokio::spawn(commit_loop(
                store.clone(),
                rx.clone(),
                max,
                options.window,
                stats.clone(),
            ));
        }
        Self { queue, stats }
    }

    pub(super) fn stats(&self) -> BatchCounts {
        self.stats.counts()
    }

    /// Queue a report and wait for its transaction's outcome.
    pub(super) async fn ingest(
        &self,
        report: Report<RawEvent>,
        headers: Vec<EventHeader>,
        received_at_ms: u64,
    ) -> Result<Ingested> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                report,
                headers,
                received_at_ms,
                reply,
            })
            .await
            .map_err(|_| Error::Task)?;
        answer.await.map_err(|_| Error::Task)?
    }
}

async fn commit_loop(
    store: PgCenterStore,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max: usize,
    window: Duration,
    stats: Arc<BatchStats>,
) {
    loop {
        let jobs = {
            // One committer gathers at a time; the others are committing meanwhile.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut jobs = vec![first];
            let deadline = tokio::time::Instant::now() + window;
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) if window.is_zero() => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(job)) => jobs.push(job),
                            _ => break,
                        }
                    }
                }
            }
            jobs
        };
        for round in rounds(jobs, |j| (j.report.stream.as_str(), j.report.node.as_str())) {
            commit(&store, round, &stats).await;
        }
    }
}

/// Split `items` into transactions in which no stream and no node (`key`) appears twice,
/// keeping the order of each stream's and node's reports.
fn rounds<T>(items: Vec<T>, key: impl Fn(&T) -> (&str, &str)) -> Vec<Vec<T>> {
    let mut rounds: Vec<(HashSet<String>, HashSet<String>, Vec<T>)> = Vec::new();
    for item in items {
        let (stream, node) = key(&item);
        // After the last round holding this stream or node, to keep their order.
        let after = rounds
            .iter()
            .rposition(|(streams, nodes, _)| streams.contains(stream) || nodes.contains(node))
            .map_or(0, |i| i + 1);
        let (stream, node) = (stream.to_owned(), node.to_owned());
        if after == rounds.len() {
            rounds.push((HashSet::new(), HashSet::new(), Vec::new()));
        }
        let (streams, nodes, round) = &mut rounds[after];
        streams.insert(stream);
        nodes.insert(node);
        round.push(item);
    }
    rounds.into_iter().map(|(_, _, round)| round).collect()
}

/// Whether the failure happened before any statement ran: no connection could be had,
/// so one transaction per report would only fail the same way, later.
fn no_connection(err: &Error) -> bool {
    let Error::Shared(e) = err else { return false };
    e.downcast_ref::<deadpool_postgres::PoolError>().is_some()
}

async fn commit(store: &PgCenterStore, jobs: Vec<Job>, stats: &BatchStats) {
    if let [_] = jobs.as_slice() {
        for job in jobs {
            let result = store
                .ingest_retrying(&job.report, &job.headers, job.received_at_ms)
                .await;
            let _ = job.reply.send(result);
        }
        return;
    }
    let mut attempt = 0;
    let failure = loop {
        match ingest_batch(store, &jobs).await {
            Ok(watermarks) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .reports
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (job, ingested) in jobs.into_iter().zip(watermarks) {
                    let _ = job.reply.send(Ok(ingested));
                }
                return;
            }
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => break e,
        }
    };
    if no_connection(&failure) {
        for job in jobs {
            let _ = job
                .reply
                .send(Err(Error::Shared(Box::new(std::io::Error::other(
                    "no database connection for the batch",
                )))));
        }
        return;
    }
    tracing::warn!(
        error = format!("{:#}", anyhow::Error::new(failure)),
        reports = jobs.len(),
        "batched ingest failed; ingesting its reports one by one"
    );
    stats.fallbacks.fetch_add(1, Ordering::Relaxed);
    futures::future::join_all(jobs.into_iter().map(|job| async move {
        let result = store
            .ingest_retrying(&job.report, &job.headers, job.received_at_ms)
            .await;
        let _ = job.reply.send(result);
    }))
    .await;
}

/// One transaction for every report of `jobs` (distinct streams and nodes); each one's
/// watermark, in order, once committed.
async fn ingest_batch(store: &PgCenterStore, jobs: &[Job]) -> Result<Vec<Ingested>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(shared)?;
    // Locked in one order by every batch and by the one-report path's single lock.
    let mut streams: Vec<&str> = jobs.iter().map(|j| j.report.stream.as_str()).collect();
    streams.sort_unstable();
    let lock = tx
        .prepare_cached(
            "INSERT INTO streams (stream, watermark) \
             SELECT s, $2 FROM unnest($1::text[]) WITH ORDINALITY AS t(s, i) ORDER BY i \
             ON CONFLICT (stream) DO UPDATE SET watermark = streams.watermark \
             RETURNING stream, watermark",
        )
        .await
        .map_err(shared)?;
    let mut held = HashMap::with_capacity(jobs.len());
    for row in tx
        .query(&lock, &[&streams, &to_db(0)])
        .await
        .map_err(shared)?
    {
        let stream: String = row.try_get(0).map_err(shared)?;
        held.insert(stream, from_db(row.try_get(1).map_err(shared)?));
    }

    let (mut ev_streams, mut ev_seqs, mut ev_bodies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pl_nodes, mut pl_seqs, mut pl_streams, mut pl_events) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for job in jobs {
        let stream = job.report.stream.as_str();
        let below = *held.get(stream).ok_or(Error::Corrupt("streams"))?;
        let mut added = BTreeSet::new();
        for (header, raw) in job.headers.iter().zip(&job.report.events) {
            if header.seq <= below || !added.insert(header.seq) {
                continue;
            }
            ev_streams.push(stream);
            ev_seqs.push(to_db(header.seq));
            ev_bodies.push(raw.get());
            if let Some(plan) = header.plan {
                pl_nodes.push(job.report.node.as_str());
                pl_seqs.push(to_db(plan.seq));
                pl_streams.push(stream);
                pl_events.push(to_db(header.seq));
            }
        }
    }
    if !ev_seqs.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO events (stream, seq, body) \
                 SELECT s, q, b FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(s, q, b) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(shared)?;
        tx.execute(&insert, &[&ev_streams, &ev_seqs, &ev_bodies])
            .await
            .map_err(shared)?;
    }
    if !pl_seqs.is_empty() {
        // First writer wins, as for events: a retry never re-points a plan.
        let insert = tx
            .prepare_cached(
                "INSERT INTO plans (node, seq, stream, event_seq) \
                 SELECT n, s, st, e FROM \
                 unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS t(n, s, st, e) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(shared)?;
        tx.execute(&insert, &[&pl_nodes, &pl_seqs, &pl_streams, &pl_events])
            .await
            .map_err(shared)?;
    }

    // Every stream's first page of events above its watermark, in one round trip.
    let held_seqs: Vec<i64> = streams
        .iter()
        .map(|s| held.get(*s).copied().map(to_db))
        .collect::<Option<_>>()
        .ok_or(Error::Corrupt("streams"))?;
    let pages = tx
        .prepare_cached(
            "SELECT t.s, e.seq FROM unnest($1::text[], $2::bigint[]) AS t(s, h) \
             CROSS JOIN LATERAL (SELECT seq FROM events \
                 WHERE stream = t.s AND seq > t.h ORDER BY seq LIMIT $3) AS e",
        )
        .await
        .map_err(shared)?;
    let mut stored: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for row in tx
        .query(&pages, &[&streams, &held_seqs, &ADVANCE_PAGE])
        .await
        .map_err(shared)?
    {
        let stream: String = row.try_get(0).map_err(shared)?;
        let seq: i64 = row.try_get(1).map_err(shared)?;
        stored.entry(stream).or_default().insert(from_db(seq));
    }
    let mut watermark = HashMap::with_capacity(streams.len());
    let (mut moved_streams, mut moved_to) = (Vec::new(), Vec::new());
    for stream in &streams {
        let below = held[*stream];
        let page = stored.remove(*stream).unwrap_or_default();
        let mut w = advance_watermark(below, |s| Ok(page.contains(&s)))?;
        // A full page walked to its end may continue: the one-report path pages on.
        if page.len() as i64 >= ADVANCE_PAGE && page.last() == Some(&w) {
            w = store.advance(&tx, stream, w).await?;
        }
        if w != below {
            moved_streams.push(*stream);
            moved_to.push(to_db(w));
        }
        watermark.insert(*stream, w);
    }
    if !moved_streams.is_empty() {
        let update = tx
            .prepare_cached(
                "UPDATE streams SET watermark = t.w \
                 FROM unnest($1::text[], $2::bigint[]) AS t(s, w) WHERE streams.stream = t.s",
            )
            .await
            .map_err(shared)?;
        tx.execute(&update, &[&moved_streams, &moved_to])
            .await
            .map_err(shared)?;
    }

    let mut acked = Vec::with_capacity(jobs.len());
    let (mut nodes, mut records, mut received, mut acked_db) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for job in jobs {
        let w = *watermark
            .get(job.report.stream.as_str())
            .ok_or(Error::Corrupt("streams"))?;
        let record = NodeRecord {
            report: without_events(&job.report),
            received_at_ms: job.received_at_ms,
            acked_seq: w,
        };
        nodes.push(job.report.node.as_str());
        records.push(encode(&record, "nodes")?);
        received.push(ms(job.received_at_ms));
        acked_db.push(to_db(w));
        let before = *held
            .get(job.report.stream.as_str())
            .ok_or(Error::Corrupt("streams"))?;
        acked.push(Ingested {
            held: before,
            watermark: w,
        });
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO nodes (node, record, received_at_ms, acked_seq) \
             SELECT n, r, a, w FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                 AS t(n, r, a, w) \
             ON CONFLICT (node) DO UPDATE SET record = excluded.record, \
             received_at_ms = excluded.received_at_ms, acked_seq = excluded.acked_seq",
        )
        .await
        .map_err(shared)?;
    tx.execute(&upsert, &[&nodes, &records, &received, &acked_db])
        .await
        .map_err(shared)?;
    // The acks promise durability: nothing leaves before the commit does.
    tx.commit().await.map_err(shared)?;
    Ok(acked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_or_node_appears_once_per_transaction_in_arrival_order() {
        let jobs = vec![
            ("a1", "a"),
            ("b1", "b"),
            ("a1", "a"), // a retry of a's report
            ("c1", "c"),
            ("a2", "a"), // a's new stream after a restart
            ("b1", "b"),
        ];
        let streams: Vec<Vec<&str>> = rounds(jobs, |&(s, n)| (s, n))
            .iter()
            .map(|r| r.iter().map(|(s, _)| *s).collect())
            .collect();
        assert_eq!(
            streams,
            [vec!["a1", "b1", "c1"], vec!["a1", "b1"], vec!["a2"]]
        );
    }
}
