//! OSM PBF import: car ways -> junction graph.
//!
//! Two passes over the file: ways first (to learn which nodes matter), then nodes (to learn
//! their coordinates). Each pass decodes the file's blocks in parallel and folds their
//! results in file order, so the network does not depend on the thread count. Ways are cut at every junction (a node shared by two ways or used
//! twice by one) so the graph has one node per junction and carries the shape in between
//! as geometry; that keeps the contraction hierarchy about five times smaller than a graph
//! with a node per OSM node.
//!
//! Turn restrictions (`type=restriction` relations) are read in the first pass and resolved
//! onto directed edges once the roads exist. Routing honours them by splitting the
//! junctions reached along a restricted sequence (the crate's internal `turns` module says
//! how); [`RestrictionStats`] tells what is skipped.

use crate::geo::Coord;
use crate::network::{
    EdgeId, NodeHandle, Restriction, RestrictionStats, RoadHandle, RoadNetwork, RoadNetworkBuilder,
};
use crate::profile::{CarProfile, Direction};
use crate::{Error, Result};
use osmpbf::{BlobDecode, BlobReader, Element, PrimitiveBlock, RelMemberType};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

struct CarWay {
    id: i64,
    refs: Vec<i64>,
    speed_kmh: f64,
    direction: Direction,
    name: String,
}

/// Reads an OSM PBF file and returns the car network's largest strongly connected component.
///
/// Errors: [`Error::Osm`] when the file is not readable PBF, [`Error::NoRoads`] when it
/// contains no drivable road.
pub fn import_osm(path: &Path, profile: &CarProfile) -> Result<RoadNetwork> {
    let osm_err = |source| Error::Osm {
        path: path.to_owned(),
        source,
    };
    // Pass 1, one file block per task: car ways and restriction relations, concatenated in
    // file order so the network is the same whatever the thread count.
    let mut ways = Vec::new();
    let mut relations: Vec<Result<RawRestriction, Skip>> = Vec::new();
    let blocks = map_blocks(path, |block| {
        let mut ways = Vec::new();
        let mut relations = Vec::new();
        for element in block.elements() {
            match element {
                Element::Relation(rel) => {
                    let tags: Vec<(&str, &str)> = rel.tags().collect();
                    let lookup = |key: &str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                    let members = rel.members().map(|m| {
                        (
                            m.role().unwrap_or(""),
                            m.member_type == RelMemberType::Way,
                            m.member_id,
                        )
                    });
                    if let Some(r) = parse_restriction(profile, lookup, members) {
                        relations.push(r);
                    }
                }
                Element::Way(way) => {
                    let tags: Vec<(&str, &str)> = way.tags().collect();
                    let lookup = |key: &str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                    if let Some(rule) = profile.way_rule(lookup) {
                        let name = lookup("name").or_else(|| lookup("ref")).unwrap_or("");
                        ways.push(CarWay {
                            id: way.id(),
                            refs: way.refs().collect(),
                            speed_kmh: rule.speed_kmh,
                            direction: rule.direction,
                            name: name.to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
        (ways, relations)
    })
    .map_err(osm_err)?;
    for (w, r) in blocks {
        ways.extend(w);
        relations.extend(r);
    }
    if ways.is_empty() {
        return Err(Error::NoRoads);
    }

    let mut coords: HashMap<i64, Coord> = ways
        .iter()
        .flat_map(|w| {
            w.refs.iter().map(|&id| {
                (
                    id,
                    Coord {
                        lon: f64::NAN,
                        lat: f64::NAN,
                    },
                )
            })
        })
        .collect();
    // Pass 2: the positions of the nodes the ways use, found in parallel and recorded in
    // file order (a node listed twice keeps its last position, as in a sequential read).
    let wanted = &coords;
    let found = map_blocks(path, |block| {
        let mut found = Vec::new();
        let mut keep = |id: i64, lon: f64, lat: f64| {
            if wanted.contains_key(&id) {
                found.push((id, lon, lat));
            }
        };
        for element in block.elements() {
            match element {
                Element::DenseNode(n) => keep(n.id(), n.lon(), n.lat()),
                Element::Node(n) => keep(n.id(), n.lon(), n.lat()),
                _ => {}
            }
        }
        found
    })
    .map_err(osm_err)?;
    for (id, lon, lat) in found.into_iter().flatten() {
        // A node with an impossible position is treated like a missing one.
        if let (Some(c), Ok(valid)) = (coords.get_mut(&id), Coord::new(lon, lat)) {
            *c = valid;
        }
    }

    // Extracts cut ways at the boundary and reference nodes they do not contain: split every
    // way into runs of nodes whose position is known.
    let known = |id: &i64| coords.get(id).is_some_and(|c| !c.lon.is_nan());
    let mut runs: Vec<(usize, Vec<i64>)> = Vec::with_capacity(ways.len());
    for (w, way) in ways.iter().enumerate() {
        let mut run: Vec<i64> = Vec::new();
        for id in way.refs.iter().copied() {
            if !known(&id) {
                if run.len() >= 2 {
                    runs.push((w, std::mem::take(&mut run)));
                }
                run.clear();
            } else if run.last() != Some(&id) {
                run.push(id);
            }
        }
        if run.len() >= 2 {
            runs.push((w, run));
        }
    }

    let mut uses: HashMap<i64, u32> = HashMap::new();
    let mut junction: HashMap<i64, bool> = HashMap::new();
    for (_, run) in &runs {
        for &id in run {
            *uses.entry(id).or_default() += 1;
        }
        if let (Some(&a), Some(&b)) = (run.first(), run.last()) {
            junction.insert(a, true);
            junction.insert(b, true);
        }
    }
    let is_junction =
        |id: i64| uses.get(&id).copied().unwrap_or(0) > 1 || junction.contains_key(&id);

    let mut builder = RoadNetwork::builder();
    // Roads cut from each way, in way order, with the OSM ids of their end nodes.
    let mut pieces: Vec<Vec<Piece>> = (0..ways.len()).map(|_| Vec::new()).collect();
    let mut handles: HashMap<i64, NodeHandle> = HashMap::new();
    let mut handle = |builder: &mut RoadNetworkBuilder, id: i64| {
        *handles
            .entry(id)
            .or_insert_with(|| builder.add_node(coords[&id]))
    };
    for (w, run) in &runs {
        let way = &ways[*w];
        let mut start = 0;
        for i in 1..run.len() {
            if !is_junction(run[i]) {
                continue;
            }
            let piece = &run[start..=i];
            // A piece that returns to where it started would be a self-loop; cut it in the
            // middle so both halves are ordinary roads between two junctions.
            let cuts: Vec<&[i64]> = if piece.first() == piece.last() {
                if piece.len() < 3 {
                    Vec::new()
                } else {
                    let mid = piece.len() / 2;
                    vec![&piece[..=mid], &piece[mid..]]
                }
            } else {
                vec![piece]
            };
            for part in cuts {
                let (Some(&a), Some(&b)) = (part.first(), part.last()) else {
                    continue;
                };
                let from = handle(&mut builder, a);
                let to = handle(&mut builder, b);
                let interior: Vec<Coord> = part[1..part.len() - 1]
                    .iter()
                    .map(|id| coords[id])
                    .collect();
                let road = builder.add_osm_road(
                    from,
                    to,
                    &interior,
                    part,
                    way.speed_kmh,
                    way.direction,
                    &way.name,
                );
                if let Some(road) = road {
                    pieces[*w].push(Piece { road, a, b });
                }
            }
            start = i;
        }
    }
    let way_index: HashMap<i64, usize> = ways.iter().enumerate().map(|(i, w)| (w.id, i)).collect();
    let resolver = Resolver {
        ways: &ways,
        pieces: &pieces,
        way_index: &way_index,
        handles: &handles,
    };
    let mut stats = RestrictionStats::default();
    for relation in relations {
        let resolved = relation.and_then(|raw| resolver.resolve(&raw));
        match resolved {
            Ok(list) => list.into_iter().for_each(|r| builder.add_restriction(r)),
            Err(Skip::Missing) => stats.missing_member += 1,
            Err(Skip::Invalid) => stats.invalid += 1,
            Err(Skip::Exempt) => stats.exempt += 1,
        }
    }
    *builder.stats_mut() = stats;
    builder.set_profile(profile.name());
    builder.build()
}

/// Decodes the file's data blocks in parallel (rayon) and returns `map` of each, in file
/// order: the caller folds them sequentially, so the import does not depend on the number
/// of threads. Decoding (zlib and protobuf) is most of an import's time.
fn map_blocks<T: Send>(
    path: &Path,
    map: impl Fn(&PrimitiveBlock) -> T + Sync,
) -> std::result::Result<Vec<T>, osmpbf::Error> {
    let mut out: Vec<(usize, T)> = BlobReader::from_path(path)?
        .enumerate()
        .par_bridge()
        .filter_map(
            |(i, blob)| match blob.map(|b| b.decode().map(|d| as_data(d, &map))) {
                Ok(Ok(Some(t))) => Some(Ok((i, t))),
                Ok(Ok(None)) => None,
                Ok(Err(e)) | Err(e) => Some(Err(e)),
            },
        )
        .collect::<std::result::Result<_, _>>()?;
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

fn as_data<T>(decoded: BlobDecode<'_>, map: impl Fn(&PrimitiveBlock) -> T) -> Option<T> {
    match decoded {
        BlobDecode::OsmData(block) => Some(map(&block)),
        _ => None,
    }
}

/// One road cut from a way: its handle and the OSM ids of its first and last node.
struct Piece {
    road: RoadHandle,
    a: i64,
    b: i64,
}

/// Why a restriction relation was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Missing,
    Invalid,
    Exempt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Via {
    Node(i64),
    Ways(Vec<i64>),
}

/// A restriction relation as tagged, before its members are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawRestriction {
    only: bool,
    from: i64,
    via: Via,
    to: i64,
}

/// Reads a relation as a turn restriction for `profile`'s vehicle: `None` when it is not a
/// restriction at all, `Err` when it is one that cannot or need not be applied.
/// `members` yields (role, is a way, id).
fn parse_restriction<'a>(
    profile: &CarProfile,
    tag: impl Fn(&str) -> Option<&'a str>,
    members: impl Iterator<Item = (&'a str, bool, i64)>,
) -> Option<Result<RawRestriction, Skip>> {
    let kind = tag("type")?;
    let vehicles = profile.restriction_vehicles();
    // `type=restriction:hgv` is the older spelling of `restriction:hgv=*`.
    let typed_for = kind.strip_prefix("restriction:");
    if kind != "restriction" && typed_for.is_none() {
        return None;
    }
    if typed_for.is_some_and(|v| !vehicles.contains(&v)) {
        return Some(Err(Skip::Exempt));
    }
    let specific = vehicles
        .iter()
        .find_map(|v| tag(&format!("restriction:{v}")));
    let value = match (specific, tag("restriction")) {
        (Some(v), _) => v,
        (None, Some(v)) => {
            let exempt = tag("except")
                .is_some_and(|except| except.split(';').any(|e| vehicles.contains(&e.trim())));
            if exempt {
                return Some(Err(Skip::Exempt));
            }
            v
        }
        // Tagged only for other vehicles (`restriction:bus`, ...).
        (None, None) => return Some(Err(Skip::Exempt)),
    };
    let only = if value.starts_with("only_") {
        true
    } else if value.starts_with("no_") {
        false
    } else {
        return Some(Err(Skip::Invalid));
    };
    let (mut from, mut to, mut via_node, mut via_ways) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (role, is_way, id) in members {
        match (role, is_way) {
            ("from", true) => from.push(id),
            ("to", true) => to.push(id),
            ("via", true) => via_ways.push(id),
            ("via", false) => via_node.push(id),
            _ => {}
        }
    }
    let via = match (via_node.as_slice(), via_ways.is_empty()) {
        (&[node], true) => Via::Node(node),
        (&[], false) => Via::Ways(via_ways),
        _ => return Some(Err(Skip::Invalid)),
    };
    match (from.as_slice(), to.as_slice()) {
        (&[from], &[to]) => Some(Ok(RawRestriction {
            only,
            from,
            via,
            to,
        })),
        _ => Some(Err(Skip::Invalid)),
    }
}

/// Looks restriction members up among the imported roads.
struct Resolver<'a> {
    ways: &'a [CarWay],
    pieces: &'a [Vec<Piece>],
    way_index: &'a HashMap<i64, usize>,
    handles: &'a HashMap<i64, NodeHandle>,
}

impl Resolver<'_> {
    fn way(&self, id: i64) -> Result<usize, Skip> {
        self.way_index.get(&id).copied().ok_or(Skip::Missing)
    }

    /// Directed edges of way `w` that enter (`entering`) or leave OSM node `node`. As in
    /// OSRM, the node must be the first or last node of the way: a restriction whose via
    /// node lies inside its from- or to-way is ambiguous and refused.
    fn edges_at(&self, w: usize, node: i64, entering: bool) -> Result<Vec<EdgeId>, Skip> {
        let refs = &self.ways[w].refs;
        if refs.first() != Some(&node) && refs.last() != Some(&node) {
            return Err(Skip::Invalid);
        }
        let mut out = Vec::new();
        for p in &self.pieces[w] {
            // Entering at `b` means driving the piece forward.
            if p.b == node {
                out.push(EdgeId::new(p.road.0, !entering));
            }
            if p.a == node {
                out.push(EdgeId::new(p.road.0, entering));
            }
        }
        if out.is_empty() {
            // The end of the way was cut off (a node missing from the extract).
            return Err(Skip::Missing);
        }
        Ok(out)
    }

    /// The edges of a whole via way driven from OSM node `start` to its other end, and
    /// that end.
    fn traverse(&self, w: usize, start: i64) -> Result<(Vec<EdgeId>, i64), Skip> {
        let refs = &self.ways[w].refs;
        let (Some(&first), Some(&last)) = (refs.first(), refs.last()) else {
            return Err(Skip::Invalid);
        };
        let pieces = &self.pieces[w];
        let chain_ok = pieces.first().is_some_and(|p| p.a == first)
            && pieces.last().is_some_and(|p| p.b == last)
            && pieces.windows(2).all(|p| p[0].b == p[1].a);
        if !chain_ok || first == last {
            return Err(Skip::Missing);
        }
        if start == first {
            let edges = pieces.iter().map(|p| EdgeId::new(p.road.0, false));
            Ok((edges.collect(), last))
        } else if start == last {
            let edges = pieces.iter().rev().map(|p| EdgeId::new(p.road.0, true));
            Ok((edges.collect(), first))
        } else {
            Err(Skip::Invalid)
        }
    }

    fn resolve(&self, raw: &RawRestriction) -> Result<Vec<Restriction>, Skip> {
        let from = self.way(raw.from)?;
        let to_way = self.way(raw.to)?;
        let (via_path, first_via, last_via) = match &raw.via {
            Via::Node(node) => {
                if !self.handles.contains_key(node) {
                    return Err(Skip::Missing);
                }
                (Vec::new(), *node, *node)
            }
            Via::Ways(ids) => {
                let via: Vec<usize> = ids
                    .iter()
                    .map(|&id| self.way(id))
                    .collect::<Result<_, _>>()?;
                let from_refs = &self.ways[from].refs;
                // The chain starts where the from-way touches the first via way.
                let first_refs = &self.ways[via[0]].refs;
                let start = [first_refs.first(), first_refs.last()]
                    .into_iter()
                    .flatten()
                    .find(|n| from_refs.first() == Some(n) || from_refs.last() == Some(n))
                    .copied()
                    .ok_or(Skip::Invalid)?;
                let mut at = start;
                let mut path = Vec::new();
                for &w in &via {
                    let (edges, end) = self.traverse(w, at)?;
                    path.extend(edges);
                    at = end;
                }
                (path, start, at)
            }
        };
        let entering = self.edges_at(from, first_via, true)?;
        let leaving = self.edges_at(to_way, last_via, false)?;
        Ok(entering
            .into_iter()
            .map(|e| {
                // from-way = to-way (a U-turn restriction at the way's end): the turn meant
                // is back onto the same road, not along a second piece of a looped way.
                let to: Vec<EdgeId> = if from == to_way && via_path.is_empty() {
                    vec![EdgeId::new(e.road(), !e.is_backward())]
                } else {
                    leaving.clone()
                };
                let mut path = vec![e];
                path.extend_from_slice(&via_path);
                Restriction {
                    path,
                    to,
                    only: raw.only,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, TruckDimensions};

    fn parse(
        profile: &Profile,
        tags: &[(&'static str, &'static str)],
    ) -> Option<Result<RawRestriction, Skip>> {
        let members = [("from", true, 1), ("via", false, 2), ("to", true, 3)];
        let tag = |k: &str| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        parse_restriction(profile, tag, members.into_iter())
    }

    #[test]
    fn restrictions_apply_to_the_profiles_vehicle() {
        let car = Profile::car();
        let truck = Profile::truck(TruckDimensions::default());
        let plain = [("type", "restriction"), ("restriction", "no_left_turn")];
        let expected = RawRestriction {
            only: false,
            from: 1,
            via: Via::Node(2),
            to: 3,
        };
        assert_eq!(parse(&car, &plain), Some(Ok(expected.clone())));
        assert_eq!(parse(&truck, &plain), Some(Ok(expected)));
        let hgv = [
            ("type", "restriction"),
            ("restriction:hgv", "only_straight_on"),
        ];
        assert_eq!(parse(&car, &hgv), Some(Err(Skip::Exempt)));
        assert!(parse(&truck, &hgv).is_some_and(|r| r.is_ok_and(|r| r.only)));
        let except = [
            ("type", "restriction"),
            ("restriction", "no_right_turn"),
            ("except", "psv;hgv"),
        ];
        assert!(parse(&car, &except).is_some_and(|r| r.is_ok()));
        assert_eq!(parse(&truck, &except), Some(Err(Skip::Exempt)));
        let odd = [("type", "restriction"), ("restriction", "give_way")];
        assert_eq!(parse(&car, &odd), Some(Err(Skip::Invalid)));
        assert_eq!(parse(&car, &[("type", "route")]), None);
    }
}
