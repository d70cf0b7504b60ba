//! The prepared graph: network + hierarchy + spatial index, and the queries on it.
//!
//! # Layout
//! - this module: [`Graph`], building and loading it, and its public queries;
//! - `types`: the options and results it trades in ([`BuildOptions`], [`Route`], [`Table`]...);
//! - `seeds`: where a snapped point enters and leaves the hierarchy;
//! - `assemble`: turning a hierarchy path into a [`Route`] with geometry and road names.

mod assemble;
mod seeds;
mod types;

pub use types::{
    BuildOptions, BuildProgress, Detail, GraphInfo, ProgressFn, Route, RouteSegment, SearchSpace,
    Table,
};

use crate::artifact::{self, Contents};
use crate::ch::{self, CoreTable, Hierarchy, PathScratch, Search};
use crate::geo::Coord;
use crate::import::import_osm;
use crate::network::RoadNetwork;
use crate::profile::CarProfile;
use crate::snap::{Snap, SnapIndex};
use crate::turns::{self, TurnTables};
use crate::{Error, Result};
use std::cell::RefCell;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A prepared road graph that answers queries. Immutable and `Send + Sync`; share it
/// behind an `Arc` and swap the `Arc` to change versions.
#[derive(Debug)]
pub struct Graph {
    /// Process-unique instance id, stamped on every [`Snap`] this graph makes.
    id: u64,
    pub(crate) net: RoadNetwork,
    pub(crate) ch: Hierarchy,
    /// Shortest weights between the hierarchy's top nodes, computed on load.
    pub(crate) core: CoreTable,
    turns: TurnTables,
    index: SnapIndex,
    info: GraphInfo,
    /// sha256 (hex) of the artifact, known once the artifact is first encoded or decoded.
    sha256: OnceLock<String>,
}

/// Tables with at most this many cells per row and column combine per-row and per-column
/// searches through the core table instead of using buckets (see [`Graph::table`]).
const LIST_CELLS_PER_LINE: usize = 16;

thread_local! {
    /// Per-thread query state, sized to the last graph used: allocating the distance arrays
    /// per query would cost more than the query.
    static WORKSPACE: RefCell<Option<(Search, Search, PathScratch)>> =
        const { RefCell::new(None) };
}

fn with_workspace<R>(
    n: usize,
    f: impl FnOnce(&mut Search, &mut Search, &mut PathScratch) -> R,
) -> R {
    WORKSPACE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ws = match slot.as_mut() {
            Some(ws) if ws.0.len() == n => ws,
            _ => slot.insert((Search::new(n), Search::new(n), PathScratch::default())),
        };
        f(&mut ws.0, &mut ws.1, &mut ws.2)
    })
}

impl Graph {
    /// Imports an OSM PBF file and prepares it. Takes seconds on a city: call it off any
    /// async executor.
    pub fn from_osm_file(
        path: &Path,
        profile: &CarProfile,
        options: &BuildOptions,
    ) -> Result<Graph> {
        if let Some(p) = &options.progress {
            p(BuildProgress::Importing);
        }
        let net = import_osm(path, profile)?;
        Self::from_network(net, options)
    }

    /// Prepares a network: contraction hierarchy and spatial index. The graph's identity
    /// is computed when its artifact is first encoded ([`Graph::to_artifact`]).
    pub fn from_network(net: RoadNetwork, options: &BuildOptions) -> Result<Graph> {
        if net.roads.is_empty() {
            return Err(Error::NoRoads);
        }
        let report = |done, total| {
            if let Some(p) = &options.progress {
                p(BuildProgress::Contracting { done, total });
            }
        };
        let (arcs, mut turns) = turns::expand(&net);
        let (ch, new_id) = ch::contract(turns.node_count, arcs.into_iter(), &report);
        turns.renumber(&new_id);
        if let Some(p) = &options.progress {
            p(BuildProgress::Indexing);
        }
        Ok(Self::assemble(Contents {
            version: options.version.clone(),
            net,
            ch,
            turns,
        }))
    }

    fn assemble(
        Contents {
            version,
            mut net,
            mut ch,
            turns,
        }: Contents,
    ) -> Graph {
        let road_order = ch.lay_out_arcs(net.roads.len());
        net.lay_out_points(&road_order);
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let index = SnapIndex::build(&net, id);
        // A search of its own, dropped once the table is built: the loading thread may
        // never answer a query, and its workspace would stay allocated.
        let core = CoreTable::build(&ch, &mut Search::new(turns.node_count));
        let bbox = crate::geo::bounds(&net.nodes);
        let summary = net.summary();
        let info = GraphInfo {
            version,
            node_count: summary.nodes,
            edge_count: summary.edges,
            road_count: summary.roads,
            arc_count: ch.arcs.len(),
            bbox,
            restrictions: net.restriction_stats,
            profile: net.profile.clone(),
            split_nodes: turns.split_nodes(summary.nodes),
        };
        Graph {
            id,
            net,
            ch,
            core,
            turns,
            index,
            info,
            sha256: OnceLock::new(),
        }
    }

    /// Loads a graph from artifact bytes; see [`crate::artifact`].
    pub fn from_artifact(bytes: &[u8]) -> Result<Graph> {
        let (contents, sha256) = artifact::decode(bytes)?;
        let mut graph = Self::assemble(contents);
        graph.sha256 = OnceLock::from(sha256);
        Ok(graph)
    }

    /// Reads and loads an artifact file.
    pub fn read_artifact(path: &Path) -> Result<Graph> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_artifact(&bytes)
    }

    /// Serialises the graph as an artifact (and learns its identity on the way).
    pub fn to_artifact(&self) -> Vec<u8> {
        let encoded = artifact::encode(&self.info.version, &self.net, &self.ch, &self.turns);
        let known = self.sha256.get_or_init(|| encoded.sha256.clone());
        debug_assert_eq!(*known, encoded.sha256, "encoding is deterministic");
        encoded.bytes
    }

    /// Writes the artifact to `path` (via a temporary file and a rename, so a crash never
    /// leaves a half-written artifact under the final name).
    pub fn write_artifact(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, self.to_artifact()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Version label and size of this graph.
    pub fn info(&self) -> &GraphInfo {
        &self.info
    }

    /// sha256 (hex) of this graph's artifact: the identity agents and the control plane
    /// compare. Known without cost on a loaded graph or once [`Graph::to_artifact`] or
    /// [`Graph::write_artifact`] ran; on a fresh build never encoded, the first call encodes
    /// the graph once (about a millisecond per 0.6 MiB of artifact, Monaco's size).
    pub fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| {
            artifact::encode(&self.info.version, &self.net, &self.ch, &self.turns).sha256
        })
    }

    /// Snaps a coordinate to the nearest road segment within `max_radius_m` metres.
    pub fn snap(&self, at: Coord, max_radius_m: f64) -> Result<Snap> {
        let mut snaps = self.index.nearest(&self.net, at, 1, max_radius_m)?;
        snaps.pop().ok_or(Error::NoSegment {
            lon: at.lon,
            lat: at.lat,
            radius_m: max_radius_m,
        })
    }

    /// Up to `number` snaps on distinct roads within `max_radius_m`, nearest first.
    pub fn nearest(&self, at: Coord, number: usize, max_radius_m: f64) -> Result<Vec<Snap>> {
        self.index.nearest(&self.net, at, number, max_radius_m)
    }

    /// The fastest route from `from` to `to`.
    ///
    /// Errors: [`Error::NoRoute`] when `to` cannot be reached, [`Error::ForeignSnap`] when a
    /// snap was made by another graph.
    pub fn route(&self, from: &Snap, to: &Snap) -> Result<Route> {
        self.route_with(from, to, Detail::Full)
    }

    /// [`Graph::route`], building only as much of the [`Route`] as `detail` asks for: a
    /// caller that sends no geometry (OSRM's `overview=false` without steps or annotations)
    /// saves copying every shape point and OSM node id of the path.
    pub fn route_with(&self, from: &Snap, to: &Snap, detail: Detail) -> Result<Route> {
        if self.road_of(from).is_none() || self.road_of(to).is_none() {
            return Err(Error::ForeignSnap);
        }
        let direct = self.same_road(from, to);
        let (sources, targets) = (self.source_seeds(from), self.target_seeds(to));
        // Assembled inside the workspace so the path's edges are read from its buffer.
        with_workspace(self.turns.node_count, |fwd, bwd, scratch| {
            let found = self
                .core
                .query(&self.ch, fwd, bwd, &sources, &targets, scratch);
            match (found, direct) {
                (Some(f), Some((w, backward))) if w <= f.weight => {
                    Ok(self.direct_route(from, to, w, backward, detail))
                }
                (None, Some((w, backward))) => Ok(self.direct_route(from, to, w, backward, detail)),
                (Some(f), _) => Ok(self.assemble_route(from, to, &f, &scratch.edges, detail)),
                (None, None) => Err(Error::NoRoute),
            }
        })
    }

    /// The search space of the point-to-point query behind [`Graph::route`] from `from` to
    /// `to`: a measurement for benchmarks and tuning, not needed to route.
    pub fn search_space(&self, from: &Snap, to: &Snap) -> SearchSpace {
        let (sources, targets) = (self.source_seeds(from), self.target_seeds(to));
        with_workspace(self.turns.node_count, |fwd, bwd, scratch| {
            self.core
                .query(&self.ch, fwd, bwd, &sources, &targets, scratch);
            SearchSpace {
                settled: fwd.scanned + bwd.scanned,
                relaxed: fwd.relaxed + bwd.relaxed,
            }
        })
    }

    /// Shortest weights between every source and target: through the core table for small
    /// and narrow tables, with CH buckets for large ones. A snap made by another graph has
    /// no seeds, so its row or column is unreachable.
    pub fn table(&self, sources: &[Snap], targets: &[Snap]) -> Table {
        let source_seeds: Vec<_> = sources.iter().map(|s| self.source_seeds(s)).collect();
        let target_seeds: Vec<_> = targets.iter().map(|t| self.target_seeds(t)).collect();
        let (n, m) = (sources.len(), targets.len());
        let mut weights = with_workspace(self.turns.node_count, |fwd, bwd, _| {
            // Buckets cost one unpruned search per row and column (about 6 us on Porto) plus
            // a pass over every node; searches that stop at the core cost about 1.5 us each
            // but every cell then combines two lists through the table (0.1 to 0.25 us), so
            // they win while there are fewer than about 19 cells per row and column (Porto,
            // 2026-12-04: 1x100 0.15-0.18 ms against 0.6 ms, 10x10 40 us against 119 us,
            // 30x30 0.30 ms against 0.37 ms, 100x100 2.8 ms against 1.5 ms). A single cell
            // skips the lists.
            if let ([s], [t]) = (&source_seeds[..], &target_seeds[..]) {
                vec![self.core.distance(&self.ch, fwd, bwd, s, t)]
            } else if n * m <= LIST_CELLS_PER_LINE * (n + m) {
                self.core.table(&self.ch, fwd, &source_seeds, &target_seeds)
            } else {
                self.ch.many_to_many(fwd, &source_seeds, &target_seeds)
            }
        });
        for (i, s) in sources.iter().enumerate() {
            for (j, t) in targets.iter().enumerate() {
                if let Some((w, _)) = self.same_road(s, t) {
                    let cell = &mut weights[i * targets.len() + j];
                    if w < *cell {
                        *cell = w;
                    }
                }
            }
        }
        Table {
            sources: sources.len(),
            targets: targets.len(),
            weights,
        }
    }
}
