//! The embedded [`CenterStore`]: sled, one replica.

use std::path::Path;

use async_trait::async_trait;
use edgeroute_protocol::sync::{Event, EventKind, Report};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

use super::store::{
    CenterStore, Error, GraphMeta, NodeRecord, Result, StoredPlan, advance_watermark,
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

type TxError = ConflictableTransactionError<Error>;

fn tx_get_u64(tree: &TransactionalTree, key: &[u8], what: &'static str) -> Result<u64, TxError> {
    match tree.get(key)? {
        None => Ok(0),
        Some(v) => be_u64(&v, what).map_err(ConflictableTransactionError::Abort),
    }
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
            db,
        })
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

    fn ingest_blocking(&self, report: &Report, received_at_ms: u64) -> Result<u64> {
        let record = NodeRecord {
            report: Report {
                events: Vec::new(),
                ..report.clone()
            },
            received_at_ms,
            acked_seq: 0,
        };
        // Encode outside the transaction: a closure that conflicts runs again.
        let encoded: Vec<(u64, Vec<u8>, Option<u64>)> = report
            .events
            .iter()
            .filter(|e| e.seq > 0)
            .map(|e| {
                let plan_seq = match &e.kind {
                    EventKind::Plan { plan } => Some(plan.seq),
                    _ => None,
                };
                Ok((e.seq, encode(e, "events")?, plan_seq))
            })
            .collect::<Result<_>>()?;
        let stream = report.stream.as_str();
        let node = report.node.as_str();
        let result = (&self.events, &self.streams, &self.plans, &self.nodes).transaction(
            |(events, streams, plans, nodes)| {
                let held = tx_get_u64(streams, stream.as_bytes(), "streams")?;
                for (seq, bytes, plan_seq) in &encoded {
                    if *seq <= held {
                        continue;
                    }
                    let key = seq_key(stream, *seq);
                    if events.get(&key)?.is_some() {
                        continue;
                    }
                    events.insert(key, bytes.as_slice())?;
                    if let Some(plan_seq) = plan_seq {
                        let pkey = seq_key(node, *plan_seq);
                        if plans.get(&pkey)?.is_none() {
                            plans.insert(pkey, seq_key(stream, *seq))?;
                        }
                    }
                }
                let watermark = advance_watermark(held, |s| {
                    Ok(events
                        .get(seq_key(stream, s))
                        .map_err(|_| Error::Corrupt("events"))?
                        .is_some())
                })
                .map_err(ConflictableTransactionError::Abort)?;
                streams.insert(stream.as_bytes(), &watermark.to_be_bytes())?;
                let record = NodeRecord {
                    acked_seq: watermark,
                    ..record.clone()
                };
                let bytes =
                    encode(&record, "nodes").map_err(ConflictableTransactionError::Abort)?;
                nodes.insert(node.as_bytes(), bytes)?;
                Ok(watermark)
            },
        );
        result.map_err(|e: TransactionError<Error>| match e {
            TransactionError::Storage(e) => Error::Sled(e),
            TransactionError::Abort(e) => e,
        })
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
    async fn ingest(&self, report: Report, received_at_ms: u64) -> Result<u64> {
        let watermark = self
            .blocking(move |s| s.ingest_blocking(&report, received_at_ms))
            .await?;
        // The ack promises durability: flush before it leaves.
        self.db.flush_async().await?;
        Ok(watermark)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.blocking(|s| {
            s.nodes
                .iter()
                .values()
                .map(|v| decode(&v?, "nodes"))
                .collect()
        })
        .await
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
        self.db.flush_async().await?;
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
        self.db.flush_async().await?;
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
}
