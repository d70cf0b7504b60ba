//! Snapping coordinates onto road segments with an R-tree.

use crate::geo::{Coord, LocalProjection, haversine_m, lerp};
use crate::network::RoadNetwork;
use crate::{Error, Result};
use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

/// A coordinate placed on the nearest point of a road.
#[derive(Debug, Clone, PartialEq)]
pub struct Snap {
    /// The coordinate that was asked for.
    pub input: Coord,
    /// The nearest point on the road network.
    pub location: Coord,
    /// Great-circle distance from `input` to `location`, metres.
    pub distance_m: f64,
    /// Name (or ref) of the road snapped to; empty when the road has none.
    pub name: String,
    /// The graph instance this snap belongs to: a snap is only meaningful on the graph that
    /// made it (road indices differ between versions), so queries check this.
    pub(crate) graph: u64,
    pub(crate) road: u32,
    /// Index of the geometry segment (`points[segment]..points[segment + 1]`) holding
    /// `location`.
    pub(crate) segment: u32,
    /// Position along the road as a share of its length, `0.0` at `from`, `1.0` at `to`.
    pub(crate) fraction: f64,
}

/// Segment ends in metres from the graph's centre, as `f32`: within 100 km of it they are
/// exact to under 4 mm, and each tree entry is 24 bytes instead of 40 (the tree was the
/// largest single holder of an idle agent's memory, 25 MB on Porto).
type Segment = GeomWithData<Line<[f32; 2]>, (u32, u32)>;

/// The spatial index over every segment of every road.
#[derive(Debug)]
pub(crate) struct SnapIndex {
    tree: RTree<Segment>,
    projection: LocalProjection,
    /// The projected centre of the graph, subtracted before narrowing to `f32`.
    origin: [f64; 2],
    graph: u64,
}

/// `p` relative to `origin`, narrowed for the tree.
fn local(p: [f64; 2], origin: [f64; 2]) -> [f32; 2] {
    [(p[0] - origin[0]) as f32, (p[1] - origin[1]) as f32]
}

impl SnapIndex {
    pub(crate) fn build(net: &RoadNetwork, graph: u64) -> Self {
        let (min, max) = net.nodes.iter().fold(
            ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]),
            |(lo, hi), c| {
                (
                    [lo[0].min(c.lon), lo[1].min(c.lat)],
                    [hi[0].max(c.lon), hi[1].max(c.lat)],
                )
            },
        );
        let centre = if min[1].is_finite() {
            Coord {
                lon: (min[0] + max[0]) / 2.0,
                lat: (min[1] + max[1]) / 2.0,
            }
        } else {
            Coord { lon: 0.0, lat: 0.0 }
        };
        let projection = LocalProjection::new(centre.lat);
        let origin = projection.project(centre);
        let mut segments = Vec::with_capacity(net.points.len());
        for (r, road) in net.roads.iter().enumerate() {
            for (s, pair) in net.geometry(road).windows(2).enumerate() {
                let line = Line::new(
                    local(projection.project(pair[0]), origin),
                    local(projection.project(pair[1]), origin),
                );
                segments.push(GeomWithData::new(line, (r as u32, s as u32)));
            }
        }
        Self {
            tree: RTree::bulk_load(segments),
            projection,
            origin,
            graph,
        }
    }

    /// Up to `number` snaps on distinct roads within `radius_m`, nearest first.
    pub(crate) fn nearest(
        &self,
        net: &RoadNetwork,
        at: Coord,
        number: usize,
        radius_m: f64,
    ) -> Result<Vec<Snap>> {
        let at = Coord::new(at.lon, at.lat)?;
        let no_segment = Error::NoSegment {
            lon: at.lon,
            lat: at.lat,
            radius_m,
        };
        if number == 0 || radius_m.is_nan() || radius_m < 0.0 {
            return Err(no_segment);
        }
        let p = local(self.projection.project(at), self.origin);
        // The projection is approximate; search a little wider and filter on the exact
        // great-circle distance.
        let slack = radius_m * 1.01 + 1.0;
        let mut out: Vec<Snap> = Vec::with_capacity(number);
        for (seg, d2) in self.tree.nearest_neighbor_iter_with_distance_2(&p) {
            if f64::from(d2).sqrt() > slack {
                break;
            }
            let (road, segment) = seg.data;
            if out.iter().any(|s| s.road == road) {
                continue;
            }
            let snap = self.place(net, at, road, segment, seg.geom());
            if snap.distance_m <= radius_m {
                out.push(snap);
                if out.len() == number {
                    break;
                }
            }
        }
        if out.is_empty() {
            return Err(no_segment);
        }
        out.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        Ok(out)
    }

    fn place(
        &self,
        net: &RoadNetwork,
        at: Coord,
        road: u32,
        segment: u32,
        line: &Line<[f32; 2]>,
    ) -> Snap {
        let p = self.projection.project(at);
        let p = [p[0] - self.origin[0], p[1] - self.origin[1]];
        let widen = |q: [f32; 2]| [f64::from(q[0]), f64::from(q[1])];
        let (a, b) = (widen(line.from), widen(line.to));
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let r = &net.roads[road as usize];
        let geometry = net.geometry(r);
        let s = segment as usize;
        let location = lerp(geometry[s], geometry[s + 1], t);
        let mut before = 0.0;
        let mut total = 0.0;
        for (i, pair) in geometry.windows(2).enumerate() {
            let len = haversine_m(pair[0], pair[1]);
            if i < s {
                before += len;
            } else if i == s {
                before += len * t;
            }
            total += len;
        }
        let fraction = if total > 0.0 {
            (before / total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Snap {
            input: at,
            location,
            distance_m: haversine_m(at, location),
            name: net
                .names
                .get(r.name as usize)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            graph: self.graph,
            road,
            segment,
            fraction,
        }
    }
}
