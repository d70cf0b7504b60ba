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
//! takes a fraction of a second and keeps the file format independent of the R-tree
//! crate's layout.
//!
//! A graph's identity is the [`sha256`] of its whole artifact file, computed as the file is
//! written or checked, never by encoding a graph just to hash it. This module knows the
//! parts a graph is made of, not [`crate::Graph`]: the graph depends on its file format,
//! not the other way round.

use crate::Result;
use crate::ch::{Hierarchy, UpwardGraph};
use crate::error::ArtifactError;
use crate::geo::Coord;
use crate::network::{EdgeId, Restriction, RestrictionStats, Road, RoadNetwork};
use crate::turns::{NO_NODE, TurnTables};
use crate::weight::Weight;
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

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u32(x));
    }
    fn weights(&mut self, v: &[Weight]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u64(x.0));
    }
    fn coords(&mut self, v: &[Coord]) {
        self.len(v.len());
        for c in v {
            self.f64(c.lon);
            self.f64(c.lat);
        }
    }
    fn upward(&mut self, g: &UpwardGraph) {
        self.u32s(&g.first);
        self.u32s(&g.head);
        self.weights(&g.weight);
        self.u32s(&g.arc);
    }
}

/// Serialises a prepared graph and computes its identity, in one pass over the data.
///
/// The payload is written straight after a reserved header, which is filled in once the
/// payload's length and digest are known: no second buffer, no copy. The identity then
/// needs one more hash over the finished file, because the header it covers holds the
/// payload digest.
pub(crate) fn encode(
    version: &str,
    net: &RoadNetwork,
    ch: &Hierarchy,
    turns: &TurnTables,
) -> Encoded {
    let ids = delta_varints(&net.point_ids);
    let len = encoded_len(version, net, ch, turns, ids.len());
    let mut w = Writer(Vec::with_capacity(len));
    w.0.resize(HEADER_LEN, 0);
    w.str(version);
    w.str(&net.profile);
    w.coords(&net.nodes);
    w.coords(&net.points);
    w.len(net.point_ids.len());
    w.len(ids.len());
    w.0.extend_from_slice(&ids);
    w.len(net.roads.len());
    for r in &net.roads {
        w.u32(r.from);
        w.u32(r.to);
        w.u32(r.geometry_start);
        w.u32(r.geometry_len);
        w.u64(r.forward.0);
        w.u64(r.backward.0);
        w.u32(r.name);
    }
    w.len(net.names.len());
    net.names.iter().for_each(|n| w.str(n));
    w.len(net.restrictions.len());
    for r in &net.restrictions {
        w.u32(u32::from(r.only));
        w.u32s(&r.path.iter().map(|e| e.0).collect::<Vec<_>>());
        w.u32s(&r.to.iter().map(|e| e.0).collect::<Vec<_>>());
    }
    let st = &net.restriction_stats;
    for count in [
        st.applied,
        st.missing_member,
        st.invalid,
        st.exempt,
        st.outside_network,
    ] {
        w.len(count);
    }
    w.len(turns.node_count);
    w.u32s(&turns.arrive);
    w.u32s(&turns.depart);
    w.len(turns.extra_depart.len());
    for &(e, n) in &turns.extra_depart {
        w.u32(e);
        w.u32(n);
    }
    w.upward(&ch.forward);
    w.upward(&ch.backward);
    w.u32s(&ch.arc_a);
    w.u32s(&ch.arc_b);

    let mut bytes = w.0;
    debug_assert_eq!(bytes.len(), len, "encoded_len is exact");
    let payload_len = (bytes.len() - HEADER_LEN) as u64;
    let digest = Sha256::digest(&bytes[HEADER_LEN..]);
    let header = &mut bytes[..HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&payload_len.to_le_bytes());
    header[20..].copy_from_slice(&digest);
    let sha256 = sha256(&bytes);
    Encoded { bytes, sha256 }
}

/// The exact size of an artifact, so its buffer is allocated once.
fn encoded_len(
    version: &str,
    net: &RoadNetwork,
    ch: &Hierarchy,
    turns: &TurnTables,
    ids_len: usize,
) -> usize {
    let list = 8;
    let upward = |g: &UpwardGraph| {
        4 * list + 4 * (g.first.len() + g.head.len() + g.arc.len()) + 8 * g.weight.len()
    };
    HEADER_LEN
        + list
        + version.len()
        + list
        + net.profile.len()
        + 2 * list
        + 16 * (net.nodes.len() + net.points.len())
        + list
        + list
        + ids_len
        + list
        + (4 * 4 + 8 * 2 + 4) * net.roads.len()
        + list
        + net.names.iter().map(|n| list + n.len()).sum::<usize>()
        + list
        + net
            .restrictions
            .iter()
            .map(|r| 4 + 2 * list + 4 * (r.path.len() + r.to.len()))
            .sum::<usize>()
        + 5 * 8
        + 8
        + 2 * list
        + 4 * (turns.arrive.len() + turns.depart.len())
        + list
        + 8 * turns.extra_depart.len()
        + upward(&ch.forward)
        + upward(&ch.backward)
        + 2 * list
        + 4 * (ch.arc_a.len() + ch.arc_b.len())
}

/// OSM node ids as zigzag varints of the difference to the previous id: the nodes of a way
/// mostly have close ids, so a point takes one to three bytes instead of eight (Porto's
/// artifact is 2 MiB smaller).
fn delta_varints(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut prev = 0i64;
    for &id in ids {
        let d = id.wrapping_sub(prev);
        let mut z = ((d << 1) ^ (d >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        prev = id;
    }
    out
}

/// Reverses [`delta_varints`]: exactly `n` ids that use exactly all of `bytes`.
fn undelta_varints(bytes: &[u8], n: usize) -> Result<Vec<i64>, ArtifactError> {
    let bad = || malformed("OSM node ids are not valid varints");
    let mut ids = Vec::with_capacity(n);
    let mut at = 0;
    let mut prev = 0i64;
    for _ in 0..n {
        let mut z = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(at).ok_or_else(bad)?;
            at += 1;
            if shift > 63 {
                return Err(bad());
            }
            z |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        prev = prev.wrapping_add(d);
        ids.push(prev);
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok(ids)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn malformed(what: &str) -> ArtifactError {
    ArtifactError::Malformed(what.to_owned())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| malformed("unexpected end of payload"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ArtifactError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, ArtifactError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    /// A list length, refused if the rest of the payload cannot possibly hold it (so a
    /// corrupt count cannot trigger a huge allocation).
    fn len(&mut self, item_size: usize) -> Result<usize, ArtifactError> {
        let n = usize::try_from(self.u64()?).map_err(|_| malformed("list length overflows"))?;
        let remaining = self.bytes.len() - self.at;
        if n.checked_mul(item_size.max(1))
            .is_none_or(|b| b > remaining)
        {
            return Err(malformed("list length exceeds payload"));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, ArtifactError> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    fn u32s(&mut self) -> Result<Vec<u32>, ArtifactError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.u32()).collect()
    }
    fn weights(&mut self) -> Result<Vec<Weight>, ArtifactError> {
        let n = self.len(8)?;
        (0..n).map(|_| self.u64().map(Weight)).collect()
    }
    fn coords(&mut self) -> Result<Vec<Coord>, ArtifactError> {
        let n = self.len(16)?;
        (0..n)
            .map(|_| {
                let (lon, lat) = (self.f64()?, self.f64()?);
                Coord::new(lon, lat).map_err(|_| malformed("coordinate out of range"))
            })
            .collect()
    }
    fn upward(
        &mut self,
        nodes: usize,
        arcs_bound: Option<usize>,
    ) -> Result<UpwardGraph, ArtifactError> {
        let g = UpwardGraph {
            first: self.u32s()?,
            head: self.u32s()?,
            weight: self.weights()?,
            arc: self.u32s()?,
        };
        let m = g.head.len();
        let ok = g.first.len() == nodes + 1
            && g.first.first() == Some(&0)
            && g.first.last().is_some_and(|&l| l as usize == m)
            && g.first.windows(2).all(|w| w[0] <= w[1])
            && g.weight.len() == m
            && g.arc.len() == m
            && g.head.iter().all(|&h| (h as usize) < nodes)
            && arcs_bound.is_none_or(|b| g.arc.iter().all(|&a| (a as usize) < b));
        if ok {
            Ok(g)
        } else {
            Err(malformed("inconsistent hierarchy adjacency"))
        }
    }
}

/// Checks and reads an artifact (see the module docs for the checks made), returning its
/// contents and its identity.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Contents, String)> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(ArtifactError::BadMagic.into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(ArtifactError::Truncated {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        }
        .into());
    }
    let mut header = Reader { bytes, at: 8 };
    let version = header.u32()?;
    if version != FORMAT_VERSION {
        return Err(ArtifactError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        }
        .into());
    }
    let payload_len = header.u64()?;
    let expected = payload_len.saturating_add(HEADER_LEN as u64);
    if (bytes.len() as u64) < expected {
        return Err(ArtifactError::Truncated {
            expected,
            found: bytes.len() as u64,
        }
        .into());
    }
    if (bytes.len() as u64) > expected {
        return Err(malformed("trailing bytes after payload").into());
    }
    let digest: [u8; 32] = header.array()?;
    let payload = &bytes[HEADER_LEN..];
    if Sha256::digest(payload).as_slice() != digest {
        return Err(ArtifactError::ChecksumMismatch.into());
    }

    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let version = r.str()?;
    let profile = r.str()?;
    let nodes = r.coords()?;
    let points = r.coords()?;
    let id_count = r.len(1)?;
    let id_bytes = r.len(1)?;
    let point_ids = undelta_varints(r.take(id_bytes)?, id_count)?;
    if point_ids.len() != points.len() {
        return Err(malformed("OSM node ids do not match the shape points").into());
    }
    let road_count = r.len(4 * 4 + 8 * 2 + 4)?;
    let mut roads = Vec::with_capacity(road_count);
    for _ in 0..road_count {
        roads.push(Road {
            from: r.u32()?,
            to: r.u32()?,
            geometry_start: r.u32()?,
            geometry_len: r.u32()?,
            forward: Weight(r.u64()?),
            backward: Weight(r.u64()?),
            name: r.u32()?,
        });
    }
    let name_count = r.len(8)?;
    let names = (0..name_count)
        .map(|_| r.str())
        .collect::<Result<Vec<_>, _>>()?;
    let restriction_count = r.len(4 + 16)?;
    let mut restrictions = Vec::with_capacity(restriction_count);
    for _ in 0..restriction_count {
        let only = match r.u32()? {
            0 => false,
            1 => true,
            _ => return Err(malformed("restriction kind is neither no_ nor only_").into()),
        };
        let path: Vec<EdgeId> = r.u32s()?.into_iter().map(EdgeId).collect();
        let to: Vec<EdgeId> = r.u32s()?.into_iter().map(EdgeId).collect();
        restrictions.push(Restriction { path, to, only });
    }
    let mut count = || -> Result<usize, ArtifactError> {
        usize::try_from(r.u64()?).map_err(|_| malformed("count overflows"))
    };
    let restriction_stats = RestrictionStats {
        applied: count()?,
        missing_member: count()?,
        invalid: count()?,
        exempt: count()?,
        outside_network: count()?,
    };
    let node_count = count()?;
    let arrive = r.u32s()?;
    let depart = r.u32s()?;
    let extra_count = r.len(8)?;
    let mut extra_depart = Vec::with_capacity(extra_count);
    for _ in 0..extra_count {
        extra_depart.push((r.u32()?, r.u32()?));
    }
    let turns = TurnTables {
        arrive,
        depart,
        extra_depart,
        node_count,
    };
    let n = node_count;
    if n < nodes.len() {
        return Err(malformed("fewer hierarchy nodes than junctions").into());
    }
    let forward = r.upward(n, None)?;
    let backward = r.upward(n, None)?;
    let arc_a = r.u32s()?;
    let arc_b = r.u32s()?;
    if r.at != payload.len() {
        return Err(malformed("unread bytes at end of payload").into());
    }

    let roads_ok = roads.iter().all(|road| {
        (road.from as usize) < nodes.len()
            && (road.to as usize) < nodes.len()
            && road.geometry_len >= 2
            && (road.geometry_start as usize)
                .checked_add(road.geometry_len as usize)
                .is_some_and(|end| end <= points.len())
            && (road.name as usize) < names.len()
    });
    if !roads_ok {
        return Err(malformed("road refers to a missing node, shape point or name").into());
    }
    let arcs = arc_a.len();
    let edge_count = roads.len() * 2;
    // An original arc must name an existing edge; a shortcut must name two earlier arcs
    // (children are always created before their parent), which also rules out cycles that
    // would make path unpacking loop forever.
    let arcs_ok = arc_b.len() == arcs
        && arc_a.iter().zip(&arc_b).enumerate().all(|(i, (&a, &b))| {
            if b == u32::MAX {
                (a as usize) < edge_count
            } else {
                (a as usize) < i && (b as usize) < i
            }
        })
        && forward
            .arc
            .iter()
            .chain(&backward.arc)
            .all(|&a| (a as usize) < arcs);
    if !arcs_ok {
        return Err(malformed("hierarchy arc refers to a missing edge or arc").into());
    }
    let edge_ok = |e: &EdgeId| (e.0 as usize) < edge_count;
    let restrictions_ok = restrictions
        .iter()
        .all(|r| !r.path.is_empty() && r.path.iter().all(edge_ok) && r.to.iter().all(edge_ok));
    let node_ok = |&v: &u32| v == NO_NODE || (v as usize) < n;
    let turns_ok = turns.arrive.len() == edge_count
        && turns.depart.len() == edge_count
        && turns.arrive.iter().all(node_ok)
        && turns.depart.iter().all(node_ok)
        && turns.extra_depart.windows(2).all(|w| w[0] <= w[1])
        && turns
            .extra_depart
            .iter()
            .all(|&(e, v)| (e as usize) < edge_count && (v as usize) < n);
    if !restrictions_ok || !turns_ok {
        return Err(
            malformed("turn restriction or turn table refers to a missing edge or node").into(),
        );
    }

    let net = RoadNetwork {
        nodes,
        roads,
        points,
        point_ids,
        names,
        restrictions,
        restriction_stats,
        profile,
    };
    let ch = Hierarchy {
        forward,
        backward,
        arc_a,
        arc_b,
    };
    Ok((
        Contents {
            version,
            net,
            ch,
            turns,
        },
        sha256(bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_through_delta_varints() {
        let ids = [
            0,
            1,
            25_687_435,
            25_687_436,
            3,
            -7,
            i64::MAX,
            i64::MIN,
            12_345_678_901,
        ];
        let bytes = delta_varints(&ids);
        assert_eq!(undelta_varints(&bytes, ids.len()).unwrap(), ids);
        assert!(
            undelta_varints(&bytes, ids.len() + 1).is_err(),
            "too few bytes"
        );
        assert!(
            undelta_varints(&bytes, ids.len() - 1).is_err(),
            "bytes left over"
        );
        assert!(undelta_varints(&[0xff; 11], 1).is_err(), "overlong varint");
        assert_eq!(delta_varints(&[100, 101, 102]).len(), 4);
    }
}
