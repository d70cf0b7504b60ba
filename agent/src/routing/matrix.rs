//! Travel matrices between snapped points, in the solver's integer units: what `/optimize`
//! (coordinate inputs) and `/trip` hand to the VRP solver.
//!
//! Unreachable pairs: the matrix is refused with [`MatrixError::Unreachable`], naming the
//! first such pair in row-major order, rather than filled with a large value. A tour or a
//! plan over a pair the road graph cannot connect cannot be driven, so each caller answers
//! with its routing error: `/optimize` VROOM's `code: 3` ("Unfound route from ... to ..."),
//! `/trip` OSRM's `NoRoute`. (The engine keeps only the largest strongly connected
//! component, so between snapped points this does not happen with a graph it built.)

use edgeroute_engine::{Graph, Snap};
use edgeroute_vrp::Matrix;

/// The unit of the duration matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Whole seconds, as VROOM's matrices.
    Seconds,
    /// Tenths of a second: finer ordering for short legs (`/trip`).
    Deciseconds,
}

impl TimeUnit {
    fn per_second(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Deciseconds => 10.0,
        }
    }
}

/// Durations and distances between every pair of snapped points, rounded to integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrices {
    /// Travel durations in the requested [`TimeUnit`].
    pub durations: Matrix,
    /// Travel distances in metres.
    pub distances: Matrix,
}

/// Why no matrix could be built.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The graph has no route from `snaps[from]` to `snaps[to]`.
    #[error("no route from point {from} to point {to}")]
    Unreachable {
        /// Row (source index).
        from: usize,
        /// Column (target index).
        to: usize,
    },
    /// A value does not fit the solver's matrix.
    #[error("travel matrix out of range")]
    Range(#[source] edgeroute_vrp::Error),
}

/// The matrices between every pair of `snaps` (rows are sources, columns targets).
pub fn matrix(graph: &Graph, snaps: &[Snap], unit: TimeUnit) -> Result<Matrices, MatrixError> {
    let table = graph.table(snaps, snaps);
    let n = snaps.len();
    let per_second = unit.per_second();
    let mut durations = Vec::with_capacity(n * n);
    let mut distances = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let (Some(d), Some(m)) = (table.duration_s(i, j), table.distance_m(i, j)) else {
                return Err(MatrixError::Unreachable { from: i, to: j });
            };
            durations.push((d * per_second).round() as i64);
            distances.push(m.round() as i64);
        }
    }
    Ok(Matrices {
        durations: Matrix::new("durations", n, durations).map_err(MatrixError::Range)?,
        distances: Matrix::new("distances", n, distances).map_err(MatrixError::Range)?,
    })
}

#[cfg(test)]
mod tests {
    use edgeroute_engine::{BuildOptions, Coord, RoadNetwork, profile::Direction};

    use super::*;

    /// Three junctions about 1.1 km apart on a two-way road at 36 km/h (10 m/s).
    fn line() -> (Graph, Vec<Snap>) {
        let mut b = RoadNetwork::builder();
        let at = |lat: f64| Coord::new(7.42, lat).unwrap();
        let nodes: Vec<_> = [43.70, 43.71, 43.72]
            .into_iter()
            .map(|lat| b.add_node(at(lat)))
            .collect();
        for pair in nodes.windows(2) {
            b.add_road(pair[0], pair[1], &[], 36.0, Direction::Both, "main");
        }
        let graph = Graph::from_network(b.build().unwrap(), &BuildOptions::default()).unwrap();
        let snaps = [43.70, 43.71, 43.72]
            .into_iter()
            .map(|lat| graph.snap(at(lat), 50.0).unwrap())
            .collect();
        (graph, snaps)
    }

    #[test]
    fn durations_in_the_unit_asked_distances_in_metres() {
        let (graph, snaps) = line();
        let s = matrix(&graph, &snaps, TimeUnit::Seconds).unwrap();
        let ds = matrix(&graph, &snaps, TimeUnit::Deciseconds).unwrap();
        assert_eq!(s.distances, ds.distances);
        assert_eq!(s.durations.at(0, 0), 0);
        let (d, m) = (s.durations.at(0, 2), s.distances.at(0, 2));
        assert!((2200..2250).contains(&m), "{m} m");
        // 10 m/s, within rounding.
        assert!((d - m / 10).abs() <= 1, "{d} s for {m} m");
        assert!((ds.durations.at(0, 2) - 10 * d).abs() <= 5);
        assert_eq!(s.durations.at(0, 2), s.durations.at(2, 0));
    }
}
