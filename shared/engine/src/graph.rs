//! The prepared graph: network + hierarchy + spatial index, and the queries on it.

use crate::artifact::{self, Contents};
use crate::ch::{self, Hierarchy, Search};
use crate::geo::Coord;
use crate::import::import_osm;
use crate::network::{EdgeId, RestrictionStats, RoadNetwork};
use crate::profile::CarProfile;
use crate::snap::{Snap, SnapIndex};
use crate::turns::{self, TurnTables};
use crate::weight::Weight;
use crate::{Error, Result};
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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

/// What a graph is: version label and size. Its identity is [`Graph::sha256`].
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

/// A prepared road graph that answers queries. Immutable and `Send + Sync`; share it
/// behind an `Arc` and swap the `Arc` to change versions.
#[derive(Debug)]
pub struct Graph {
    /// Process-unique instance id, stamped on every [`Snap`] this graph makes.
    id: u64,
    pub(crate) net: RoadNetwork,
    ch: Hierarchy,
    turns: TurnTables,
    index: SnapIndex,
    info: GraphInfo,
    /// sha256 (hex) of the artifact, known once the artifact is first encoded or decoded.
    sha256: OnceLock<String>,
}

/// One stretch of a route along equally named roads (consecutive roads with the same name
/// are merged).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSegment {
    /// Road name (or ref), empty if unnamed.
    pub name: String,
    /// Travel time on this piece, seconds.
    pub duration_s: f64,
    /// Length of this piece, metres.
    pub distance_m: f64,
    /// Indices into [`Route::geometry`]: `geometry[start]` is the first point and
    /// `geometry[end - 1]` the last; consecutive segments share their boundary point.
    pub geometry: std::ops::Range<usize>,
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
    sources: usize,
    targets: usize,
    weights: Vec<Weight>,
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

thread_local! {
    /// Per-thread query state, sized to the last graph used: allocating the distance arrays
    /// per query would cost more than the query.
    static WORKSPACE: RefCell<Option<(Search, Search)>> = const { RefCell::new(None) };
}

fn with_workspace<R>(n: usize, f: impl FnOnce(&mut Search, &mut Search) -> R) -> R {
    WORKSPACE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ws = match slot.as_mut() {
            Some(ws) if ws.0.len() == n => ws,
            _ => slot.insert((Search::new(n), Search::new(n))),
        };
        f(&mut ws.0, &mut ws.1)
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
            net,
            ch,
            turns,
        }: Contents,
    ) -> Graph {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let index = SnapIndex::build(&net, id);
        let bbox = net.nodes.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |b, c| {
                [
                    b[0].min(c.lon),
                    b[1].min(c.lat),
                    b[2].max(c.lon),
                    b[3].max(c.lat),
                ]
            },
        );
        let summary = net.summary();
        let info = GraphInfo {
            version,
            node_count: summary.nodes,
            edge_count: summary.edges,
            road_count: summary.roads,
            arc_count: ch.arc_a.len(),
            bbox,
            restrictions: net.restriction_stats,
            profile: net.profile.clone(),
            split_nodes: turns.split_nodes(summary.nodes),
        };
        Graph {
            id,
            net,
            ch,
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

    /// The road a snap lies on, if the snap was made by this graph. A snap from another
    /// graph (say, one taken before a version swap) has no meaning here; it is treated as
    /// unroutable rather than indexing into the wrong road.
    fn road_of(&self, s: &Snap) -> Option<&crate::network::Road> {
        if s.graph == self.id {
            self.net.roads.get(s.road as usize)
        } else {
            None
        }
    }

    /// The directed edges a snapped point lies on, each with the cost of the part of it
    /// driven: from the point to the edge's end when `leaving`, from the edge's start to
    /// the point otherwise. The hierarchy and the oracle both start and end searches here.
    pub(crate) fn edge_seeds(&self, s: &Snap, leaving: bool) -> Vec<(EdgeId, Weight)> {
        let Some(r) = self.road_of(s) else {
            return Vec::new();
        };
        let mut seeds = Vec::with_capacity(2);
        if !r.forward.is_infinite() {
            let share = if leaving {
                1.0 - s.fraction
            } else {
                s.fraction
            };
            seeds.push((EdgeId::new(s.road, false), r.forward.scale(share)));
        }
        if !r.backward.is_infinite() {
            let share = if leaving {
                s.fraction
            } else {
                1.0 - s.fraction
            };
            seeds.push((EdgeId::new(s.road, true), r.backward.scale(share)));
        }
        seeds
    }

    /// Seeds for leaving a snapped point: the node each drivable direction of its road
    /// arrives at (a split node when a restriction starts on that edge), with the cost of
    /// the rest of the road.
    pub(crate) fn source_seeds(&self, s: &Snap) -> Vec<(u32, Weight)> {
        self.edge_seeds(s, true)
            .into_iter()
            .filter_map(|(e, w)| Some((self.turns.arrive(e)?, w)))
            .collect()
    }

    /// Seeds for arriving at a snapped point: every node its road's drivable directions
    /// leave from (the junction and any split node that allows the edge).
    pub(crate) fn target_seeds(&self, t: &Snap) -> Vec<(u32, Weight)> {
        self.edge_seeds(t, false)
            .into_iter()
            .flat_map(|(e, w)| self.turns.departures(e).map(move |n| (n, w)))
            .collect()
    }

    /// Cost of driving from `s` to `t` along their shared road without leaving it, if they
    /// are on the same road and the direction allows it.
    pub(crate) fn same_road(&self, s: &Snap, t: &Snap) -> Option<(Weight, bool)> {
        if s.road != t.road {
            return None;
        }
        let r = self.road_of(s)?;
        self.road_of(t)?;
        let forward = (!r.forward.is_infinite() && t.fraction >= s.fraction)
            .then(|| (r.forward.scale(t.fraction - s.fraction), false));
        let backward = (!r.backward.is_infinite() && t.fraction <= s.fraction)
            .then(|| (r.backward.scale(s.fraction - t.fraction), true));
        match (forward, backward) {
            (Some(f), Some(b)) => Some(if b.0 < f.0 { b } else { f }),
            (f, b) => f.or(b),
        }
    }

    /// The fastest route from `from` to `to`.
    ///
    /// Errors: [`Error::NoRoute`] when `to` cannot be reached, [`Error::ForeignSnap`] when a
    /// snap was made by another graph.
    pub fn route(&self, from: &Snap, to: &Snap) -> Result<Route> {
        if self.road_of(from).is_none() || self.road_of(to).is_none() {
            return Err(Error::ForeignSnap);
        }
        let direct = self.same_road(from, to);
        let found = with_workspace(self.turns.node_count, |fwd, bwd| {
            self.ch
                .query(fwd, bwd, &self.source_seeds(from), &self.target_seeds(to))
        });
        match (found, direct) {
            (Some(f), Some((w, backward))) if w <= f.weight => {
                Ok(self.direct_route(from, to, w, backward))
            }
            (None, Some((w, backward))) => Ok(self.direct_route(from, to, w, backward)),
            (Some(f), _) => Ok(self.assemble_route(from, to, &f)),
            (None, None) => Err(Error::NoRoute),
        }
    }

    /// Shortest weights between every source and target, computed with CH buckets. A snap
    /// made by another graph has no seeds, so its row or column is unreachable.
    pub fn table(&self, sources: &[Snap], targets: &[Snap]) -> Table {
        let source_seeds: Vec<_> = sources.iter().map(|s| self.source_seeds(s)).collect();
        let target_seeds: Vec<_> = targets.iter().map(|t| self.target_seeds(t)).collect();
        let mut weights = with_workspace(self.turns.node_count, |fwd, _| {
            self.ch.many_to_many(fwd, &source_seeds, &target_seeds)
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

    fn name(&self, road: u32) -> String {
        let r = &self.net.roads[road as usize];
        self.net
            .names
            .get(r.name as usize)
            .cloned()
            .unwrap_or_default()
    }

    fn direct_route(&self, from: &Snap, to: &Snap, w: Weight, backward: bool) -> Route {
        let road = &self.net.roads[from.road as usize];
        let pts = self.net.geometry(road);
        let ids = self.net.point_ids(road);
        let (a, b) = (from.segment as usize, to.segment as usize);
        // Points strictly between the two snaps, in travel order; the snaps themselves are
        // named after the node behind the start and the node ahead of the end.
        let (inner, first, last): (Vec<usize>, usize, usize) = if backward {
            ((b + 1..=a).rev().collect(), a + 1, b)
        } else {
            ((a + 1..=b).collect(), a, b + 1)
        };
        let mut geometry = vec![from.location];
        geometry.extend(inner.iter().map(|&i| pts[i]));
        geometry.push(to.location);
        let mut nodes = vec![ids[first]];
        nodes.extend(inner.iter().map(|&i| ids[i]));
        nodes.push(ids[last]);
        let segments = vec![RouteSegment {
            name: self.name(from.road),
            duration_s: w.duration_s(),
            distance_m: w.distance_m(),
            geometry: 0..geometry.len(),
        }];
        Route {
            duration_s: w.duration_s(),
            distance_m: w.distance_m(),
            geometry,
            nodes,
            segments,
        }
    }

    fn assemble_route(&self, from: &Snap, to: &Snap, found: &ch::Found) -> Route {
        let mut geometry: Vec<Coord> = Vec::with_capacity(found.edges.len() * 4 + 8);
        let mut nodes: Vec<i64> = Vec::with_capacity(found.edges.len() * 4 + 8);
        geometry.push(from.location);
        // (name id, weight, geometry start); consecutive pieces of equally named roads are
        // merged: that is the unit turn-by-turn steps are made of, and it saves a string
        // per edge on the hot path.
        let mut pieces: Vec<(u32, Weight, usize)> = Vec::new();
        // Appends the road's shape points `range` (reversed if `backward`) and then `last`,
        // if any, with their OSM node ids.
        let net = &self.net;
        let mut push = |geometry: &mut Vec<Coord>,
                        nodes: &mut Vec<i64>,
                        range: std::ops::Range<usize>,
                        backward: bool,
                        last: Option<(Coord, i64)>,
                        road: u32,
                        w: Weight| {
            let start = geometry.len() - 1;
            let (points, ids) = (&net.points[range.clone()], &net.point_ids[range]);
            if backward {
                geometry.extend(points.iter().rev());
                nodes.extend(ids.iter().rev());
            } else {
                geometry.extend_from_slice(points);
                nodes.extend_from_slice(ids);
            }
            if let Some((c, id)) = last {
                geometry.push(c);
                nodes.push(id);
            }
            let name = net.roads[road as usize].name;
            match pieces.last_mut() {
                Some(last) if last.0 == name => last.1 = last.1.add(w),
                _ => pieces.push((name, w, start)),
            }
        };

        // The first partial road: towards `to` if we left through the road's end node.
        let rs = &self.net.roads[from.road as usize];
        let base = rs.geometry_start as usize;
        let len = rs.geometry_len as usize;
        let seg = from.segment as usize;
        if Some(found.source) == self.turns.arrive(EdgeId::new(from.road, false)) {
            nodes.push(self.net.point_ids[base + seg]);
            let w = rs.forward.scale(1.0 - from.fraction);
            let range = base + seg + 1..base + len;
            push(&mut geometry, &mut nodes, range, false, None, from.road, w);
        } else {
            nodes.push(self.net.point_ids[base + seg + 1]);
            let w = rs.backward.scale(from.fraction);
            let range = base..base + seg + 1;
            push(&mut geometry, &mut nodes, range, true, None, from.road, w);
        }

        for edge in &found.edges {
            let road = &self.net.roads[edge.road() as usize];
            let base = road.geometry_start as usize;
            let len = road.geometry_len as usize;
            let w = road.weight(edge.is_backward());
            // The junction the edge starts at is already in the geometry.
            let range = if edge.is_backward() {
                base..base + len - 1
            } else {
                base + 1..base + len
            };
            let backward = edge.is_backward();
            push(
                &mut geometry,
                &mut nodes,
                range,
                backward,
                None,
                edge.road(),
                w,
            );
        }

        // The last partial road: we arrive from its start node when driving it forward.
        let rt = &self.net.roads[to.road as usize];
        let base = rt.geometry_start as usize;
        let len = rt.geometry_len as usize;
        let seg = to.segment as usize;
        let forward = EdgeId::new(to.road, false);
        if self.turns.departures(forward).any(|n| n == found.target) {
            let w = rt.forward.scale(to.fraction);
            let last = Some((to.location, self.net.point_ids[base + seg + 1]));
            let range = base + 1..base + seg + 1;
            push(&mut geometry, &mut nodes, range, false, last, to.road, w);
        } else {
            let w = rt.backward.scale(1.0 - to.fraction);
            let last = Some((to.location, self.net.point_ids[base + seg]));
            let range = base + seg + 1..base + len - 1;
            push(&mut geometry, &mut nodes, range, true, last, to.road, w);
        }

        let ends = pieces
            .iter()
            .skip(1)
            .map(|p| p.2 + 1)
            .chain(std::iter::once(geometry.len()));
        let segments = pieces
            .iter()
            .zip(ends)
            .map(|(&(name, w, start), end)| RouteSegment {
                name: self
                    .net
                    .names
                    .get(name as usize)
                    .cloned()
                    .unwrap_or_default(),
                duration_s: w.duration_s(),
                distance_m: w.distance_m(),
                geometry: start..end,
            })
            .collect();
        Route {
            duration_s: found.weight.duration_s(),
            distance_m: found.weight.distance_m(),
            geometry,
            nodes,
            segments,
        }
    }
}
