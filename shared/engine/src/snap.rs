//! Snapping coordinates onto road segments with a grid index.

use crate::geo::{Coord, LocalProjection, bounds, haversine_m, lerp};
use crate::network::RoadNetwork;
use crate::{Error, Result};

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

/// A road segment's ends in metres from the graph's centre, as `f32`: within 100 km of it
/// they are exact to under 4 mm.
#[derive(Debug, Clone, Copy)]
struct Segment {
    from: [f32; 2],
    to: [f32; 2],
}

impl Segment {
    fn ends(&self) -> ([f64; 2], [f64; 2]) {
        let widen = |q: [f32; 2]| [f64::from(q[0]), f64::from(q[1])];
        (widen(self.from), widen(self.to))
    }

    /// Where the point nearest `p` lies, as a share of the way from `from` to `to`, and its
    /// squared distance from `p`.
    fn closest(&self, p: [f64; 2]) -> (f64, f64) {
        let (a, b) = self.ends();
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (ex, ey) = (a[0] + t * dx - p[0], a[1] + t * dy - p[1]);
        (t, ex * ex + ey * ey)
    }
}

/// About this many segments per cell of the grid on average over its area (dense streets
/// hold more, fields and water none). Porto, 20,000 snaps of points drawn over its box
/// (`ch_queries porto.graph snap`): 0.5 gives 53 m cells and 3.4 µs per pair of snaps, 1
/// gives 75 m and 2.9 µs, 2 gives 106 m and 2.8 µs, 4 to 32 give 150 to 424 m and 2.6 to
/// 3.1 µs; the index takes 14.3, 11.6, 10.0 and 8.9 to 7.5 MB. Points in dense streets pay
/// for large cells, so 2.
const SEGMENTS_PER_CELL: f64 = 2.0;

/// The spatial index over every segment of every road: a uniform grid of square cells, each
/// listing the segments that cross it.
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
    /// The lower left corner of cell `(0, 0)`, metres from `origin`.
    corner: [f64; 2],
    /// A cell's side, metres.
    cell: f64,
    columns: usize,
    rows: usize,
    /// Where each cell's entries start in `segments` (row-major), and one more entry for the
    /// end of the last.
    starts: Vec<u32>,
    /// Every segment once per cell it crosses, by cell.
    segments: Vec<Segment>,
    /// Parallel to `segments`: the road and the segment's index along it.
    ids: Vec<(u32, u32)>,
}

/// `p` relative to `origin`, narrowed for the index.
fn local(p: [f64; 2], origin: [f64; 2]) -> [f32; 2] {
    [(p[0] - origin[0]) as f32, (p[1] - origin[1]) as f32]
}

/// The cells a segment crosses, row by row: `(row, first column, last column)`, widened by
/// a millimetre so a point on a cell border counts for both cells.
fn crossed(
    segment: &Segment,
    corner: [f64; 2],
    cell: f64,
    columns: usize,
    rows: usize,
) -> impl Iterator<Item = (usize, usize, usize)> {
    const EDGE: f64 = 1e-3;
    let (a, b) = segment.ends();
    let index = move |v: f64, origin: f64, count: usize| -> usize {
        // Clamped: the grid covers every segment, so only rounding lands outside it.
        (((v - origin) / cell).floor().max(0.0) as usize).min(count - 1)
    };
    let (low, high) = if a[1] <= b[1] { (a, b) } else { (b, a) };
    let first_row = index(low[1] - EDGE, corner[1], rows);
    let last_row = index(high[1] + EDGE, corner[1], rows);
    (first_row..=last_row).map(move |row| {
        // The part of the segment within this row's band, then its extent across.
        let band = (
            corner[1] + row as f64 * cell - EDGE,
            corner[1] + (row + 1) as f64 * cell + EDGE,
        );
        let x_at = |y: f64| {
            let dy = high[1] - low[1];
            if dy > 0.0 {
                low[0] + (high[0] - low[0]) * ((y - low[1]) / dy).clamp(0.0, 1.0)
            } else {
                low[0]
            }
        };
        let (x0, x1) = if high[1] - low[1] > 0.0 {
            (x_at(band.0.max(low[1])), x_at(band.1.min(high[1])))
        } else {
            (low[0], high[0])
        };
        let (left, right) = (x0.min(x1) - EDGE, x0.max(x1) + EDGE);
        (
            row,
            index(left, corner[0], columns),
            index(right, corner[0], columns),
        )
    })
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
        let (lo, hi) = segments.iter().fold(
            ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]),
            |(lo, hi), s| {
                let (a, b) = s.ends();
                (
                    [lo[0].min(a[0]).min(b[0]), lo[1].min(a[1]).min(b[1])],
                    [hi[0].max(a[0]).max(b[0]), hi[1].max(a[1]).max(b[1])],
                )
            },
        );
        let (corner, extent) = if lo[0].is_finite() {
            (lo, [hi[0] - lo[0], hi[1] - lo[1]])
        } else {
            ([0.0; 2], [0.0; 2])
        };
        // Cells of a side that gives about SEGMENTS_PER_CELL per cell over the box, but no
        // smaller than 10 m (a map of a few streets) and no more than 2^24 cells.
        let area = extent[0].max(1.0) * extent[1].max(1.0);
        let mut cell = (area * SEGMENTS_PER_CELL / segments.len().max(1) as f64)
            .sqrt()
            .max(10.0);
        let dims = |cell: f64| {
            (
                (extent[0] / cell).floor() as usize + 1,
                (extent[1] / cell).floor() as usize + 1,
            )
        };
        while dims(cell).0 * dims(cell).1 > 1 << 24 {
            cell *= 2.0;
        }
        loop {
            let (columns, rows) = dims(cell);
            if let Some(index) = Self::fill(&segments, &ids, corner, cell, columns, rows) {
                let (starts, segments, ids) = index;
                return Self {
                    projection,
                    origin,
                    graph,
                    corner,
                    cell,
                    columns,
                    rows,
                    starts,
                    segments,
                    ids,
                };
            }
            // More entries than a u32 can count (segments crossing many cells): coarser.
            cell *= 2.0;
        }
    }

    /// Lists every segment under each cell it crosses (a counting sort by cell), or `None`
    /// when the entries would overflow the `u32` offsets.
    #[allow(clippy::type_complexity)]
    fn fill(
        segments: &[Segment],
        ids: &[(u32, u32)],
        corner: [f64; 2],
        cell: f64,
        columns: usize,
        rows: usize,
    ) -> Option<(Vec<u32>, Vec<Segment>, Vec<(u32, u32)>)> {
        let mut counts = vec![0u64; columns * rows + 1];
        for s in segments {
            for (row, first, last) in crossed(s, corner, cell, columns, rows) {
                for c in &mut counts[row * columns + first..=row * columns + last] {
                    *c += 1;
                }
            }
        }
        let total: u64 = counts.iter().sum();
        if total > u64::from(u32::MAX) {
            return None;
        }
        // Exclusive prefix sums: the start of each cell, and the end as the last entry.
        let mut starts = Vec::with_capacity(counts.len());
        let mut sum = 0u32;
        for c in counts {
            starts.push(sum);
            sum += c as u32;
        }
        let mut next = starts.clone();
        let empty = Segment {
            from: [0.0; 2],
            to: [0.0; 2],
        };
        let mut placed = vec![empty; total as usize];
        let mut placed_ids = vec![(0, 0); total as usize];
        for (s, &id) in segments.iter().zip(ids) {
            for (row, first, last) in crossed(s, corner, cell, columns, rows) {
                for at in &mut next[row * columns + first..=row * columns + last] {
                    placed[*at as usize] = *s;
                    placed_ids[*at as usize] = id;
                    *at += 1;
                }
            }
        }
        Some((starts, placed, placed_ids))
    }

    /// The entries of the cell at `(column, row)`.
    fn cell_entries(&self, column: usize, row: usize) -> std::ops::Range<usize> {
        let c = row * self.columns + column;
        match (self.starts.get(c), self.starts.get(c + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }

    /// Visits the entries of every cell that could hold a segment within `sqrt(limit2())`
    /// of `p`, nearest ring of cells first, until no unvisited cell can: `visit` gets each
    /// entry's index and squared distance, and `limit2` may shrink as it goes.
    fn search(
        &self,
        p: [f64; 2],
        mut limit2: impl FnMut() -> f64,
        mut visit: impl FnMut(usize, f64),
    ) {
        if self.segments.is_empty() {
            return;
        }
        let cell_of = |v: f64, origin: f64| ((v - origin) / self.cell).floor();
        let (cx, cy) = (cell_of(p[0], self.corner[0]), cell_of(p[1], self.corner[1]));
        // Cell coordinates as f64: a point far outside the grid must not overflow.
        let (last_x, last_y) = ((self.columns - 1) as f64, (self.rows - 1) as f64);
        let mut k = 0.0f64;
        loop {
            if k == 0.0 {
                self.scan(p, cx, cy, &mut limit2, &mut visit);
            } else {
                // The ring at distance k, clipped to the grid.
                let x_range = (cx - k).max(0.0)..=(cx + k).min(last_x);
                for y in [cy - k, cy + k] {
                    if (0.0..=last_y).contains(&y) {
                        let mut x = *x_range.start();
                        while x <= *x_range.end() {
                            self.scan(p, x, y, &mut limit2, &mut visit);
                            x += 1.0;
                        }
                    }
                }
                for x in [cx - k, cx + k] {
                    if (0.0..=last_x).contains(&x) {
                        let mut y = (cy - k + 1.0).max(0.0);
                        while y <= (cy + k - 1.0).min(last_y) {
                            self.scan(p, x, y, &mut limit2, &mut visit);
                            y += 1.0;
                        }
                    }
                }
            }
            // Everything not yet visited lies beyond the block of rings 0..=k, on a side
            // where the grid goes on.
            let mut margin = f64::INFINITY;
            if cx - k > 0.0 {
                margin = margin.min(p[0] - (self.corner[0] + (cx - k) * self.cell));
            }
            if cx + k < last_x {
                margin = margin.min(self.corner[0] + (cx + k + 1.0) * self.cell - p[0]);
            }
            if cy - k > 0.0 {
                margin = margin.min(p[1] - (self.corner[1] + (cy - k) * self.cell));
            }
            if cy + k < last_y {
                margin = margin.min(self.corner[1] + (cy + k + 1.0) * self.cell - p[1]);
            }
            if margin == f64::INFINITY || margin.max(0.0).powi(2) > limit2() {
                return;
            }
            k += 1.0;
        }
    }

    /// Visits the entries of cell `(x, y)` unless it lies outside the grid or wholly beyond
    /// the limit.
    fn scan(
        &self,
        p: [f64; 2],
        x: f64,
        y: f64,
        limit2: &mut impl FnMut() -> f64,
        visit: &mut impl FnMut(usize, f64),
    ) {
        let (last_x, last_y) = ((self.columns - 1) as f64, (self.rows - 1) as f64);
        if !(0.0..=last_x).contains(&x) || !(0.0..=last_y).contains(&y) {
            return;
        }
        let left = self.corner[0] + x * self.cell;
        let bottom = self.corner[1] + y * self.cell;
        let dx = (left - p[0]).max(p[0] - left - self.cell).max(0.0);
        let dy = (bottom - p[1]).max(p[1] - bottom - self.cell).max(0.0);
        if dx * dx + dy * dy > limit2() {
            return;
        }
        let entries = self.cell_entries(x as usize, y as usize);
        if let Some(segments) = self.segments.get(entries.clone()) {
            for (e, s) in entries.zip(segments) {
                visit(e, s.closest(p).1);
            }
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
            self.search(
                p,
                || best.get().0,
                |e, d2| {
                    let (b2, b) = best.get();
                    let better = match b {
                        None => d2 <= b2,
                        Some(b) => d2 < b2 || (d2 == b2 && self.ids.get(e) < self.ids.get(b)),
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
        self.search(
            p,
            || slack2,
            |e, d2| {
                if d2 <= slack2
                    && let Some(&id) = self.ids.get(e)
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
        let (&(road, segment), line) = (self.ids.get(e)?, self.segments.get(e)?);
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
            let len = (b[0] - a[0]).hypot(b[1] - a[1]);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::profile::Direction;

    /// What the index must answer, from a sorted list of every segment of every road: the
    /// nearest segments in the projection first, one snap per road, kept when within the
    /// radius on the sphere. This is what the R-tree's nearest-first iterator gave.
    fn scan_everything(
        index: &SnapIndex,
        net: &RoadNetwork,
        at: Coord,
        number: usize,
        radius_m: f64,
    ) -> Vec<(u32, u32, f64)> {
        let p = index.projection.project(at);
        let p = [p[0] - index.origin[0], p[1] - index.origin[1]];
        let slack = radius_m * 1.01 + 1.0;
        let mut all = Vec::new();
        for (r, road) in net.roads.iter().enumerate() {
            for (s, pair) in net.geometry(road).windows(2).enumerate() {
                let segment = Segment {
                    from: local(index.projection.project(pair[0]), index.origin),
                    to: local(index.projection.project(pair[1]), index.origin),
                };
                let d2 = segment.closest(p).1;
                if d2 <= slack * slack {
                    all.push((d2, (r as u32, s as u32)));
                }
            }
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<(u32, u32, f64)> = Vec::new();
        for (_, (road, segment)) in all {
            if out.len() == number || out.iter().any(|s| s.0 == road) {
                continue;
            }
            // Placed by hand as well: the fraction does not matter here, the distance does.
            let geometry = net.geometry(&net.roads[road as usize]);
            let (a, b) = (geometry[segment as usize], geometry[segment as usize + 1]);
            let segment_line = Segment {
                from: local(index.projection.project(a), index.origin),
                to: local(index.projection.project(b), index.origin),
            };
            let location = lerp(a, b, segment_line.closest(p).0);
            let distance = haversine_m(at, location);
            if distance <= radius_m {
                out.push((road, segment, distance));
            }
        }
        out.sort_by(|a, b| a.2.total_cmp(&b.2));
        out
    }

    /// Runs both over points in and around the network's box.
    fn compare(net: &RoadNetwork, points: usize, radii: &[f64], numbers: &[usize]) -> usize {
        let index = SnapIndex::build(net, 1);
        let [min_lon, min_lat, max_lon, max_lat] = bounds(&net.nodes);
        let mut state = 0x5eed_1234_u64;
        let mut unit = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut found = 0;
        for i in 0..points {
            // A margin of a fifth of the box on each side: points beyond the grid too.
            let (w, h) = (max_lon - min_lon, max_lat - min_lat);
            let at = Coord {
                lon: min_lon - w * 0.2 + unit() * w * 1.4,
                lat: min_lat - h * 0.2 + unit() * h * 1.4,
            };
            let radius = radii[i % radii.len()];
            let number = numbers[(i / radii.len()) % numbers.len()];
            let want = scan_everything(&index, net, at, number, radius);
            match index.nearest(net, at, number, radius) {
                Ok(got) => {
                    let got: Vec<_> = got
                        .iter()
                        .map(|s| (s.road, s.segment, s.distance_m))
                        .collect();
                    assert_eq!(got, want, "{at:?} radius {radius} number {number}");
                    found += 1;
                }
                Err(Error::NoSegment { .. }) => {
                    assert!(
                        want.is_empty(),
                        "{at:?} radius {radius}: none, want {want:?}"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        found
    }

    #[test]
    fn the_grid_answers_as_a_scan_of_every_segment_on_monaco() {
        let pbf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/monaco.osm.pbf");
        let net = crate::import::import_osm(&pbf, &crate::CarProfile::default()).unwrap();
        let found = compare(&net, 1500, &[3.0, 30.0, 300.0, 3000.0], &[1, 2, 7, 100_000]);
        assert!(found > 300 && found < 1500, "{found} of 1500 found a road");
    }

    /// Long diagonal roads cross many cells; a lone short road in a wide box leaves most
    /// cells empty, and the search must cross them.
    #[test]
    fn the_grid_answers_as_a_scan_with_long_roads_and_empty_cells() {
        let mut b = RoadNetwork::builder();
        let at = |lon: f64, lat: f64| Coord { lon, lat };
        let corners = [
            b.add_node(at(7.40, 43.70)),
            b.add_node(at(7.46, 43.76)),
            b.add_node(at(7.40, 43.76)),
            b.add_node(at(7.46, 43.70)),
            b.add_node(at(7.4301, 43.7301)),
            b.add_node(at(7.4302, 43.7301)),
        ];
        for (from, to, interior) in [
            (0, 1, vec![]),
            (2, 3, vec![at(7.43, 43.73), at(7.431, 43.728)]),
            (4, 5, vec![]),
            (0, 2, vec![at(7.39, 43.73)]),
        ] {
            b.add_road(
                corners[from],
                corners[to],
                &interior,
                50.0,
                Direction::Both,
                "r",
            )
            .unwrap();
        }
        let net = b.build().unwrap();
        let found = compare(&net, 2000, &[10.0, 200.0, 1000.0, 10_000.0], &[1, 2, 10]);
        assert!(found > 200 && found < 2000, "{found} of 2000 found a road");
    }
}
