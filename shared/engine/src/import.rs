//! OSM PBF import: car ways -> junction graph.
//!
//! Two passes over the file: ways first (to learn which nodes matter), then nodes (to learn
//! their coordinates). Ways are cut at every junction (a node shared by two ways or used
//! twice by one) so the graph has one node per junction and carries the shape in between
//! as geometry; that keeps the contraction hierarchy about five times smaller than a graph
//! with a node per OSM node.

use crate::geo::Coord;
use crate::network::{NodeHandle, RoadNetwork};
use crate::profile::{CarProfile, Direction};
use crate::{Error, Result};
use osmpbf::{Element, ElementReader};
use std::collections::HashMap;
use std::path::Path;

struct CarWay {
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
    let mut ways = Vec::new();
    ElementReader::from_path(path)
        .map_err(osm_err)?
        .for_each(|element| {
            if let Element::Way(way) = element {
                let tags: Vec<(&str, &str)> = way.tags().collect();
                let lookup = |key: &str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                if let Some(rule) = profile.way_rule(lookup) {
                    let name = lookup("name").or_else(|| lookup("ref")).unwrap_or("");
                    ways.push(CarWay {
                        refs: way.refs().collect(),
                        speed_kmh: rule.speed_kmh,
                        direction: rule.direction,
                        name: name.to_owned(),
                    });
                }
            }
        })
        .map_err(osm_err)?;
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
    let mut record = |id: i64, lon: f64, lat: f64| {
        if let Some(c) = coords.get_mut(&id) {
            // A node with an impossible position is treated like a missing one.
            if let Ok(valid) = Coord::new(lon, lat) {
                *c = valid;
            }
        }
    };
    ElementReader::from_path(path)
        .map_err(osm_err)?
        .for_each(|element| match element {
            Element::DenseNode(n) => record(n.id(), n.lon(), n.lat()),
            Element::Node(n) => record(n.id(), n.lon(), n.lat()),
            _ => {}
        })
        .map_err(osm_err)?;

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
    let mut handles: HashMap<i64, NodeHandle> = HashMap::new();
    let mut handle = |builder: &mut crate::network::RoadNetworkBuilder, id: i64| {
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
                builder.add_road(from, to, &interior, way.speed_kmh, way.direction, &way.name);
            }
            start = i;
        }
    }
    builder.build()
}
