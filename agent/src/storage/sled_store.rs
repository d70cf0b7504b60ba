//! The sled implementation of [`Store`].

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError},
};

use edgeroute_protocol::sync::EventKind;

use super::{
    Error, GraphPointers, NewPlan, NodeIdentity, Plan, Result, Store, Tenant,
    artifacts::Artifacts,
    outbox::{self, Abort, Acked, Batch, PLAN_SEQ},
};

/// A transaction's abort as a storage error.
fn tx_error(e: TransactionError<Abort>) -> Error {
    match e {
        TransactionError::Storage(e) => Error::Db(e),
        TransactionError::Abort(a) => a.into(),
    }
}

/// Where earlier versions stored graph artifacts; moved to [`Artifacts`] at open.
const LEGACY_GRAPHS: &str = "graphs";
const META: &str = "meta";
const SOURCES: &str = "graph_sources";
/// Where earlier versions stored API keys; dropped at open (keys are configuration now).
const LEGACY_API_KEYS: &str = "api_keys";
/// Reserved for the VRP plans (`GET /plans/{id}`).
pub const PLANS: &str = "plans";
/// The owner of each plan, by sequence number (see [`super::plans`]).
pub const PLAN_OWNERS: &str = "plan_owners";
/// Each owner's plans: keys are the owner id, a NUL byte and the sequence number.
pub const PLANS_BY_OWNER: &str = "plans_by_owner";

const ACTIVE: &[u8] = b"graph.active";
const PREVIOUS: &[u8] = b"graph.previous";
const DIRECTED: &[u8] = b"graph.directed";
const IDENTITY: &[u8] = b"node.identity";

/// Page cache of [`SledStore::open`] (the agent's `--db-cache-mb` default).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

/// Agent state in a sled database.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    artifacts: Artifacts,
    meta: sled::Tree,
    sources: sled::Tree,
    plans: sled::Tree,
    plan_owners: sled::Tree,
    plans_by_owner: sled::Tree,
    /// The sync outbox and its bound, when the agent syncs with a control plane.
    outbox: Option<(sled::Tree, u64)>,
}

/// How long [`SledStore::open`] waits for the database's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Open sled, waiting up to [`LOCK_WAIT`] for its file lock: sled releases it only when its
/// last IO task ends, which can be just after the handle is dropped, so a database closed
/// and opened again in one process (a restart in place) may find it still held. Held
/// longer, another process owns the directory.
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(Error::Locked(dir.to_owned()));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

impl SledStore {
    /// Open (or create) the database in `dir`, with a `DEFAULT_CACHE_BYTES` page cache.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Open (or create) the database in `dir` with a page cache of at most `cache_bytes`.
    /// sled's own default is 1 GiB; the agent keeps small values here (plans, the outbox,
    /// pointers; graph artifacts are files, see [`super::artifacts`]), so a large cache
    /// only holds on to memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let db = open_db(dir, cache_bytes)?;
        db.drop_tree(LEGACY_API_KEYS)?;
        let artifacts = Artifacts::open(dir.join("graphs"))?;
        migrate_artifacts(&db, &artifacts)?;
        Ok(Self {
            artifacts,
            meta: db.open_tree(META)?,
            sources: db.open_tree(SOURCES)?,
            plans: db.open_tree(PLANS)?,
            plan_owners: db.open_tree(PLAN_OWNERS)?,
            plans_by_owner: db.open_tree(PLANS_BY_OWNER)?,
            outbox: None,
            db,
        })
    }

    /// Record events for the control plane in an outbox of at most `max_events`.
    pub fn with_outbox(mut self, max_events: u64) -> Result<Self> {
        self.outbox = Some((self.db.open_tree(outbox::OUTBOX)?, max_events));
        Ok(self)
    }

    /// A named tree for other subsystems (e.g. [`PLANS`]).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    fn string(&self, tree: &sled::Tree, key: &[u8]) -> Result<Option<String>> {
        tree.get(key)?
            .map(|v| {
                String::from_utf8(v.to_vec()).map_err(|_| Error::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                })
            })
            .transpose()
    }
}

impl Store for SledStore {
    fn put_graph(&self, version: &str, artifact: &[u8]) -> Result<()> {
        self.artifacts.put(version, artifact)
    }

    fn graph(&self, version: &str) -> Result<Option<Vec<u8>>> {
        self.artifacts.get(version)
    }

    fn graph_versions(&self) -> Result<Vec<String>> {
        Ok(self.artifacts.versions()?.into_iter().collect())
    }

    fn delete_graph(&self, version: &str) -> Result<bool> {
        let pointers = self.graph_pointers()?;
        if pointers.active.as_deref() == Some(version)
            || pointers.previous.as_deref() == Some(version)
        {
            return Ok(false);
        }
        self.artifacts.remove(version)
    }

    fn graph_pointers(&self) -> Result<GraphPointers> {
        Ok(GraphPointers {
            active: self.string(&self.meta, ACTIVE)?,
            previous: self.string(&self.meta, PREVIOUS)?,
        })
    }

    fn activate_graph(&self, version: &str, sha256: &str, reason: &str) -> Result<GraphPointers> {
        if !self.artifacts.contains(version)? {
            return Err(Error::UnknownVersion(version.to_owned()));
        }
        let corrupt = || ConflictableTransactionError::Abort(Abort::Corrupt("graph.active"));
        let activate = |meta: &sled::transaction::TransactionalTree| {
            let old = meta.get(ACTIVE)?;
            if old.as_deref() == Some(version.as_bytes()) {
                return Ok(None);
            }
            if let Some(old) = &old {
                meta.insert(PREVIOUS, old.clone())?;
            }
            meta.insert(ACTIVE, version.as_bytes())?;
            let previous = old
                .map(|v| String::from_utf8(v.to_vec()).map_err(|_| corrupt()))
                .transpose()?;
            Ok(Some(EventKind::GraphActivated {
                version: version.to_owned(),
                sha256: sha256.to_owned(),
                previous,
                reason: reason.to_owned(),
            }))
        };
        match &self.outbox {
            None => self
                .meta
                .transaction(|meta| activate(meta).map(|_| ()))
                .map_err(tx_error)?,
            Some((tree, max)) => (&self.meta, tree)
                .transaction(|(meta, outbox)| {
                    if let Some(event) = activate(meta)? {
                        outbox::append(outbox, meta, event, *max)?;
                    }
                    Ok(())
                })
                .map_err(tx_error)?,
        }
        self.graph_pointers()
    }

    fn directed_graph(&self) -> Result<Option<String>> {
        self.string(&self.meta, DIRECTED)
    }

    fn set_directed_graph(&self, version: &str) -> Result<()> {
        self.meta.insert(DIRECTED, version.as_bytes())?;
        Ok(())
    }

    fn graph_for_source(&self, source_sha256: &str) -> Result<Option<String>> {
        self.string(&self.sources, source_sha256.as_bytes())
    }

    fn record_graph_source(&self, source_sha256: &str, version: &str) -> Result<()> {
        self.sources
            .insert(source_sha256.as_bytes(), version.as_bytes())?;
        Ok(())
    }

    fn boot(&self, node: Option<&str>) -> Result<NodeIdentity> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let stored = match self.meta.get(IDENTITY)? {
            Some(bytes) => Some(serde_json::from_slice::<NodeIdentity>(&bytes).map_err(|_| {
                Error::Corrupt {
                    key: "node.identity".into(),
                }
            })?),
            None => None,
        };
        let identity = match stored {
            Some(mut id) if node.is_none() || id.node.is_none() || id.node.as_deref() == node => {
                id.boot_count += 1;
                id.node = node.map(str::to_owned).or(id.node);
                id
            }
            _ => {
                let seed = format!(
                    "{}:{}:{}",
                    now.as_nanos(),
                    std::process::id(),
                    self.db.generate_id()?
                );
                NodeIdentity {
                    id: hex::encode(&Sha256::digest(seed.as_bytes())[..8]),
                    created_at_s: now.as_secs(),
                    boot_count: 1,
                    node: node.map(str::to_owned),
                }
            }
        };
        let bytes = serde_json::to_vec(&identity).map_err(|_| Error::Corrupt {
            key: "node.identity".into(),
        })?;
        self.meta.insert(IDENTITY, bytes)?;
        Ok(identity)
    }

    fn put_plan(&self, plan: &NewPlan, owner: Option<&str>) -> Result<Plan> {
        let created_at_ms = outbox::now_ms();
        let corrupt = || ConflictableTransactionError::Abort(Abort::Corrupt("plans.seq"));
        let store = |(plans, meta, owners, by_owner): (
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
        )| {
            let last = match meta.get(PLAN_SEQ)? {
                None => 0,
                Some(v) => {
                    u64::from_be_bytes(<[u8; 8]>::try_from(v.as_ref()).map_err(|_| corrupt())?)
                }
            };
            let seq = last + 1;
            let stored = Plan {
                id: format!("{}-{seq}", plan.node),
                seq,
                created_at_ms,
                plan: plan.clone(),
            };
            let bytes = serde_json::to_vec(&stored).map_err(|_| corrupt())?;
            meta.insert(PLAN_SEQ, &seq.to_be_bytes())?;
            plans.insert(&seq.to_be_bytes(), bytes)?;
            if let Some(owner) = owner {
                owners.insert(&seq.to_be_bytes(), owner.as_bytes())?;
                by_owner.insert(owner_key(owner, seq), &[])?;
            }
            Ok(stored)
        };
        let trees = (
            &self.plans,
            &self.meta,
            &self.plan_owners,
            &self.plans_by_owner,
        );
        match &self.outbox {
            None => trees
                .transaction(|(plans, meta, owners, by_owner)| {
                    store((plans, meta, owners, by_owner))
                })
                .map_err(tx_error),
            Some((tree, max)) => (trees.0, trees.1, trees.2, trees.3, tree)
                .transaction(|(plans, meta, owners, by_owner, outbox)| {
                    let stored = store((plans, meta, owners, by_owner))?;
                    outbox::append(
                        outbox,
                        meta,
                        EventKind::Plan {
                            plan: Box::new(stored.clone()),
                        },
                        *max,
                    )?;
                    Ok(stored)
                })
                .map_err(tx_error),
        }
    }

    fn plan(&self, seq: u64, tenant: Tenant<'_>) -> Result<Option<Plan>> {
        if let Tenant::Owner(owner) = tenant
            && self.plan_owners.get(seq.to_be_bytes())?.as_deref() != Some(owner.as_bytes())
        {
            return Ok(None);
        }
        self.plans
            .get(seq.to_be_bytes())?
            .map(|v| decode_plan(&v))
            .transpose()
    }

    fn plans_since(&self, since: u64, limit: usize, tenant: Tenant<'_>) -> Result<Vec<Plan>> {
        let Some(from) = since.checked_add(1) else {
            return Ok(Vec::new());
        };
        match tenant {
            Tenant::All => self
                .plans
                .range(from.to_be_bytes()..)
                .values()
                .take(limit)
                .map(|v| decode_plan(&v?))
                .collect(),
            // The owner's index, not a filtered scan: a key with few plans among many
            // reads only its own.
            Tenant::Owner(owner) => {
                let mut plans = Vec::new();
                let index = self
                    .plans_by_owner
                    .range(owner_key(owner, from)..=owner_key(owner, u64::MAX))
                    .keys();
                for key in index {
                    if plans.len() == limit {
                        break;
                    }
                    let seq = seq_of_owner_key(&key?)?;
                    if let Some(bytes) = self.plans.get(seq.to_be_bytes())? {
                        plans.push(decode_plan(&bytes)?);
                    }
                }
                Ok(plans)
            }
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn record_event(&self, kind: EventKind) -> Result<u64> {
        let Some((tree, max)) = &self.outbox else {
            return Ok(0);
        };
        (&self.meta, tree)
            .transaction(|(meta, outbox)| outbox::append(outbox, meta, kind.clone(), *max))
            .map_err(tx_error)
    }

    fn outbox_batch(&self, node: &str, max_events: usize, max_bytes: usize) -> Result<Batch> {
        match &self.outbox {
            Some((tree, _)) => outbox::batch(
                tree,
                &self.meta,
                node,
                || self.identity_id(),
                max_events,
                max_bytes,
            ),
            None => Ok(Batch {
                stream: self.identity_id()?,
                events: Vec::new(),
                depth: 0,
                last: 0,
                rotated: None,
            }),
        }
    }

    fn outbox_depth(&self) -> Result<u64> {
        match &self.outbox {
            Some(_) => outbox::depth(&self.meta),
            None => Ok(0),
        }
    }

    fn ack_outbox(&self, stream: &str, last_sent: u64, watermark: u64) -> Result<Acked> {
        match &self.outbox {
            Some((tree, _)) => outbox::ack(tree, &self.meta, stream, last_sent, watermark),
            None => Ok(Acked {
                depth: 0,
                rotated: None,
            }),
        }
    }
}

/// Move the artifacts an earlier version kept in sled to files, each removed from sled only
/// once its file is durable (so a crash in between moves it again), then drop the tree.
fn migrate_artifacts(db: &sled::Db, artifacts: &Artifacts) -> Result<()> {
    if !db
        .tree_names()
        .iter()
        .any(|n| n == LEGACY_GRAPHS.as_bytes())
    {
        return Ok(());
    }
    let legacy = db.open_tree(LEGACY_GRAPHS)?;
    for item in legacy.iter() {
        let (key, bytes) = item?;
        let version = String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt {
            key: LEGACY_GRAPHS.into(),
        })?;
        artifacts.put(&version, &bytes)?;
        legacy.remove(key)?;
    }
    db.flush()?;
    db.drop_tree(LEGACY_GRAPHS)?;
    Ok(())
}

impl SledStore {
    /// The node identity's id, without counting a boot (the stream id of databases written
    /// before streams had records of their own).
    fn identity_id(&self) -> Result<String> {
        let corrupt = || Error::Corrupt {
            key: "node.identity".into(),
        };
        let bytes = self.meta.get(IDENTITY)?.ok_or_else(corrupt)?;
        let identity: NodeIdentity = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
        Ok(identity.id)
    }
}

/// The [`PLANS_BY_OWNER`] key of `owner`'s plan `seq`. Key ids are hex, so the NUL
/// separator keeps one owner's keys from running into another's.
fn owner_key(owner: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + 9);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number at the end of a [`PLANS_BY_OWNER`] key.
fn seq_of_owner_key(key: &[u8]) -> Result<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt {
            key: PLANS_BY_OWNER.into(),
        })
}

fn decode_plan(bytes: &[u8]) -> Result<Plan> {
    serde_json::from_slice(bytes).map_err(|_| Error::Corrupt {
        key: "plans".into(),
    })
}

#[cfg(test)]
mod tests;
