//! The graph artifact: one versioned, checksummed binary file holding a prepared graph.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "EDGRGRPH"
//! 8       4     format version, u32 little-endian
//! 12      8     payload length in bytes, u64 LE
//! 20      32    sha256 of the payload
//! 52      ...   payload: version label, profile name, nodes, shape points and their OSM node ids, roads,
//!               names, turn restrictions and their import counts, turn tables, hierarchy
//! ```
//!
//! Format history: version 1 had no turn restrictions and no OSM node ids; such files are
//! refused with [`ArtifactError::UnsupportedVersion`] and must be rebuilt from OSM.
//!
//! Every number is little-endian; every list is a u64 count followed by its items. Loading
//! checks, in order, the magic, the format version, the length (truncation), the payload
//! digest (corruption) and then every index in the payload, so no file can make a query
//! read out of bounds. The spatial index is rebuilt on load from the shape points: that
//! takes a fraction of a second and keeps the file format independent of the index
//! layout.
//!
//! A graph's identity is the [`sha256`] of its whole artifact file, computed as the file is
//! written or checked, never by encoding a graph just to hash it. This module knows the
//! parts a graph is made of, not [`crate::Graph`]: the graph depends on its file format,
//! not the other way round.
//!
//! # Layout
//! - this module: the header constants, the identity hash and the parts an artifact holds;
//! - `write`: encoding; `read`: decoding with every check listed above;
//! - `varint`: the delta-varint coding of OSM node ids.

mod read;
mod varint;
mod write;

pub(crate) use read::decode;
pub(crate) use write::encode;

use crate::ch::Hierarchy;
use crate::error::ArtifactError;
use crate::network::RoadNetwork;
use crate::turns::TurnTables;
use sha2::{Digest, Sha256};

/// First bytes of every artifact.
pub const MAGIC: &[u8; 8] = b"EDGRGRPH";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// sha256 (hex) of a whole artifact file: the identity of a graph version.
pub fn sha256(bytes: &[u8]) -> String {
    hex_encode(&Sha256::digest(bytes))
}

/// What an artifact stores: everything a prepared graph is made of except the spatial
/// index, which is rebuilt on load.
#[derive(Debug)]
pub(crate) struct Contents {
    /// The version label given at build time.
    pub version: String,
    pub net: RoadNetwork,
    pub ch: Hierarchy,
    pub turns: TurnTables,
}

/// An encoded artifact and its identity.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    /// [`sha256`] of `bytes`.
    pub sha256: String,
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn malformed(what: &str) -> ArtifactError {
    ArtifactError::Malformed(what.to_owned())
}
