//! The embedded [`CenterStore`]: sled, one replica.

use std::path::Path;

use async_trait::async_trait;
use edgeroute_protocol::sync::{Event, EventHeader, EventKind, RawEvent, Report};

use super::store::{
    CenterStore, Error, GraphMeta, Ingested, NodeRecord, Result, RolloutRecord, StoredPlan,
    advance_watermark,
};

/// Event streams, node records, plans and graph metadata in a sled database.
#[derive(Debug, Clone)]
pub struct SledCenterStore {
    db: sled::Db,
    /// (stream, seq) -> event JSON.
    events: sled::Tree,
    /// stream -> watermark.
    streams: sled::Tree,
    /// node name -> [`NodeRecord`] JSON.
    nodes: sled::Tree,
    /// (node, plan seq) -> (stream, event seq) of the event that carried it.
    plans: sled::Tree,
    /// version -> [`GraphMeta`] JSON.
    graphs: sled::Tree,
    /// region -> desired graph version.
    regions: sled::Tree,
    /// region -> [`RolloutRecord`] JSON.
    rollouts: sled::Tree,
}

/// `name \0 seq`: ordered by name, then numerically by seq.
fn seq_key(name: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn split_seq_key(key: &[u8]) -> Option<(&str, u64)> {
    let (name, rest) = key.split_at(key.len().checked_sub(9)?);
    let (&zero, seq) = rest.split_first()?;
    (zero == 0).then_some(())?;
    Some((
        std::str::from_utf8(name).ok()?,
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|_| Error::Corrupt(what))
}

fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|_| Error::Corrupt(what))
}

fn be_u64(bytes: &[u8], what: &'static str) -> Result<u64> {
    Ok(u64::from_be_bytes(
        bytes.try_into().map_err(|_| Error::Corrupt(what))?,
    ))
}

impl SledCenterStore {
    /// Open (or create) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::open(dir)?;
        Ok(Self {
            events: db.open_tree("events")?,
            streams: db.open_tree("streams")?,
            nodes: db.open_tree("nodes")?,
            plans: db.open_tree("plans")?,
            graphs: db.open_tree("graphs")?,
            regions: db.open_tree("regions")?,
            rollouts: db.open_tree("rollouts")?,
            db,
        })
    }

    /// Make every write so far durable. Not `flush_async`: it runs the flush on sled's own
    /// small thread pool, where it waits for the log buffer writes that the same pool must
    /// perform; with a few hundred reports in flight every pool thread waited in a flush and
    /// the center stopped for good (fleet-sim, docs/scale.md). A blocking flush on tokio's
    /// blocking pool leaves sled's pool free to write.
    async fn flush(&self) -> Result<()> {
        self.blocking(|s| {
            s.db.flush()?;
            Ok(())
        })
        .await
    }

    /// Run blocking sled work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|_| Error::Task)?
    }

    /// No multi-tree transaction is needed, and sled's would cost most of the time of a
    /// large batch: an event's bytes never change (first write wins), the watermark is
    /// derived from the events actually stored and written after them, and sled recovers a
    /// prefix of its log, so after any crash the stored watermark never covers a missing
    /// event. Nothing is acknowledged before the caller's flush.
    fn ingest_blocking(
        &self,
        report: Report<RawEvent>,
        headers: &[EventHeader],
        received_at_ms: u64,
    ) -> Result<Ingested> {
        let stream = report.stream.as_str();
        let node = report.node.as_str();
        let held = match self.streams.get(stream.as_bytes())? {
            Some(v) => be_u64(&v, "streams")?,
            None => 0,
        };
        // Plain inserts, not `sled::Batch`: `apply_batch` takes sled's process-wide
        // concurrency-control write lock, which switches every later read to a shared
        // RwLock, and under a few hundred concurrent reports the center then deadlocked
        // (every blocking thread parked in `concurrency_control::read`; fleet-sim, see
        // docs/scale.md). Atomicity across keys is not needed: see above.
        let mut events: Vec<(Vec<u8>, &[u8])> = Vec::new();
        let mut plans: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // Sequence numbers this report brings that are not stored yet.
        let mut added = std::collections::BTreeSet::new();
        for (header, raw) in headers.iter().zip(&report.events) {
            if header.seq <= held || header.seq == 0 || added.contains(&header.seq) {
                continue;
            }
            let key = seq_key(stream, header.seq);
            if self.events.contains_key(&key)? {
                continue;
            }
            if let Some(plan) = header.plan {
                let pkey = seq_key(node, plan.seq);
                if !self.plans.contains_key(&pkey)? {
                    plans.push((pkey, key.clone()));
                }
            }
            events.push((key, raw.get().as_bytes()));
            added.insert(header.seq);
        }
        // The plan index first: an index entry whose event is not stored yet is invisible
        // (the plan is listed once the event lands), while an event without its index
        // entry would never be listed, because a retry skips stored events.
        for (pkey, pointer) in plans {
            self.plans.insert(pkey, pointer)?;
        }
        for (key, bytes) in events {
            self.events.insert(key, bytes)?;
        }
        let watermark = advance_watermark(held, |s| {
            Ok(added.contains(&s) || self.events.contains_key(seq_key(stream, s))?)
        })?;
        // Concurrent reports of one stream (a retry racing its original) both derive a
        // valid watermark; keep the larger, and answer with it: a smaller answer than one
        // already given would tell the agent the center lost events.
        let before = self.streams.fetch_and_update(stream.as_bytes(), |old| {
            let old = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes);
            Some(old.max(watermark).to_be_bytes().to_vec())
        })?;
        let watermark = before
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(watermark, |old| watermark.max(u64::from_be_bytes(old)));
        let record = NodeRecord {
            report: report.without_events(),
            received_at_ms,
            acked_seq: watermark,
        };
        self.nodes
            .insert(record.report.node.as_bytes(), encode(&record, "nodes")?)?;
        Ok(Ingested { held, watermark })
    }

    /// Every node record, read synchronously (what the center's fleet view loads at start).
    pub fn node_records(&self) -> Result<Vec<NodeRecord>> {
        self.nodes
            .iter()
            .values()
            .map(|v| decode(&v?, "nodes"))
            .collect()
    }

    fn stored_plan(&self, node: &str, pointer: &[u8]) -> Result<Option<StoredPlan>> {
        let Some(bytes) = self.events.get(pointer)? else {
            return Ok(None);
        };
        let event: Event = decode(&bytes, "events")?;
        let EventKind::Plan { plan } = event.kind else {
            return Err(Error::Corrupt("plans"));
        };
        Ok(Some(StoredPlan {
            node: node.to_owned(),
            event_seq: event.seq,
            plan: *plan,
        }))
    }
}

#[async_trait]
impl CenterStore for SledCenterStore {
    async fn ingest(
        &self,
        report: Report<RawEvent>,
        headers: Vec<EventHeader>,
        received_at_ms: u64,
    ) -> Result<Ingested> {
        let ingested = self
            .blocking(move |s| s.ingest_blocking(report, &headers, received_at_ms))
            .await?;
        // The ack promises durability: flush before it leaves.
        self.flush().await?;
        Ok(ingested)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.blocking(|s| s.node_records()).await
    }

    async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        let name = name.to_owned();
        self.blocking(move |s| {
            s.nodes
                .get(name.as_bytes())?
                .map(|v| decode(&v, "nodes"))
                .transpose()
        })
        .await
    }

    async fn forget_node(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.blocking(move |s| {
            let existed = s.nodes.remove(name.as_bytes())?.is_some();
            s.db.flush()?;
            Ok(existed)
        })
        .await
    }

    async fn plans(&self, node: Option<&str>, since: u64, limit: usize) -> Result<Vec<StoredPlan>> {
        let node = node.map(str::to_owned);
        self.blocking(move |s| {
            let mut out = Vec::new();
            let iter = match &node {
                Some(n) => {
                    let Some(from) = since.checked_add(1) else {
                        return Ok(out);
                    };
                    s.plans.range(seq_key(n, from)..=seq_key(n, u64::MAX))
                }
                None => s.plans.iter(),
            };
            for item in iter {
                if out.len() >= limit {
                    break;
                }
                let (key, pointer) = item?;
                let (name, seq) = split_seq_key(&key).ok_or(Error::Corrupt("plans"))?;
                if seq <= since {
                    continue;
                }
                if let Some(plan) = s.stored_plan(name, &pointer)? {
                    out.push(plan);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn latest_plans(&self, node: &str, since: u64, limit: usize) -> Result<Vec<StoredPlan>> {
        let node = node.to_owned();
        self.blocking(move |s| {
            let mut out = Vec::new();
            let Some(from) = since.checked_add(1) else {
                return Ok(out);
            };
            for item in s
                .plans
                .range(seq_key(&node, from)..=seq_key(&node, u64::MAX))
                .rev()
            {
                if out.len() >= limit {
                    break;
                }
                let (_, pointer) = item?;
                if let Some(plan) = s.stored_plan(&node, &pointer)? {
                    out.push(plan);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn plan(&self, node: &str, seq: u64) -> Result<Option<StoredPlan>> {
        let node = node.to_owned();
        self.blocking(move |s| match s.plans.get(seq_key(&node, seq))? {
            Some(pointer) => s.stored_plan(&node, &pointer),
            None => Ok(None),
        })
        .await
    }

    async fn events(&self, stream: &str, since: u64, limit: usize) -> Result<Vec<Event>> {
        let stream = stream.to_owned();
        self.blocking(move |s| {
            let Some(from) = since.checked_add(1) else {
                return Ok(Vec::new());
            };
            s.events
                .range(seq_key(&stream, from)..=seq_key(&stream, u64::MAX))
                .values()
                .take(limit)
                .map(|v| decode(&v?, "events"))
                .collect()
        })
        .await
    }

    async fn put_graph(&self, meta: GraphMeta) -> Result<()> {
        self.blocking(move |s| {
            s.graphs
                .insert(meta.version.as_bytes(), encode(&meta, "graphs")?)?;
            Ok(())
        })
        .await?;
        self.flush().await?;
        Ok(())
    }

    async fn graphs(&self) -> Result<Vec<GraphMeta>> {
        self.blocking(|s| {
            s.graphs
                .iter()
                .values()
                .map(|v| decode(&v?, "graphs"))
                .collect()
        })
        .await
    }

    async fn graph(&self, version: &str) -> Result<Option<GraphMeta>> {
        let version = version.to_owned();
        self.blocking(move |s| {
            s.graphs
                .get(version.as_bytes())?
                .map(|v| decode(&v, "graphs"))
                .transpose()
        })
        .await
    }

    async fn set_region_graph(&self, region: &str, version: &str) -> Result<()> {
        let (region, version) = (region.to_owned(), version.to_owned());
        self.blocking(move |s| {
            s.regions.insert(region.as_bytes(), version.as_bytes())?;
            Ok(())
        })
        .await?;
        self.flush().await?;
        Ok(())
    }

    async fn region_graph(&self, region: &str) -> Result<Option<String>> {
        let region = region.to_owned();
        self.blocking(move |s| {
            s.regions
                .get(region.as_bytes())?
                .map(|v| String::from_utf8(v.to_vec()).map_err(|_| Error::Corrupt("regions")))
                .transpose()
        })
        .await
    }

    async fn rollout(&self, region: &str) -> Result<Option<RolloutRecord>> {
        let region = region.to_owned();
        self.blocking(move |s| {
            s.rollouts
                .get(region.as_bytes())?
                .map(|v| serde_json::from_slice(&v).map_err(|_| Error::Corrupt("rollouts")))
                .transpose()
        })
        .await
    }

    async fn put_rollout(&self, region: &str, record: &RolloutRecord) -> Result<()> {
        let region = region.to_owned();
        let json = serde_json::to_vec(record).map_err(|_| Error::Corrupt("rollouts"))?;
        self.blocking(move |s| {
            s.rollouts.insert(region.as_bytes(), json)?;
            Ok(())
        })
        .await?;
        self.flush().await?;
        Ok(())
    }
}
