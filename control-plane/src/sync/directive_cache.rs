//! What every report's directives read from the store, kept per replica for a short time.
//!
//! A report's answer names its region's graph, that graph's download (its metadata) and the
//! region's extra profile graphs: the same few values for every agent of a region. With a
//! shared database each of them was a round trip per report, outside the batched ingest
//! transaction; at a few hundred reports a second those statements were most of the
//! database's work left besides the batch (see `docs/scale.md`).
//!
//! - [`DirectiveCache`] keeps region keys (the region's graph, its `r/profiles`) and graph
//!   metadata by version, each for [`Settings::directive_cache_ms`] (1 s by default; 0
//!   turns the cache off). Failed reads are not kept.
//! - [`InvalidatingStore`] wraps the replica's store and drops an entry as soon as a write
//!   through this replica touches it (region graph, profiles, graph registration, rollout
//!   record), so one replica answers every report after a change with the change, as
//!   without the cache. Other replicas see it once their entry expires: within the TTL.
//! - The rollout record itself is not cached here: the rollout driver keeps it (and
//!   re-reads it every tick with a shared store). When that re-read finds a change, it
//!   drops the region's entry before publishing the record ([`DirectiveCache::invalidate`]
//!   from [`crate::rollout::graph`]), so a replica that sees a promotion never pairs it
//!   with the region graph from before it.
//!
//! A read that started before an invalidation does not store what it read: every
//! invalidation bumps a generation, and a read stores its value only if the generation
//! has not moved meanwhile.
//!
//! [`Settings::directive_cache_ms`]: crate::serve::Settings::directive_cache_ms

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use edgeroute_protocol::sync::{Event, EventHeader, RawEvent, Report};

use super::store::{
    CenterStore, GraphMeta, Ingested, NodeRecord, Result, RolloutRecord, StoredPlan, WindowSample,
};

/// Most entries of each kind. Region names come from agents' reports, so the number of
/// keys is bounded here rather than by the fleet's honesty.
const MAX_ENTRIES: usize = 4096;

/// The per-replica cache of directive inputs; see the module documentation.
#[derive(Debug)]
pub struct DirectiveCache {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    regions: HashMap<String, Entry<Option<String>>>,
    graphs: HashMap<String, Entry<Option<GraphMeta>>>,
}

#[derive(Debug)]
struct Entry<V> {
    at: Instant,
    value: V,
}

impl DirectiveCache {
    /// A cache keeping each value for `ttl`; a zero `ttl` reads the store every time.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    /// How long a value is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `store.region_graph(key)`, at most the TTL old. `key` is a region or a region's
    /// profiles key.
    pub async fn region_graph(&self, store: &dyn CenterStore, key: &str) -> Result<Option<String>> {
        self.read(|s| &mut s.regions, key, store.region_graph(key))
            .await
    }

    /// `store.graph(version)`, at most the TTL old.
    pub async fn graph(&self, store: &dyn CenterStore, version: &str) -> Result<Option<GraphMeta>> {
        self.read(|s| &mut s.graphs, version, store.graph(version))
            .await
    }

    /// Forget what is kept for the region key `key` (a write changed it, or the region's
    /// rollout record changed).
    pub fn invalidate(&self, key: &str) {
        let mut state = self.lock();
        state.generation = state.generation.wrapping_add(1);
        state.regions.remove(key);
    }

    /// Forget what is kept for the graph `version` (it was registered or re-registered).
    pub fn invalidate_graph(&self, version: &str) {
        let mut state = self.lock();
        state.generation = state.generation.wrapping_add(1);
        state.graphs.remove(version);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: whatever a panicking holder left is still a valid one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read<V: Clone>(
        &self,
        map: fn(&mut State) -> &mut HashMap<String, Entry<V>>,
        key: &str,
        load: impl Future<Output = Result<V>>,
    ) -> Result<V> {
        if self.ttl.is_zero() {
            return load.await;
        }
        let generation = {
            let mut state = self.lock();
            if let Some(entry) = map(&mut state).get(key)
                && entry.at.elapsed() < self.ttl
            {
                return Ok(entry.value.clone());
            }
            state.generation
        };
        let at = Instant::now();
        let value = load.await?;
        let mut state = self.lock();
        if state.generation == generation {
            let ttl = self.ttl;
            let entries = map(&mut state);
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
                entries.retain(|_, e| e.at.elapsed() < ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(
                key.to_owned(),
                Entry {
                    at,
                    value: value.clone(),
                },
            );
        }
        Ok(value)
    }
}

/// The replica's store with [`DirectiveCache`] invalidation on every write the cache
/// depends on. Every other call goes straight through.
///
/// Every method of [`CenterStore`] is forwarded explicitly, the provided ones too: one
/// left to its default would silently replace the inner store's (PostgreSQL's leases and
/// shared windows). A method added to the trait must be added here.
pub struct InvalidatingStore {
    inner: Arc<dyn CenterStore>,
    cache: Arc<DirectiveCache>,
}

impl InvalidatingStore {
    /// `inner`, invalidating `cache`'s entries on its writes.
    pub fn new(inner: Arc<dyn CenterStore>, cache: Arc<DirectiveCache>) -> Self {
        Self { inner, cache }
    }
}

impl std::fmt::Debug for InvalidatingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidatingStore")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CenterStore for InvalidatingStore {
    async fn ingest(
        &self,
        report: Report<RawEvent>,
        headers: Vec<EventHeader>,
        received_at_ms: u64,
    ) -> Result<Ingested> {
        self.inner.ingest(report, headers, received_at_ms).await
    }
    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.inner.nodes().await
    }
    async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        self.inner.node(name).await
    }
    async fn forget_node(&self, name: &str) -> Result<bool> {
        self.inner.forget_node(name).await
    }
    async fn plans(&self, node: Option<&str>, since: u64, limit: usize) -> Result<Vec<StoredPlan>> {
        self.inner.plans(node, since, limit).await
    }
    async fn latest_plans(&self, node: &str, since: u64, limit: usize) -> Result<Vec<StoredPlan>> {
        self.inner.latest_plans(node, since, limit).await
    }
    async fn plan(&self, node: &str, seq: u64) -> Result<Option<StoredPlan>> {
        self.inner.plan(node, seq).await
    }
    async fn events(&self, stream: &str, since: u64, limit: usize) -> Result<Vec<Event>> {
        self.inner.events(stream, since, limit).await
    }
    async fn put_graph(&self, meta: GraphMeta) -> Result<()> {
        let version = meta.version.clone();
        // Invalidated whether or not the write reports success: a commit whose answer was
        // lost may still have happened.
        let written = self.inner.put_graph(meta).await;
        self.cache.invalidate_graph(&version);
        written
    }
    async fn graphs(&self) -> Result<Vec<GraphMeta>> {
        self.inner.graphs().await
    }
    async fn graph(&self, version: &str) -> Result<Option<GraphMeta>> {
        self.inner.graph(version).await
    }
    async fn set_region_graph(&self, region: &str, version: &str) -> Result<()> {
        let written = self.inner.set_region_graph(region, version).await;
        self.cache.invalidate(region);
        written
    }
    async fn region_graph(&self, region: &str) -> Result<Option<String>> {
        self.inner.region_graph(region).await
    }
    async fn rollout(&self, region: &str) -> Result<Option<RolloutRecord>> {
        self.inner.rollout(region).await
    }
    async fn put_rollout(&self, region: &str, record: &RolloutRecord) -> Result<()> {
        let written = self.inner.put_rollout(region, record).await;
        self.cache.invalidate(region);
        written
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        self.inner.lease(name, holder, ttl_ms).await
    }
    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        self.inner.release(name, holder).await
    }
    async fn put_windows(&self, replica: &str, samples: &[WindowSample]) -> Result<()> {
        self.inner.put_windows(replica, samples).await
    }
    async fn windows(&self, region: &str, since_ms: u64) -> Result<Vec<WindowSample>> {
        self.inner.windows(region, since_ms).await
    }
    async fn prune_windows(&self, before_ms: u64) -> Result<()> {
        self.inner.prune_windows(before_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::sled_store::SledCenterStore;

    fn meta(version: &str) -> GraphMeta {
        GraphMeta {
            version: version.into(),
            sha256: "0".repeat(64),
            size_bytes: 1,
            uploaded_at_ms: 1,
            node_count: 1,
            bbox: [0.0, 0.0, 1.0, 1.0],
        }
    }

    /// The sled store behind the wrapper, and the store alone (to write past the cache,
    /// as another replica would).
    fn stores(
        ttl: Duration,
    ) -> (
        tempfile::TempDir,
        Arc<DirectiveCache>,
        InvalidatingStore,
        Arc<dyn CenterStore>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn CenterStore> = Arc::new(SledCenterStore::open(dir.path()).unwrap());
        let cache = Arc::new(DirectiveCache::new(ttl));
        let store = InvalidatingStore::new(inner.clone(), cache.clone());
        (dir, cache, store, inner)
    }

    /// What the cache answers for the region `porto`.
    async fn porto(cache: &DirectiveCache, store: &InvalidatingStore) -> Option<String> {
        cache.region_graph(store, "porto").await.unwrap()
    }

    #[tokio::test]
    async fn a_write_elsewhere_is_seen_after_the_ttl_and_a_write_here_at_once() {
        let (_dir, cache, store, elsewhere) = stores(Duration::from_millis(200));
        store.set_region_graph("porto", "v1").await.unwrap();
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v1"));
        elsewhere.set_region_graph("porto", "v2").await.unwrap();
        let kept = Instant::now();
        let seen = porto(&cache, &store).await;
        if kept.elapsed() < Duration::from_millis(150) {
            assert_eq!(seen.as_deref(), Some("v1"), "kept for the TTL");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v2"));
        store.set_region_graph("porto", "v3").await.unwrap();
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v3"));
    }

    #[tokio::test]
    async fn registering_a_graph_replaces_a_cached_absence() {
        let (_dir, cache, store, _) = stores(Duration::from_secs(3600));
        assert_eq!(cache.graph(&store, "v1").await.unwrap(), None);
        store.put_graph(meta("v1")).await.unwrap();
        assert_eq!(cache.graph(&store, "v1").await.unwrap(), Some(meta("v1")));
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_the_store_every_time() {
        let (_dir, cache, store, elsewhere) = stores(Duration::ZERO);
        elsewhere.set_region_graph("porto", "v1").await.unwrap();
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v1"));
        elsewhere.set_region_graph("porto", "v2").await.unwrap();
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn a_read_overtaken_by_an_invalidation_keeps_nothing() {
        let (_dir, cache, store, elsewhere) = stores(Duration::from_secs(3600));
        elsewhere.set_region_graph("porto", "v1").await.unwrap();
        // A read that loaded v1, then the write and its invalidation, then the read ends.
        let stale = cache.read(|s| &mut s.regions, "porto", async {
            store.set_region_graph("porto", "v2").await?;
            Ok(Some("v1".to_owned()))
        });
        assert_eq!(stale.await.unwrap().as_deref(), Some("v1"));
        assert_eq!(porto(&cache, &store).await.as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn the_entries_stay_bounded() {
        let (_dir, cache, store, _) = stores(Duration::from_secs(3600));
        for i in 0..MAX_ENTRIES + 10 {
            cache.region_graph(&store, &format!("r{i}")).await.unwrap();
        }
        assert!(cache.lock().regions.len() <= MAX_ENTRIES);
    }
}
