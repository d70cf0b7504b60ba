//! The edgeroute routing engine: everything that turns a road map into answers, with no
//! network, storage or async runtime in sight.
//!
//! # Layout
//! - [`geo`]: coordinates, great-circle distance, bearings.
//! - [`profile`]: the car and truck profiles (which OSM ways are roads, how fast, which
//!   way).
//! - [`import`]: OSM PBF -> [`RoadNetwork`] (junction graph, largest strongly connected
//!   component only).
//! - `network` (private): the unprepared [`RoadNetwork`] (junctions, roads, shape points,
//!   names); `weight` (private): the integer (duration, distance) edge weight.
//! - `ch` (private): contraction-hierarchy preprocessing and queries.
//! - `snap` (private): the grid index over road segments behind [`Snap`].
//! - `turns` (private): turn restrictions, by splitting the junctions they constrain.
//! - [`Graph`]: the prepared, immutable graph that answers `snap`, `nearest`, `route` and
//!   `table`; share it behind an `Arc`. Its identity is [`Graph::sha256`].
//! - [`artifact`]: the versioned, checksummed binary file a prepared graph is stored as;
//!   `graph` depends on it, never the reverse.
//! - [`polyline`]: Google polyline encoding (precision 5 and 6). Wire shapes such as
//!   GeoJSON live in `edgeroute-protocol`: the engine has no serde.
//! - [`Error`]: the one error type, with [`ArtifactError`] for rejected files.
//! - [`oracle`]: a plain Dijkstra (petgraph) over the unprepared network, the reference
//!   every CH answer is checked against.
//!
//! # Weights
//! Every edge carries an integer duration (milliseconds) and distance (decimetres). The
//! search minimises duration and breaks ties by distance, so the fastest route is unique up
//! to equal (duration, distance) pairs and a CH answer can be compared exactly with the
//! oracle's.

pub mod artifact;
mod ch;
mod error;
pub mod geo;
mod graph;
pub mod import;
mod network;
pub mod oracle;
pub mod polyline;
pub mod profile;
mod snap;
mod turns;
mod weight;

pub use error::{ArtifactError, Error, Result};
pub use geo::Coord;
pub use graph::{
    BuildOptions, BuildProgress, Detail, Graph, GraphInfo, ProgressFn, Route, RouteSegment,
    SearchSpace, Table,
};
pub use network::{
    NodeHandle, RestrictionStats, RoadHandle, RoadNetwork, RoadNetworkBuilder, RoadSummary,
};
pub use profile::{CarProfile, Profile, TruckDimensions, Vehicle};
pub use snap::Snap;
