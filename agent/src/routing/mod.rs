//! The graph being served and how it changes.
//!
//! [`GraphHolder`] keeps the active [`Graph`] in an [`ArcSwapOption`]: a request loads an
//! `Arc<Graph>` once and keeps it until it finishes, so an atomic swap never disturbs an
//! in-flight request, and the old graph is freed when its last request drops it.
//! [`GraphService`] verifies, stores and activates artifacts (startup, upload, rollback).
//!
//! # What is kept
//!
//! The most recently activated version stays active across restarts: `--map` and `--graph`
//! only seed an empty store, unless `--force-graph` says to activate them again. After
//! each activation the stored versions are pruned to the active one, the previous one (the
//! rollback target) and the one the control plane's last directive named; the rest are
//! deleted.
//!
//! Nothing here knows HTTP: the API turns [`Error`]s into responses and shapes engine
//! results into OSRM objects itself (`api::osrm`).

pub mod matrix;
pub mod profiles;
pub mod shadow;
pub mod spool;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwapOption;
use edgeroute_engine::{BuildOptions, CarProfile, Graph};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::{
    metrics::Metrics,
    storage::{self, GraphPointers, Store},
};

/// Why a graph could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The artifact failed verification (magic, format version, length, payload digest).
    #[error("invalid graph artifact")]
    InvalidArtifact(#[source] edgeroute_engine::Error),
    /// The engine failed to import or prepare a map.
    #[error("cannot build the graph from {path}")]
    Import {
        /// The OSM file.
        path: PathBuf,
        /// Why.
        #[source]
        source: edgeroute_engine::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A different artifact is already stored under this version label.
    #[error("graph version {0:?} is already stored with a different sha256")]
    VersionConflict(String),
    /// There is no previous version to roll back to.
    #[error("no previous graph version to roll back to")]
    NoPrevious,
    /// The database failed.
    #[error("graph storage failed")]
    Storage(#[from] storage::Error),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// A profile name that cannot name an extra profile (see `profiles::valid_name`).
    #[error(
        "{0:?} is not a profile name for an extra graph: use 1 to 32 of a-z, 0-9, _ and - (car and driving name the default graph)"
    )]
    ProfileName(String),
    /// The artifact was built for another profile.
    #[error("the artifact was built for the {built_for} profile, not {name}")]
    ProfileMismatch {
        /// The profile it was to be installed as.
        name: String,
        /// The profile recorded in the artifact.
        built_for: String,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("a lock was poisoned")]
    Poisoned,
}

/// Result alias for graph management.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The graph being served, swappable atomically.
#[derive(Debug, Default)]
pub struct GraphHolder {
    current: ArcSwapOption<Graph>,
}

impl GraphHolder {
    /// The graph to answer one request with (`None` before the first load).
    pub fn get(&self) -> Option<Arc<Graph>> {
        self.current.load_full()
    }

    /// Replace the graph; returns the previous one.
    pub fn swap(&self, graph: Arc<Graph>) -> Option<Arc<Graph>> {
        self.current.swap(Some(graph))
    }
}

/// What was activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    /// Version now served.
    pub version: String,
    /// Its identity, the sha256 (hex) of its artifact.
    pub sha256: String,
    /// Version served before (rollback target).
    pub previous: Option<String>,
}

/// Verifies, stores and activates graphs. Changes are serialised by a lock; serving never
/// waits on it.
pub struct GraphService {
    holder: Arc<GraphHolder>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    changes: Mutex<()>,
    spool_dir: PathBuf,
}

impl std::fmt::Debug for GraphService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphService").finish_non_exhaustive()
    }
}

/// Where the first graph comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Import this OSM file unless an import of identical content is stored.
    Map {
        /// The PBF file.
        path: PathBuf,
        /// Version label (default: file stem + content hash).
        version: Option<String>,
    },
    /// Load, store and activate this artifact.
    Artifact(PathBuf),
    /// Serve the active version stored in the database.
    Stored,
}

impl GraphService {
    /// A service over a holder, a store and the metrics it updates.
    pub fn new(holder: Arc<GraphHolder>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            holder,
            store,
            metrics,
            changes: Mutex::new(()),
            spool_dir: std::env::temp_dir(),
        }
    }

    /// Spool streamed uploads into `dir` (default: the system's temporary directory). The
    /// agent puts it under its data directory, where the graphs end up anyway.
    #[must_use]
    pub fn with_spool_dir(mut self, dir: PathBuf) -> Self {
        self.spool_dir = dir;
        self
    }

    /// Where streamed uploads are spooled.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// The holder requests read from.
    pub fn holder(&self) -> &Arc<GraphHolder> {
        &self.holder
    }

    /// Stored versions and pointers.
    pub async fn versions(&self) -> Result<(GraphPointers, Vec<String>)> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || {
            Ok::<_, storage::Error>((store.graph_pointers()?, store.graph_versions()?))
        })
        .await??)
    }

    /// Load the first graph. Returns `None` when there is nothing to serve yet.
    ///
    /// A map or an artifact only seeds an empty store: once a version is active, it is what
    /// is served after a restart (an upload or a directive may have replaced the seed),
    /// unless `force` says to activate the given source again.
    pub async fn load_initial(&self, source: Source, force: bool) -> Result<Option<Activated>> {
        let _guard = self.changes.lock().await;
        let store = self.store.clone();
        let spool_dir = self.spool_dir.clone();
        let graph = tokio::task::spawn_blocking(move || -> Result<Option<(Graph, &str)>> {
            spool::remove_stale(&spool_dir);
            let source = match source {
                Source::Map { .. } | Source::Artifact(_) if !force => {
                    match store.graph_pointers()?.active {
                        Some(active) => {
                            tracing::info!(
                                version = %active,
                                "serving the stored active graph; --map and --graph only seed an \
                                 empty store (--force-graph activates them again)"
                            );
                            Source::Stored
                        }
                        None => source,
                    }
                }
                source => source,
            };
            let reason = match &source {
                Source::Map { .. } => "map",
                Source::Artifact(_) => "artifact",
                Source::Stored => "stored",
            };
            let graph = load_source(store.as_ref(), source)?;
            Ok(graph.map(|graph| (graph, reason)))
        })
        .await??;
        let Some((graph, reason)) = graph else {
            return Ok(None);
        };
        let store = self.store.clone();
        let version = graph.info().version.clone();
        let sha256 = graph.sha256().to_owned();
        let pointers = tokio::task::spawn_blocking(move || {
            let pointers = store.activate_graph(&version, &sha256, reason)?;
            prune(store.as_ref(), &pointers)?;
            store.flush()?;
            Ok::<_, storage::Error>(pointers)
        })
        .await??;
        Ok(Some(self.install(Arc::new(graph), pointers)))
    }

    /// Verify an artifact, store it and swap it in; `reason` is recorded with the change
    /// (`upload`, `directive`). Generic over the byte buffer so the caller's (say, a request
    /// body) is used without a copy.
    pub async fn upload<B>(&self, bytes: B, reason: &'static str) -> Result<Activated>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let _guard = self.changes.lock().await;
        let store = self.store.clone();
        let (graph, pointers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = bytes.as_ref();
            activate_bytes(store.as_ref(), bytes, reason)
        })
        .await??;
        Ok(self.install(Arc::new(graph), pointers))
    }

    /// [`GraphService::upload`] from a spooled file (see [`spool`]), which is deleted
    /// afterwards whatever happens.
    pub async fn upload_spooled(
        &self,
        spooled: spool::Spooled,
        reason: &'static str,
    ) -> Result<Activated> {
        let _guard = self.changes.lock().await;
        let store = self.store.clone();
        let (graph, pointers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = std::fs::read(spooled.path()).map_err(|source| Error::Read {
                path: spooled.path().to_owned(),
                source,
            })?;
            drop(spooled);
            activate_bytes(store.as_ref(), &bytes, reason)
        })
        .await??;
        Ok(self.install(Arc::new(graph), pointers))
    }

    /// Swap back to the previous version.
    pub async fn rollback(&self) -> Result<Activated> {
        let _guard = self.changes.lock().await;
        let store = self.store.clone();
        let (graph, pointers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let previous = store.graph_pointers()?.previous.ok_or(Error::NoPrevious)?;
            let bytes = store
                .graph(&previous)?
                .ok_or_else(|| storage::Error::UnknownVersion(previous.clone()))?;
            let graph = Graph::from_artifact(&bytes).map_err(Error::InvalidArtifact)?;
            let pointers = store.activate_graph(&previous, graph.sha256(), "rollback")?;
            prune(store.as_ref(), &pointers)?;
            store.flush()?;
            Ok((graph, pointers))
        })
        .await??;
        Ok(self.install(Arc::new(graph), pointers))
    }

    fn install(&self, graph: Arc<Graph>, pointers: GraphPointers) -> Activated {
        let info = graph.info();
        // Known already: every graph installed here was decoded or encoded just before.
        let sha256 = graph.sha256();
        let activated = Activated {
            version: info.version.clone(),
            sha256: sha256.to_owned(),
            previous: pointers.previous,
        };
        self.metrics
            .graph_activated(&info.version, sha256, info.node_count);
        tracing::info!(
            version = %activated.version,
            sha256 = %activated.sha256,
            nodes = info.node_count,
            edges = info.edge_count,
            "graph activated"
        );
        self.holder.swap(graph);
        activated
    }
}

/// Read, import or store the graph of `source` (blocking).
fn load_source(store: &dyn Store, source: Source) -> Result<Option<Graph>> {
    match source {
        Source::Stored => {
            let Some(version) = store.graph_pointers()?.active else {
                return Ok(None);
            };
            let bytes = store
                .graph(&version)?
                .ok_or(storage::Error::UnknownVersion(version))?;
            let graph = Graph::from_artifact(&bytes).map_err(Error::InvalidArtifact)?;
            Ok(Some(graph))
        }
        Source::Artifact(path) => {
            let bytes = std::fs::read(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let graph = Graph::from_artifact(&bytes).map_err(Error::InvalidArtifact)?;
            store_graph(store, &graph, &bytes)?;
            Ok(Some(graph))
        }
        Source::Map { path, version } => {
            let pbf = std::fs::read(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let source_sha = hex::encode(Sha256::digest(&pbf));
            drop(pbf);
            if let Some(stored) = store.graph_for_source(&source_sha)?
                && let Some(bytes) = store.graph(&stored)?
            {
                tracing::info!(version = %stored, "map already imported; serving the stored graph");
                let graph = Graph::from_artifact(&bytes).map_err(Error::InvalidArtifact)?;
                return Ok(Some(graph));
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("map")
                .trim_end_matches(".osm");
            let version = version.unwrap_or_else(|| format!("{stem}-{}", &source_sha[..12]));
            tracing::info!(map = %path.display(), %version, "importing and preprocessing the map");
            let started = std::time::Instant::now();
            let options = BuildOptions {
                version,
                ..BuildOptions::default()
            };
            let graph = Graph::from_osm_file(&path, &CarProfile::default(), &options).map_err(
                |source| Error::Import {
                    path: path.clone(),
                    source,
                },
            )?;
            tracing::info!(elapsed_s = started.elapsed().as_secs_f64(), "map imported");
            let bytes = graph.to_artifact();
            store_graph(store, &graph, &bytes)?;
            store.record_graph_source(&source_sha, &graph.info().version)?;
            store.flush()?;
            Ok(Some(graph))
        }
    }
}

/// Why a graph directive activates a version: the version it names is kept by `prune`.
pub const DIRECTIVE: &str = "directive";

/// Verify, store and activate an artifact, then prune; `reason` as in
/// [`GraphService::upload`].
fn activate_bytes(
    store: &dyn Store,
    bytes: &[u8],
    reason: &'static str,
) -> Result<(Graph, GraphPointers)> {
    let graph = Graph::from_artifact(bytes).map_err(Error::InvalidArtifact)?;
    store_graph(store, &graph, bytes)?;
    let version = &graph.info().version;
    if reason == DIRECTIVE {
        store.set_directed_graph(version)?;
    }
    let pointers = store.activate_graph(version, graph.sha256(), reason)?;
    prune(store, &pointers)?;
    store.flush()?;
    Ok((graph, pointers))
}

/// Delete every stored version but the active one, the previous one (the rollback target)
/// and the one the control plane's last directive named, which it may direct again.
fn prune(store: &dyn Store, pointers: &GraphPointers) -> storage::Result<()> {
    let directed = store.directed_graph()?;
    let keep = [&pointers.active, &pointers.previous, &directed];
    for version in store.graph_versions()? {
        if keep.iter().all(|k| k.as_deref() != Some(version.as_str())) {
            store.delete_graph(&version)?;
            tracing::info!(%version, "stored graph version deleted (neither active, previous nor directed)");
        }
    }
    Ok(())
}

/// Store `bytes` under the graph's version unless an identical artifact is there already.
fn store_graph(store: &dyn Store, graph: &Graph, bytes: &[u8]) -> Result<()> {
    let version = &graph.info().version;
    if let Some(existing) = store.graph(version)? {
        if existing == bytes {
            return Ok(());
        }
        return Err(Error::VersionConflict(version.clone()));
    }
    store.put_graph(version, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStore;

    #[test]
    fn pruning_keeps_active_previous_and_directed_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for v in ["v1", "v2", "v3", "v4", "v5"] {
            store.put_graph(v, v.as_bytes()).unwrap();
        }
        store.set_directed_graph("v2").unwrap();
        store.activate_graph("v4", "sha", "upload").unwrap();
        let pointers = store.activate_graph("v5", "sha", "upload").unwrap();
        prune(&store, &pointers).unwrap();
        assert_eq!(store.graph_versions().unwrap(), ["v2", "v4", "v5"]);
        // A later directive moves the pin: the old directed version goes with the next prune.
        store.set_directed_graph("v5").unwrap();
        prune(&store, &pointers).unwrap();
        assert_eq!(store.graph_versions().unwrap(), ["v4", "v5"]);
    }
}
