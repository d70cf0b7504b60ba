//! Route assembly: a hierarchy path (or a stretch of a single road) turned into geometry,
//! OSM node ids and named segments.

use super::{Detail, Graph, Route, RouteSegment};
use crate::ch;
use crate::geo::Coord;
use crate::network::{EdgeId, RoadNetwork};
use crate::snap::Snap;
use crate::weight::Weight;
use std::sync::Arc;

impl Graph {
    /// Name number `id`; the artifact reader checks every road's, so the default is for
    /// hand-built networks only.
    fn name(&self, id: u32) -> Arc<str> {
        self.net.names.get(id as usize).cloned().unwrap_or_default()
    }

    pub(super) fn direct_route(
        &self,
        from: &Snap,
        to: &Snap,
        w: Weight,
        backward: bool,
        detail: Detail,
    ) -> Route {
        if detail == Detail::Summary {
            return Route {
                duration_s: w.duration_s(),
                distance_m: w.distance_m(),
                geometry: Vec::new(),
                nodes: Vec::new(),
                segments: vec![RouteSegment {
                    name: self.name(self.net.roads[from.road as usize].name),
                    duration_s: w.duration_s(),
                    distance_m: w.distance_m(),
                    geometry: 0..0,
                }],
            };
        }
        let road = &self.net.roads[from.road as usize];
        let pts = self.net.geometry(road);
        let ids = self.net.point_ids(road);
        let with_ids = detail == Detail::Full;
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
        let mut nodes = Vec::new();
        if with_ids {
            nodes.reserve_exact(inner.len() + 2);
            nodes.push(ids[first]);
            nodes.extend(inner.iter().map(|&i| ids[i]));
            nodes.push(ids[last]);
        }
        let segments = vec![RouteSegment {
            name: self.name(self.net.roads[from.road as usize].name),
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

    pub(super) fn assemble_route(
        &self,
        from: &Snap,
        to: &Snap,
        found: &ch::Found,
        edges: &[EdgeId],
        detail: Detail,
    ) -> Route {
        let shape = detail != Detail::Summary;
        let with_ids = detail == Detail::Full;
        // Sized exactly (every edge adds its shape points but the first; the two partial
        // roads add at most all of theirs plus the two snapped points), so the copies below
        // never reallocate: regrowing cost a tenth of a Porto route.
        let road_len = |road: u32| self.net.roads[road as usize].geometry_len as usize;
        let points = if shape {
            edges.iter().map(|e| road_len(e.road()) - 1).sum::<usize>()
                + road_len(from.road)
                + road_len(to.road)
                + 2
        } else {
            0
        };
        let mut geometry: Vec<Coord> = Vec::with_capacity(points);
        let mut nodes: Vec<i64> = Vec::with_capacity(if with_ids { points } else { 0 });
        if shape {
            geometry.push(from.location);
        }
        // (name id, weight, geometry start); consecutive pieces of equally named roads are
        // merged: that is the unit turn-by-turn steps are made of, and it saves a string
        // per edge on the hot path. A Porto route has a handful; room for more than most.
        let mut pieces: Vec<(u32, Weight, usize)> = Vec::with_capacity(16);
        let net = &self.net;
        let push = |geometry: &mut Vec<Coord>,
                    nodes: &mut Vec<i64>,
                    pieces: &mut Vec<(u32, Weight, usize)>,
                    range: std::ops::Range<usize>,
                    backward: bool,
                    last: Option<(Coord, usize)>,
                    road: u32,
                    w: Weight| {
            let start = geometry.len().saturating_sub(1);
            if shape {
                append(net, geometry, with_ids.then_some(nodes), range, backward);
                // The snapped end point, named after the shape point `id` ahead of it.
                if let Some((c, id)) = last {
                    geometry.push(c);
                    if with_ids {
                        nodes.push(net.point_ids[id]);
                    }
                }
            }
            merge(pieces, net.roads[road as usize].name, w, start);
        };

        // The first partial road: towards `to` if we left through the road's end node.
        let rs = &self.net.roads[from.road as usize];
        let base = rs.geometry_start as usize;
        let len = rs.geometry_len as usize;
        let seg = from.segment as usize;
        let first_node = |i: usize| with_ids.then(|| self.net.point_ids[i]);
        if Some(found.source) == self.turns.arrive(EdgeId::new(from.road, false)) {
            nodes.extend(first_node(base + seg));
            let w = rs.forward.scale(1.0 - from.fraction);
            let range = base + seg + 1..base + len;
            push(
                &mut geometry,
                &mut nodes,
                &mut pieces,
                range,
                false,
                None,
                from.road,
                w,
            );
        } else {
            nodes.extend(first_node(base + seg + 1));
            let w = rs.backward.scale(from.fraction);
            let range = base..base + seg + 1;
            push(
                &mut geometry,
                &mut nodes,
                &mut pieces,
                range,
                true,
                None,
                from.road,
                w,
            );
        }

        // The path itself, a few hundred edges of two or three points each: written out
        // here rather than through `push`, which the compiler keeps as a call (its
        // prologue, arguments and epilogue cost more than the copying of a short edge).
        for edge in edges {
            let road = &net.roads[edge.road() as usize];
            let backward = edge.is_backward();
            let start = geometry.len().saturating_sub(1);
            if shape {
                let base = road.geometry_start as usize;
                let end = base + road.geometry_len as usize;
                // The junction the edge starts at is already in the geometry.
                let range = if backward {
                    base..end - 1
                } else {
                    base + 1..end
                };
                append(
                    net,
                    &mut geometry,
                    with_ids.then_some(&mut nodes),
                    range,
                    backward,
                );
            }
            merge(&mut pieces, road.name, road.weight(backward), start);
        }

        // The last partial road: we arrive from its start node when driving it forward.
        let rt = &self.net.roads[to.road as usize];
        let base = rt.geometry_start as usize;
        let len = rt.geometry_len as usize;
        let seg = to.segment as usize;
        let forward = EdgeId::new(to.road, false);
        if self.turns.departures(forward).any(|n| n == found.target) {
            let w = rt.forward.scale(to.fraction);
            let last = Some((to.location, base + seg + 1));
            let range = base + 1..base + seg + 1;
            push(
                &mut geometry,
                &mut nodes,
                &mut pieces,
                range,
                false,
                last,
                to.road,
                w,
            );
        } else {
            let w = rt.backward.scale(1.0 - to.fraction);
            let last = Some((to.location, base + seg));
            let range = base + seg + 1..base + len - 1;
            push(
                &mut geometry,
                &mut nodes,
                &mut pieces,
                range,
                true,
                last,
                to.road,
                w,
            );
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
                name: self.name(name),
                duration_s: w.duration_s(),
                distance_m: w.distance_m(),
                geometry: if shape { start..end } else { 0..0 },
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

/// Appends the network's shape points `range` (reversed if `backward`) and, if `nodes` is
/// given, their OSM node ids.
#[inline(always)]
fn append(
    net: &RoadNetwork,
    geometry: &mut Vec<Coord>,
    nodes: Option<&mut Vec<i64>>,
    range: std::ops::Range<usize>,
    backward: bool,
) {
    let points = &net.points[range.clone()];
    if backward {
        geometry.extend(points.iter().rev());
    } else {
        geometry.extend_from_slice(points);
    }
    if let Some(nodes) = nodes {
        let ids = &net.point_ids[range];
        if backward {
            nodes.extend(ids.iter().rev());
        } else {
            nodes.extend_from_slice(ids);
        }
    }
}

/// Adds a stretch of road named `name` with weight `w` starting at geometry index `start`,
/// extending the last piece if it has the same name.
#[inline(always)]
fn merge(pieces: &mut Vec<(u32, Weight, usize)>, name: u32, w: Weight, start: usize) {
    match pieces.last_mut() {
        Some(last) if last.0 == name => last.1 = last.1.add(w),
        _ => pieces.push((name, w, start)),
    }
}
