//! The options a graph is built with and the answers it gives.

use crate::geo::Coord;
use crate::network::RestrictionStats;
use crate::weight::Weight;
use std::sync::Arc;

/// Progress of a graph build, reported to [`BuildOptions::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProgress {
    /// Reading and filtering the OSM file.
    Importing,
    /// Contracting nodes: `done` of `total`.
    Contracting {
        /// Nodes contracted so far.
        done: usize,
        /// Nodes to contract.
        total: usize,
    },
    /// Building the spatial index.
    Indexing,
}

/// Callback type for build progress.
pub type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// Options of a graph build.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Version label stored in the artifact (e.g. `monaco-2024-06-01`); operators roll
    /// graphs out by this label.
    pub version: String,
    /// Called as the build advances.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("version", &self.version)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a graph is: version label and size. Its identity is [`Graph::sha256`](crate::Graph::sha256).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInfo {
    /// The version label given at build time; operators roll graphs out by it.
    pub version: String,
    /// Junction nodes.
    pub node_count: usize,
    /// Directed edges.
    pub edge_count: usize,
    /// Roads.
    pub road_count: usize,
    /// Shortcut and original arcs in the hierarchy.
    pub arc_count: usize,
    /// `[min_lon, min_lat, max_lon, max_lat]` of the road network.
    pub bbox: [f64; 4],
    /// The profile the graph was built for (`car`, `truck`; `custom` for hand-built ones).
    pub profile: String,
    /// Turn restrictions applied and skipped at import.
    pub restrictions: RestrictionStats,
    /// Extra hierarchy nodes made by splitting junctions for turn restrictions.
    pub split_nodes: usize,
}

/// One stretch of a route along equally named roads (consecutive roads with the same name
/// are merged).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSegment {
    /// Road name (or ref), empty if unnamed; shared with the graph, not copied.
    pub name: Arc<str>,
    /// Travel time on this piece, seconds.
    pub duration_s: f64,
    /// Length of this piece, metres.
    pub distance_m: f64,
    /// Indices into [`Route::geometry`]: `geometry[start]` is the first point and
    /// `geometry[end - 1]` the last; consecutive segments share their boundary point.
    pub geometry: std::ops::Range<usize>,
}

/// How much of a [`Route`] [`Graph::route_with`](super::Graph::route_with) builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Everything: geometry, OSM node ids and named segments with their geometry ranges.
    #[default]
    Full,
    /// Totals and named segments only: `geometry` and `nodes` are empty, and so is every
    /// segment's geometry range.
    Summary,
    /// Everything but the OSM node ids: `nodes` is empty. What an OSRM route with an
    /// overview, steps or annotations other than `nodes` needs; skipping the ids saves
    /// reading and copying a third of every shape point's bytes.
    Geometry,
}

/// The fastest route between two snapped points.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Travel time, seconds (millisecond resolution).
    pub duration_s: f64,
    /// Length, metres (decimetre resolution).
    pub distance_m: f64,
    /// The path from the first snapped point to the second.
    pub geometry: Vec<Coord>,
    /// The OSM node id of every point of `geometry` (OSRM's `annotation.nodes`): the shape
    /// point itself, except for the two snapped ends, which are named after the node behind
    /// the start and the node ahead of the end in travel direction. 0 for roads built by
    /// hand rather than imported.
    pub nodes: Vec<i64>,
    /// The roads travelled, in order.
    pub segments: Vec<RouteSegment>,
}

/// Durations and distances between every source and every target.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub(super) sources: usize,
    pub(super) targets: usize,
    pub(super) weights: Vec<Weight>,
}

impl Table {
    /// Number of rows.
    pub fn sources(&self) -> usize {
        self.sources
    }
    /// Number of columns.
    pub fn targets(&self) -> usize {
        self.targets
    }
    fn cell(&self, i: usize, j: usize) -> Option<Weight> {
        if i >= self.sources || j >= self.targets {
            return None;
        }
        let w = self.weights[i * self.targets + j];
        (!w.is_infinite()).then_some(w)
    }
    /// Travel time from source `i` to target `j` in seconds, `None` if unreachable.
    pub fn duration_s(&self, i: usize, j: usize) -> Option<f64> {
        self.cell(i, j).map(Weight::duration_s)
    }
    /// Distance from source `i` to target `j` in metres, `None` if unreachable.
    pub fn distance_m(&self, i: usize, j: usize) -> Option<f64> {
        self.cell(i, j).map(Weight::distance_m)
    }
}

/// The size of one point-to-point search in the hierarchy, both directions together: what
/// the contraction order and the query are tuned by (see `docs/benchmarks.md`). The
/// searches stop at the core table, so its nodes are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchSpace {
    /// Nodes taken off the priority queues.
    pub settled: usize,
    /// Arcs relaxed (looked at from a settled node).
    pub relaxed: usize,
}
