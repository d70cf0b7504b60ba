//! Route assembly: a hierarchy path (or a stretch of a single road) turned into geometry,
//! OSM node ids and named segments.

use super::{Detail, Graph, Route, RouteSegment};
use crate::ch;
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
        let road = &self.net.roads[from.road as usize];
        if detail == Detail::Summary {
            return Route {
                duration_s: w.duration_s(),
                distance_m: w.distance_m(),
                geometry: Vec::new(),
                nodes: Vec::new(),
                segments: vec![RouteSegment {
                    name: self.name(road.name),
                    duration_s: w.duration_s(),
                    distance_m: w.distance_m(),
                    geometry: 0..0,
                }],
            };
        }
        let pts = self.net.geometry(road);
        let ids = self.net.point_ids(road);
        let with_ids = detail == Detail::Full;
        let (a, b) = (from.segment as usize, to.segment as usize);
        // Points strictly between the two snaps (none if they share a segment); the snaps
        // themselves are named after the node behind the start and the node ahead of the
        // end.
        let (inner, first, last) = if backward {
            (b + 1..(a + 1).max(b + 1), a + 1, b)
        } else {
            (a + 1..(b + 1).max(a + 1), a, b + 1)
        };
        let mut geometry = Vec::with_capacity(inner.len() + 2);
        geometry.push(from.location);
        append(pts, &mut geometry, inner.clone(), backward);
        geometry.push(to.location);
        let mut nodes = Vec::new();
        if with_ids {
            nodes.reserve_exact(inner.len() + 2);
            nodes.push(ids[first]);
            append(ids, &mut nodes, inner, backward);
            nodes.push(ids[last]);
        }
        let segments = vec![RouteSegment {
            name: self.name(road.name),
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
        let net = &self.net;
        // The two partial roads: the stretch of shape points each adds, its direction and
        // weight. The first is driven towards `to` if we left through the road's end node;
        // on the last we arrive from its start node when driving it forward.
        let rs = &net.roads[from.road as usize];
        let (base, len, seg) = (
            rs.geometry_start as usize,
            rs.geometry_len as usize,
            from.segment as usize,
        );
        let head = if Some(found.source) == self.turns.arrive(EdgeId::new(from.road, false)) {
            Stretch {
                points: base + seg + 1..base + len,
                backward: false,
                weight: rs.forward.scale(1.0 - from.fraction),
                named_after: base + seg,
            }
        } else {
            Stretch {
                points: base..base + seg + 1,
                backward: true,
                weight: rs.backward.scale(from.fraction),
                named_after: base + seg + 1,
            }
        };
        let rt = &net.roads[to.road as usize];
        let (base, len, seg) = (
            rt.geometry_start as usize,
            rt.geometry_len as usize,
            to.segment as usize,
        );
        let forward = EdgeId::new(to.road, false);
        let tail = if self.turns.departures(forward).any(|n| n == found.target) {
            Stretch {
                points: base + 1..base + seg + 1,
                backward: false,
                weight: rt.forward.scale(to.fraction),
                named_after: base + seg + 1,
            }
        } else {
            Stretch {
                points: base + seg + 1..base + len - 1,
                backward: true,
                weight: rt.backward.scale(1.0 - to.fraction),
                named_after: base + seg,
            }
        };

        // Names and weights first, counting the points as we go: that sizes the geometry
        // exactly, and keeps each loop short. One loop doing both kept more values alive
        // than there are registers, and the spills cost more than reading the road records
        // twice (the second time from the cache).
        //
        // (name id, weight, geometry start); consecutive pieces of equally named roads are
        // merged: that is the unit turn-by-turn steps are made of, and it saves a string
        // per edge on the hot path. A route across Porto has about 23.
        let mut pieces: Vec<(u32, Weight, usize)> = Vec::with_capacity(32);
        merge(&mut pieces, rs.name, head.weight, 0);
        // Points so far: the snapped start and the first road's stretch.
        let mut points = 1 + head.points.len();
        for edge in edges {
            let road = &net.roads[edge.road() as usize];
            merge(
                &mut pieces,
                road.name,
                road.weight(edge.is_backward()),
                points - 1,
            );
            // The junction the edge starts at is already in the geometry.
            points += road.geometry_len as usize - 1;
        }
        merge(&mut pieces, rt.name, tail.weight, points - 1);
        points += tail.points.len() + 1;

        let (mut geometry, mut nodes) = (Vec::new(), Vec::new());
        if detail != Detail::Summary {
            geometry = Vec::with_capacity(points + CHUNK);
            geometry.push(from.location);
            append(
                &net.points,
                &mut geometry,
                head.points.clone(),
                head.backward,
            );
            copy_path(net, edges, &net.points, &mut geometry);
            append(
                &net.points,
                &mut geometry,
                tail.points.clone(),
                tail.backward,
            );
            geometry.push(to.location);
        }
        if detail == Detail::Full {
            nodes = Vec::with_capacity(points + CHUNK);
            nodes.push(net.point_ids[head.named_after]);
            append(&net.point_ids, &mut nodes, head.points, head.backward);
            copy_path(net, edges, &net.point_ids, &mut nodes);
            append(&net.point_ids, &mut nodes, tail.points, tail.backward);
            nodes.push(net.point_ids[tail.named_after]);
        }

        let shape = detail != Detail::Summary;
        let ends = pieces
            .iter()
            .skip(1)
            .map(|p| p.2 + 1)
            .chain(std::iter::once(points));
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

/// The part of a partial road (the first or the last of a route) that a route drives.
struct Stretch {
    /// Its shape points between the snapped point and the junction, in storage order.
    points: std::ops::Range<usize>,
    /// Whether they are driven last first.
    backward: bool,
    /// The share of the road's weight driven.
    weight: Weight,
    /// The shape point whose OSM id names the snapped point: the node behind the start, or
    /// the node ahead of the end, in travel direction.
    named_after: usize,
}

/// Most edges add at most this many points; [`copy_path`] copies them in one fixed-size
/// move.
const CHUNK: usize = 8;

/// Appends what `per_point` holds (shape points or their OSM ids) for every edge of the
/// path but its first point, the junction already written. `out` should have room for
/// [`CHUNK`] items beyond what it will hold, or the last copies reallocate.
///
/// An edge adds one to a dozen points. Copied as they are (a call to `memcpy`, or a loop
/// backwards), the branches on their number missed about once per edge (callgrind's
/// branch simulation: 134 mispredictions per Porto route here, a fifth of the query's);
/// so an edge of up to `CHUNK` points is copied as `CHUNK`, every time the same moves,
/// and the length set back. A loop of its own, not inlined into the assembly, so that its
/// few values stay in registers.
#[inline(never)]
fn copy_path<T: Copy>(net: &RoadNetwork, edges: &[EdgeId], per_point: &[T], out: &mut Vec<T>) {
    for edge in edges {
        let road = &net.roads[edge.road() as usize];
        let base = road.geometry_start as usize;
        // The junction the edge starts at is already written.
        let added = road.geometry_len as usize - 1;
        let len = out.len();
        if edge.is_backward() {
            // base..base + added, last first: the chunk that ends where they do.
            let chunk = (base + added)
                .checked_sub(CHUNK)
                .and_then(|from| per_point.get(from..from + CHUNK))
                .and_then(|c| <&[T; CHUNK]>::try_from(c).ok());
            match chunk {
                Some(c) if added <= CHUNK => {
                    let mut reversed = *c;
                    reversed.reverse();
                    out.extend_from_slice(&reversed);
                    out.truncate(len + added);
                }
                _ => append(per_point, out, base..base + added, true),
            }
        } else {
            let chunk = per_point
                .get(base + 1..base + 1 + CHUNK)
                .and_then(|c| <&[T; CHUNK]>::try_from(c).ok());
            match chunk {
                Some(c) if added <= CHUNK => {
                    out.extend_from_slice(c);
                    out.truncate(len + added);
                }
                _ => append(per_point, out, base + 1..base + 1 + added, false),
            }
        }
    }
}

/// Appends `per_point[range]`, reversed if `backward`.
#[inline(always)]
fn append<T: Copy>(
    per_point: &[T],
    out: &mut Vec<T>,
    range: std::ops::Range<usize>,
    backward: bool,
) {
    let items = &per_point[range];
    if backward {
        out.extend(items.iter().rev());
    } else {
        out.extend_from_slice(items);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Coord;
    use crate::profile::Direction;

    /// The chunked copy gives what copying each edge's points one by one gives: for roads
    /// of 1 to 20 added points (below, at and above `CHUNK`), driven both ways, including
    /// the first road in the array (whose backward chunk would start before it) and the
    /// last (whose forward chunk would run past the end), with points and with OSM ids.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn chunked_copy_equals_copying_point_by_point() {
        let mut b = RoadNetwork::builder();
        let at = |i: usize, j: usize| Coord {
            lon: 8.0 + i as f64 * 1e-3 + j as f64 * 1e-5,
            lat: 41.0 + j as f64 * 1e-5,
        };
        let mut junction = b.add_node(at(0, 0));
        for i in 0..20 {
            let next = b.add_node(at(i + 1, 0));
            let interior: Vec<Coord> = (1..=i).map(|j| at(i, j)).collect();
            let ids: Vec<i64> = (0..i as i64 + 2).map(|k| 100 * i as i64 + k).collect();
            b.add_osm_road(junction, next, &interior, &ids, 50.0, Direction::Both, "")
                .unwrap();
            junction = next;
        }
        let net = b.build().unwrap();
        let roads = net.roads.len() as u32;
        assert_eq!(roads, 20);
        let one_by_one = |edges: &[EdgeId]| {
            let (mut points, mut ids) = (Vec::new(), Vec::new());
            for e in edges {
                let range = net.roads[e.road() as usize].geometry_range();
                let (p, i) = (&net.points[range.clone()], &net.point_ids[range]);
                if e.is_backward() {
                    points.extend(p[..p.len() - 1].iter().rev());
                    ids.extend(i[..i.len() - 1].iter().rev());
                } else {
                    points.extend_from_slice(&p[1..]);
                    ids.extend_from_slice(&i[1..]);
                }
            }
            (points, ids)
        };
        let mut paths: Vec<Vec<EdgeId>> = (0..roads)
            .flat_map(|r| [vec![EdgeId::new(r, false)], vec![EdgeId::new(r, true)]])
            .collect();
        paths.push((0..roads).map(|r| EdgeId::new(r, false)).collect());
        paths.push((0..roads).rev().map(|r| EdgeId::new(r, true)).collect());
        for edges in &paths {
            let (points, ids) = one_by_one(edges);
            let mut got = Vec::new();
            copy_path(&net, edges, &net.points, &mut got);
            assert_eq!(got, points, "{edges:?}");
            let mut got = Vec::new();
            copy_path(&net, edges, &net.point_ids, &mut got);
            assert_eq!(got, ids, "{edges:?}");
        }
    }
}
