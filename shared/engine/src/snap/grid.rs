//! The grid behind [`super::SnapIndex`]: every road segment listed under each square cell
//! it crosses, and the search outward from a point's cell.

/// A road segment's ends in metres from the graph's centre, as `f32`: within 100 km of it
/// they are exact to under 4 mm.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) from: [f32; 2],
    pub(super) to: [f32; 2],
}

impl Segment {
    pub(super) fn ends(&self) -> ([f64; 2], [f64; 2]) {
        let widen = |q: [f32; 2]| [f64::from(q[0]), f64::from(q[1])];
        (widen(self.from), widen(self.to))
    }

    /// Where the point nearest `p` lies, as a share of the way from `from` to `to`, and its
    /// squared distance from `p`.
    pub(super) fn closest(&self, p: [f64; 2]) -> (f64, f64) {
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

/// A uniform grid of square cells, each listing the segments that cross it. Coordinates are
/// metres from the index's origin.
#[derive(Debug)]
pub(super) struct Grid {
    /// The lower left corner of cell `(0, 0)`.
    corner: [f64; 2],
    /// A cell's side, metres.
    cell: f64,
    columns: usize,
    rows: usize,
    /// Where each cell's entries start in `segments` (row-major), and one more entry for the
    /// end of the last.
    starts: Vec<u32>,
    /// Every segment once per cell it crosses, by cell.
    pub(super) segments: Vec<Segment>,
    /// Parallel to `segments`: the road and the segment's index along it.
    pub(super) ids: Vec<(u32, u32)>,
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

impl Grid {
    /// Lists `segments`, with their (road, segment) `ids`, under every cell they cross,
    /// with cells sized from their number.
    pub(super) fn new(segments: Vec<Segment>, ids: Vec<(u32, u32)>) -> Self {
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
    pub(super) fn search(
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
}
