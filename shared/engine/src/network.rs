//! The unprepared road network: junctions joined by roads with geometry.

use crate::geo::{Coord, haversine_m};
use crate::profile::Direction;
use crate::weight::Weight;
use crate::{Error, Result};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;
use std::sync::Arc;

/// A road between two junctions, with its full shape. Directed travel along it is
/// `forward` (from `from` to `to`) and/or `backward`; a direction a car may not take has an
/// infinite weight.
#[derive(Debug, Clone)]
pub(crate) struct Road {
    pub(crate) from: u32,
    pub(crate) to: u32,
    /// Range into [`RoadNetwork::points`]; at least two points, the first at `from` and the
    /// last at `to`.
    pub(crate) geometry_start: u32,
    pub(crate) geometry_len: u32,
    pub(crate) forward: Weight,
    pub(crate) backward: Weight,
    pub(crate) name: u32,
}

impl Road {
    pub(crate) fn geometry_range(&self) -> std::ops::Range<usize> {
        let start = self.geometry_start as usize;
        start..start + self.geometry_len as usize
    }

    pub(crate) fn weight(&self, backward: bool) -> Weight {
        if backward {
            self.backward
        } else {
            self.forward
        }
    }
}

/// A directed edge: a road travelled in one direction. Encoded as `road * 2 + backward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EdgeId(pub(crate) u32);

impl EdgeId {
    pub(crate) fn new(road: u32, backward: bool) -> Self {
        EdgeId(road * 2 + u32::from(backward))
    }
    pub(crate) fn road(self) -> u32 {
        self.0 / 2
    }
    pub(crate) fn is_backward(self) -> bool {
        self.0 % 2 == 1
    }
}

/// The road network before preprocessing: junction nodes, roads between them with their
/// geometry, road names. Built by [`crate::import`] from OSM, or by hand with
/// [`RoadNetwork::builder`].
#[derive(Debug, Clone, Default)]
pub struct RoadNetwork {
    pub(crate) nodes: Vec<Coord>,
    pub(crate) roads: Vec<Road>,
    pub(crate) points: Vec<Coord>,
    /// OSM node id of every shape point, parallel to `points` (0 for hand-built roads).
    pub(crate) point_ids: Vec<i64>,
    /// Shared so that a route's segments name their roads without copying the strings
    /// (a copy per segment was a twelfth of a Porto route).
    pub(crate) names: Vec<Arc<str>>,
    /// Turn restrictions over directed edges, resolved from OSM or added by hand.
    pub(crate) restrictions: Vec<Restriction>,
    pub(crate) restriction_stats: RestrictionStats,
    /// The profile the network was imported with ([`crate::Profile::name`]); `custom` for
    /// networks built by hand.
    pub(crate) profile: String,
}

/// A turn restriction over directed edges: after driving `path` (the from-edge, then the
/// edges of any via ways, in order), the next edge must not be one of `to` (`only` false,
/// OSM's `no_*`) or must be one of `to` (`only` true, OSM's `only_*`). Leaving a via way
/// before its end is not restricted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restriction {
    pub(crate) path: Vec<EdgeId>,
    pub(crate) to: Vec<EdgeId>,
    pub(crate) only: bool,
}

/// What became of the turn restrictions an import met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestrictionStats {
    /// Restrictions applied to routing (one OSM relation may yield several when its from-way
    /// ends at the via node from both sides).
    pub applied: usize,
    /// Relations skipped because a member (way or node) is missing from the extract or is
    /// not a road of this profile.
    pub missing_member: usize,
    /// Relations skipped as malformed: no or several from/to members, a via node that is not
    /// an end of the from-way or the to-way, via ways that do not form a chain, an unknown
    /// `restriction` value.
    pub invalid: usize,
    /// Relations that do not apply to this profile's vehicle (`except=`, or tagged for
    /// another vehicle only).
    pub exempt: usize,
    /// Restrictions dropped because they touch a road outside the kept strongly connected
    /// component.
    pub outside_network: usize,
}

/// Sizes of a network, for logs and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoadSummary {
    /// Junction nodes.
    pub nodes: usize,
    /// Roads (each may be drivable one or both ways).
    pub roads: usize,
    /// Directed edges (drivable directions of roads).
    pub edges: usize,
}

impl RoadNetwork {
    /// Starts building a network by hand (tests, synthetic maps).
    pub fn builder() -> RoadNetworkBuilder {
        RoadNetworkBuilder::default()
    }

    /// Counts of nodes, roads and directed edges.
    pub fn summary(&self) -> RoadSummary {
        let edges = self
            .roads
            .iter()
            .map(|r| usize::from(!r.forward.is_infinite()) + usize::from(!r.backward.is_infinite()))
            .sum();
        RoadSummary {
            nodes: self.nodes.len(),
            roads: self.roads.len(),
            edges,
        }
    }

    /// What became of the turn restrictions met while building this network.
    pub fn restriction_stats(&self) -> RestrictionStats {
        self.restriction_stats
    }

    /// Lays the shape points (and their OSM ids) out road by road in `order`, which names
    /// every road once: what a route copies then sits together in memory. Road ids and each
    /// road's points are unchanged; only where they are stored moves.
    pub(crate) fn lay_out_points(&mut self, order: &[u32]) {
        let mut points = Vec::with_capacity(self.points.len());
        let mut point_ids = Vec::with_capacity(self.point_ids.len());
        for &r in order {
            let Some(road) = self.roads.get_mut(r as usize) else {
                continue;
            };
            let range = road.geometry_range();
            road.geometry_start = points.len() as u32;
            points.extend_from_slice(&self.points[range.clone()]);
            point_ids.extend_from_slice(&self.point_ids[range]);
        }
        self.points = points;
        self.point_ids = point_ids;
    }

    pub(crate) fn geometry(&self, road: &Road) -> &[Coord] {
        &self.points[road.geometry_range()]
    }

    pub(crate) fn point_ids(&self, road: &Road) -> &[i64] {
        &self.point_ids[road.geometry_range()]
    }

    /// Directed edges as (tail, head, weight, id), the input to both CH and the oracle.
    pub(crate) fn directed_edges(&self) -> impl Iterator<Item = (u32, u32, Weight, EdgeId)> + '_ {
        self.roads.iter().enumerate().flat_map(|(i, r)| {
            let i = i as u32;
            let f = (!r.forward.is_infinite()).then_some((
                r.from,
                r.to,
                r.forward,
                EdgeId::new(i, false),
            ));
            let b = (!r.backward.is_infinite()).then_some((
                r.to,
                r.from,
                r.backward,
                EdgeId::new(i, true),
            ));
            f.into_iter().chain(b)
        })
    }

    /// Keeps only the largest strongly connected component, so every snapped point can reach
    /// every other one; islands (car parks behind barriers, broken data) would otherwise give
    /// `NoRoute` for points that look connected on a map.
    fn retain_largest_scc(mut self) -> Self {
        let mut g: DiGraph<(), ()> = DiGraph::with_capacity(self.nodes.len(), self.roads.len() * 2);
        for _ in 0..self.nodes.len() {
            g.add_node(());
        }
        for (from, to, _, _) in self.directed_edges() {
            g.add_edge(
                NodeIndex::new(from as usize),
                NodeIndex::new(to as usize),
                (),
            );
        }
        let components = petgraph::algo::tarjan_scc(&g);
        let Some(largest) = components.iter().max_by_key(|c| c.len()) else {
            return RoadNetwork::default();
        };
        let mut new_id = vec![u32::MAX; self.nodes.len()];
        let mut nodes = Vec::with_capacity(largest.len());
        let mut sorted: Vec<usize> = largest.iter().map(|n| n.index()).collect();
        sorted.sort_unstable();
        for old in sorted {
            new_id[old] = nodes.len() as u32;
            nodes.push(self.nodes[old]);
        }
        let mut points = Vec::with_capacity(self.points.len());
        let mut point_ids = Vec::with_capacity(self.point_ids.len());
        let mut roads = Vec::with_capacity(self.roads.len());
        let mut new_road = vec![u32::MAX; self.roads.len()];
        for (i, road) in self.roads.iter().enumerate() {
            let (from, to) = (new_id[road.from as usize], new_id[road.to as usize]);
            if from == u32::MAX || to == u32::MAX {
                continue;
            }
            new_road[i] = roads.len() as u32;
            let start = points.len() as u32;
            points.extend_from_slice(&self.points[road.geometry_range()]);
            point_ids.extend_from_slice(&self.point_ids[road.geometry_range()]);
            roads.push(Road {
                from,
                to,
                geometry_start: start,
                ..road.clone()
            });
        }
        let remap = |e: &EdgeId| {
            let r = new_road[e.road() as usize];
            (r != u32::MAX).then(|| EdgeId::new(r, e.is_backward()))
        };
        let mut restrictions = Vec::with_capacity(self.restrictions.len());
        for r in &self.restrictions {
            let path: Option<Vec<EdgeId>> = r.path.iter().map(remap).collect();
            // A to-edge outside the component is harmless for `no_*` (it cannot be driven
            // anyway) but an `only_*` whose target is gone would forbid every turn.
            let to: Vec<EdgeId> = r.to.iter().filter_map(remap).collect();
            match path {
                Some(path) if !to.is_empty() => restrictions.push(Restriction {
                    path,
                    to,
                    only: r.only,
                }),
                _ => self.restriction_stats.outside_network += 1,
            }
        }
        self.restriction_stats.applied = restrictions.len();
        self.nodes = nodes;
        self.roads = roads;
        self.points = points;
        self.point_ids = point_ids;
        self.restrictions = restrictions;
        self
    }
}

/// Builds a [`RoadNetwork`] road by road.
#[derive(Debug, Default)]
pub struct RoadNetworkBuilder {
    net: RoadNetwork,
    name_ids: HashMap<String, u32>,
}

/// A junction handle returned by [`RoadNetworkBuilder::add_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeHandle(pub(crate) u32);

/// A road handle returned by [`RoadNetworkBuilder::add_road`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoadHandle(pub(crate) u32);

impl RoadNetworkBuilder {
    /// Adds a junction.
    pub fn add_node(&mut self, at: Coord) -> NodeHandle {
        self.net.nodes.push(at);
        NodeHandle(self.net.nodes.len() as u32 - 1)
    }

    /// Adds a road from `from` to `to` through `interior` shape points and returns its
    /// handle. Roads of zero length or with no drivable direction are ignored (`None`).
    pub fn add_road(
        &mut self,
        from: NodeHandle,
        to: NodeHandle,
        interior: &[Coord],
        speed_kmh: f64,
        direction: Direction,
        name: &str,
    ) -> Option<RoadHandle> {
        let ids = vec![0; interior.len() + 2];
        self.add_osm_road(from, to, interior, &ids, speed_kmh, direction, name)
    }

    /// [`Self::add_road`] with the OSM node id of every point (`ids` holds the ends too).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_osm_road(
        &mut self,
        from: NodeHandle,
        to: NodeHandle,
        interior: &[Coord],
        ids: &[i64],
        speed_kmh: f64,
        direction: Direction,
        name: &str,
    ) -> Option<RoadHandle> {
        let (Some(&a), Some(&b)) = (
            self.net.nodes.get(from.0 as usize),
            self.net.nodes.get(to.0 as usize),
        ) else {
            return None;
        };
        if !(speed_kmh.is_finite() && speed_kmh > 0.0) || ids.len() != interior.len() + 2 {
            return None;
        }
        let start = self.net.points.len();
        self.net.points.push(a);
        self.net.points.extend_from_slice(interior);
        self.net.points.push(b);
        let length_m: f64 = self.net.points[start..]
            .windows(2)
            .map(|w| haversine_m(w[0], w[1]))
            .sum();
        if !length_m.is_finite() || from == to {
            self.net.points.truncate(start);
            return None;
        }
        self.net.point_ids.extend_from_slice(ids);
        let duration_ms = (length_m / (speed_kmh / 3.6) * 1000.0).round().max(1.0);
        let w = Weight::new(
            duration_ms.min(f64::from(u32::MAX / 2)) as u32,
            (length_m * 10.0).round().min(f64::from(u32::MAX / 2)) as u32,
        );
        let (forward, backward) = match direction {
            Direction::Forward => (w, Weight::INFINITY),
            Direction::Backward => (Weight::INFINITY, w),
            Direction::Both => (w, w),
        };
        let next_name = self.name_ids.len() as u32;
        let name = *self.name_ids.entry(name.to_owned()).or_insert_with(|| {
            self.net.names.push(Arc::from(name));
            next_name
        });
        self.net.roads.push(Road {
            from: from.0,
            to: to.0,
            geometry_start: start as u32,
            geometry_len: (self.net.points.len() - start) as u32,
            forward,
            backward,
            name,
        });
        Some(RoadHandle(self.net.roads.len() as u32 - 1))
    }

    /// Ends and directions of a road at a junction: (edge entering `via`, edge leaving it).
    fn edges_at(&self, road: RoadHandle, via: NodeHandle) -> Option<(EdgeId, EdgeId)> {
        let r = self.net.roads.get(road.0 as usize)?;
        if r.to == via.0 {
            Some((EdgeId::new(road.0, false), EdgeId::new(road.0, true)))
        } else if r.from == via.0 {
            Some((EdgeId::new(road.0, true), EdgeId::new(road.0, false)))
        } else {
            None
        }
    }

    /// Restricts the turn from road `from` onto road `to` at their shared junction `via`:
    /// forbidden when `only` is false (`no_*`), the only one allowed from `from` when `only`
    /// is true (`only_*`). Returns false (and adds nothing) when a road does not end at `via`.
    pub fn restrict_turn(
        &mut self,
        from: RoadHandle,
        via: NodeHandle,
        to: RoadHandle,
        only: bool,
    ) -> bool {
        let (Some((entering, _)), Some((_, leaving))) =
            (self.edges_at(from, via), self.edges_at(to, via))
        else {
            return false;
        };
        self.add_restriction(Restriction {
            path: vec![entering],
            to: vec![leaving],
            only,
        });
        true
    }

    pub(crate) fn add_restriction(&mut self, r: Restriction) {
        self.net.restrictions.push(r);
    }

    pub(crate) fn set_profile(&mut self, name: &str) {
        self.net.profile = name.to_owned();
    }

    pub(crate) fn stats_mut(&mut self) -> &mut RestrictionStats {
        &mut self.net.restriction_stats
    }

    /// Finishes the network, keeping only its largest strongly connected component.
    pub fn build(mut self) -> Result<RoadNetwork> {
        if self.net.profile.is_empty() {
            self.net.profile = "custom".to_owned();
        }
        let profile = self.net.profile.clone();
        let mut net = self.net.retain_largest_scc();
        net.profile = profile;
        if net.roads.is_empty() {
            return Err(Error::NoRoads);
        }
        Ok(net)
    }
}
