//! Snapping coordinates onto road segments with a grid index.

use crate::geo::{Coord, LocalProjection, bounds, haversine_m, lerp};
use crate::network::RoadNetwork;
use crate::{Error, Result};
use grid::{Grid, Segment};

mod grid;
#[cfg(test)]
mod tests;

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

/// The spatial index over every segment of every road: a uniform grid of square cells, each
/// listing the segments that cross it ([`grid`]).
///
/// It replaced an R-tree (`rstar`): a snap reads the point's cell and the few around it that
/// could hold something nearer than what it has found, with no heap and no allocation, and
/// the entries lie in one array instead of a tree of small vectors. Porto figures are in
/// `docs/agent-benchmarks.md`.
#[derive(Debug)]
pub(crate) struct SnapIndex {
    projection: LocalProjection,
    /// The projected centre of the graph, subtracted before narrowing to `f32`.
    origin: [f64; 2],
    graph: u64,
    grid: Grid,
}

/// `p` relative to `origin`, narrowed for the index.
fn local(p: [f64; 2], origin: [f64; 2]) -> [f32; 2] {
    [(p[0] - origin[0]) as f32, (p[1] - origin[1]) as f32]
}

impl SnapIndex {
    pub(crate) fn build(net: &RoadNetwork, graph: u64) -> Self {
        let [min_lon, min_lat, max_lon, max_lat] = bounds(&net.nodes);
        let centre = if min_lat.is_finite() {
            Coord {
                lon: (min_lon + max_lon) / 2.0,
                lat: (min_lat + max_lat) / 2.0,
            }
        } else {
            Coord { lon: 0.0, lat: 0.0 }
        };
        let projection = LocalProjection::new(centre.lat);
        let origin = projection.project(centre);
        let mut segments = Vec::with_capacity(net.points.len());
        let mut ids = Vec::with_capacity(net.points.len());
        for (r, road) in net.roads.iter().enumerate() {
            for (s, pair) in net.geometry(road).windows(2).enumerate() {
                segments.push(Segment {
                    from: local(projection.project(pair[0]), origin),
                    to: local(projection.project(pair[1]), origin),
                });
                ids.push((r as u32, s as u32));
            }
        }
        Self {
            projection,
            origin,
            graph,
            grid: Grid::new(segments, ids),
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
        let p = self.projection.project(at);
        let p = [p[0] - self.origin[0], p[1] - self.origin[1]];
        // The projection is approximate; search a little wider and filter on the exact
        // great-circle distance.
        let slack = radius_m * 1.01 + 1.0;
        let slack2 = slack * slack;
        if number == 1 {
            // The nearest segment alone; ties go to the lowest (road, segment), so a point
            // at a junction snaps the same way every time.
            let best = std::cell::Cell::new((slack2, None::<usize>));
            self.grid.search(
                p,
                || best.get().0,
                |e, d2| {
                    let (b2, b) = best.get();
                    let better = match b {
                        None => d2 <= b2,
                        Some(b) => {
                            d2 < b2 || (d2 == b2 && self.grid.ids.get(e) < self.grid.ids.get(b))
                        }
                    };
                    if better {
                        best.set((d2, Some(e)));
                    }
                },
            );
            let Some(e) = best.get().1 else {
                return Err(no_segment);
            };
            if let Some(snap) = self.place(net, at, p, e)
                && snap.distance_m <= radius_m
            {
                return Ok(vec![snap]);
            }
            // Nearest in the projection but just beyond the radius on the sphere: the
            // others in range decide, as below.
        }
        let mut candidates: Vec<(f64, (u32, u32), usize)> = Vec::new();
        self.grid.search(
            p,
            || slack2,
            |e, d2| {
                if d2 <= slack2
                    && let Some(&id) = self.grid.ids.get(e)
                {
                    candidates.push((d2, id, e));
                }
            },
        );
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Snap> = Vec::with_capacity(number.min(candidates.len()));
        for (_, (road, _), e) in candidates {
            if out.iter().any(|s| s.road == road) {
                continue;
            }
            if let Some(snap) = self.place(net, at, p, e)
                && snap.distance_m <= radius_m
            {
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

    /// The snap onto entry `e`; `p` is `at` projected, relative to the origin.
    fn place(&self, net: &RoadNetwork, at: Coord, p: [f64; 2], e: usize) -> Option<Snap> {
        let (&(road, segment), line) = (self.grid.ids.get(e)?, self.grid.segments.get(e)?);
        let (t, _) = line.closest(p);
        let r = net.roads.get(road as usize)?;
        let geometry = net.geometry(r);
        let s = segment as usize;
        let location = lerp(*geometry.get(s)?, *geometry.get(s + 1)?, t);
        // The share of the road's length, measured in a projection true at the snapped
        // segment: its scale drifts by about a ten-thousandth per kilometre of latitude
        // from there, so the share is the great-circle one to that, and it spares two sines
        // and two cosines per shape point (a fifth of a snap).
        let projection = LocalProjection::new(location.lat);
        let mut before = 0.0;
        let mut total = 0.0;
        for (i, pair) in geometry.windows(2).enumerate() {
            let (a, b) = (projection.project(pair[0]), projection.project(pair[1]));
            // Metres in a local projection: no overflow for `hypot` to guard against, and
            // libm's `hypot` cost 50 instructions a call: 1k of a two-point `/route` on Porto.
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = (dx * dx + dy * dy).sqrt();
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
        Some(Snap {
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
        })
    }
}
