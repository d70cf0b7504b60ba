//! The engine's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the engine. Variants are stable so callers can map them
/// onto protocol codes (OSRM's `NoSegment`, `NoRoute`, ...) and metrics labels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A coordinate that is not a finite longitude/latitude pair within range.
    #[error(
        "invalid coordinate ({lon}, {lat}): longitude must be within [-180, 180] and latitude within [-90, 90]"
    )]
    InvalidCoordinate {
        /// The longitude given.
        lon: f64,
        /// The latitude given.
        lat: f64,
    },
    /// An encoded polyline that cannot be decoded.
    #[error("invalid polyline: it {0}")]
    InvalidPolyline(String),
    /// No road segment lies within the snapping radius of a coordinate.
    #[error("no road segment within {radius_m} m of ({lon}, {lat})")]
    NoSegment {
        /// The longitude given.
        lon: f64,
        /// The latitude given.
        lat: f64,
        /// The radius searched, in metres.
        radius_m: f64,
    },
    /// The two points are not connected in the road graph.
    #[error("no route between the given points")]
    NoRoute,
    /// A snap made by a different graph (for example before a version swap) was passed to
    /// a query; snap again on the graph being queried.
    #[error("the snapped point belongs to another graph version")]
    ForeignSnap,
    /// The map holds no usable car road.
    #[error("the map contains no drivable roads")]
    NoRoads,
    /// The OSM file could not be read or decoded.
    #[error("cannot read OSM data from {path}")]
    Osm {
        /// The file being read.
        path: PathBuf,
        /// What the PBF reader reported.
        #[source]
        source: osmpbf::Error,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A graph artifact is malformed.
    #[error("invalid graph artifact")]
    Artifact(#[from] ArtifactError),
}

/// Why a graph artifact was rejected. None of these ever yields a partially loaded graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The file does not start with the artifact magic bytes.
    #[error("not an edgeroute graph artifact (bad magic bytes)")]
    BadMagic,
    /// The artifact was written by an incompatible format version.
    #[error(
        "unsupported artifact format version {found} (this build reads version {supported}): rebuild the graph from OSM with `graph build`"
    )]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file is shorter than its header says.
    #[error("artifact is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The payload does not match its checksum.
    #[error("artifact checksum mismatch: the file is corrupted")]
    ChecksumMismatch,
    /// The payload passed its checksum but its contents are inconsistent.
    #[error("artifact payload is inconsistent: {0}")]
    Malformed(String),
}

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
