//! Decoding an artifact, checking everything a query could trip over.

use super::varint::undelta_varints;
use super::{Contents, FORMAT_VERSION, HEADER_LEN, MAGIC, malformed, sha256};
use crate::Result;
use crate::ch::{Hierarchy, UpArc, UpDown, UpwardGraph};
use crate::error::ArtifactError;
use crate::geo::Coord;
use crate::network::{EdgeId, Restriction, RestrictionStats, Road, RoadNetwork};
use crate::turns::{NO_NODE, TurnTables};
use crate::weight::Weight;
use sha2::{Digest, Sha256};
use std::sync::Arc;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
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
        let first = self.u32s()?;
        let head = self.u32s()?;
        let weight = self.weights()?;
        let arc = self.u32s()?;
        let m = head.len();
        let ok = first.len() == nodes + 1
            && first.first() == Some(&0)
            && first.last().is_some_and(|&l| l as usize == m)
            && first.windows(2).all(|w| w[0] <= w[1])
            && weight.len() == m
            && arc.len() == m
            && head.iter().all(|&h| (h as usize) < nodes)
            && arcs_bound.is_none_or(|b| arc.iter().all(|&a| (a as usize) < b));
        let g = UpwardGraph {
            first,
            arcs: head
                .into_iter()
                .zip(weight)
                .zip(arc)
                .map(|((head, weight), arc)| UpArc { weight, head, arc })
                .collect(),
        };
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
        .map(|_| r.str().map(Arc::from))
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
            .arcs
            .iter()
            .chain(&backward.arcs)
            .all(|a| (a.arc as usize) < arcs);
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
        up: UpDown::new(forward, backward),
        arcs: arc_a.into_iter().zip(arc_b).map(|(a, b)| [a, b]).collect(),
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
