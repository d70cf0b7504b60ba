//! Encoding a prepared graph as an artifact.

use super::varint::delta_varints;
use super::{Encoded, FORMAT_VERSION, HEADER_LEN, MAGIC, sha256};
use crate::ch::{BACKWARD, FORWARD, Hierarchy, UpwardGraph};
use crate::geo::Coord;
use crate::network::RoadNetwork;
use crate::turns::TurnTables;
use sha2::{Digest, Sha256};

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
    fn coords(&mut self, v: &[Coord]) {
        self.len(v.len());
        for c in v {
            self.f64(c.lon);
            self.f64(c.lat);
        }
    }
    fn upward(&mut self, g: &UpwardGraph) {
        self.u32s(&g.first);
        self.len(g.arcs.len());
        g.arcs.iter().for_each(|a| self.u32(a.head));
        self.len(g.arcs.len());
        g.arcs.iter().for_each(|a| self.u64(a.weight.0));
        self.len(g.arcs.len());
        g.arcs.iter().for_each(|a| self.u32(a.arc));
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
    w.upward(&ch.up.direction(FORWARD));
    w.upward(&ch.up.direction(BACKWARD));
    for half in 0..2 {
        w.len(ch.arcs.len());
        ch.arcs.iter().for_each(|pair| w.u32(pair[half]));
    }

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
    // Each direction: offsets (one per node and one more), then heads, weights and arc ids
    // (16 bytes per arc in all).
    let upward_offsets = 4 * list + 4 * (turns.node_count + 1);
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
        + 2 * upward_offsets
        + 16 * ch.up.arc_count()
        + 2 * list
        + 8 * ch.arcs.len()
}
