//! The truck profile keeps a 7.5 t truck off the streets whose tagged limits it exceeds,
//! where the car drives through. Reads the Porto extract a second time with `osmpbf` to
//! find those streets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::porto_pbf;
use edgeroute_engine::profile::{parse_length_m, parse_weight_t};
use edgeroute_engine::{BuildOptions, Coord, Graph, Profile, TruckDimensions};
use osmpbf::{Element, ElementReader};
use std::collections::HashMap;

/// Does the node sequence drive along any segment of `way`, in either direction?
fn uses(nodes: &[i64], way: &[i64]) -> bool {
    nodes.windows(2).any(|n| {
        way.windows(2)
            .any(|w| (n[0], n[1]) == (w[0], w[1]) || (n[0], n[1]) == (w[1], w[0]))
    })
}

#[test]
fn porto_trucks_avoid_low_and_weight_limited_streets_that_cars_use() {
    let Some(path) = porto_pbf() else { return };
    let truck = TruckDimensions::default();
    let mut coords: HashMap<i64, Coord> = HashMap::new();
    let mut limited: Vec<(i64, String, Vec<i64>)> = Vec::new();
    ElementReader::from_path(&path)
        .unwrap()
        .for_each(|e| match e {
            Element::DenseNode(n) => {
                coords.insert(
                    n.id(),
                    Coord {
                        lon: n.lon(),
                        lat: n.lat(),
                    },
                );
            }
            Element::Way(w) => {
                let tags: HashMap<&str, &str> = w.tags().collect();
                if !tags.contains_key("highway") {
                    return;
                }
                let length = |k| tags.get(k).and_then(|v| parse_length_m(v));
                let weight = |k| tags.get(k).and_then(|v| parse_weight_t(v));
                let too_big = length("maxheight").is_some_and(|l| truck.height_m > l)
                    || length("maxwidth").is_some_and(|l| truck.width_m > l)
                    || weight("maxweight").is_some_and(|l| truck.weight_t > l);
                if too_big {
                    let why = format!("{tags:?}");
                    limited.push((w.id(), why, w.refs().collect()));
                }
            }
            _ => {}
        })
        .unwrap();
    eprintln!("{} ways in Porto limit a 7.5 t truck", limited.len());
    assert!(!limited.is_empty());

    let options = BuildOptions::default();
    let car = Graph::from_osm_file(&path, &Profile::car(), &options).unwrap();
    let lorry = Graph::from_osm_file(&path, &Profile::truck(truck), &options).unwrap();
    assert!(lorry.info().road_count < car.info().road_count);
    assert_eq!(
        (car.info().profile.as_str(), lorry.info().profile.as_str()),
        ("car", "truck")
    );
    let reloaded = Graph::from_artifact(&lorry.to_artifact()).unwrap();
    assert_eq!(
        reloaded.info(),
        lorry.info(),
        "the profile survives the artifact"
    );
    let mut shown = Vec::new();
    for (id, why, refs) in &limited {
        let (Some(&a), Some(&b)) = (
            refs.first().and_then(|n| coords.get(n)),
            refs.last().and_then(|n| coords.get(n)),
        ) else {
            continue;
        };
        let (Ok(ca), Ok(cb)) = (car.snap(a, 5.0), car.snap(b, 5.0)) else {
            continue;
        };
        let Ok(by_car) = car.route(&ca, &cb) else {
            continue;
        };
        let (Ok(ta), Ok(tb)) = (lorry.snap(a, 5.0), lorry.snap(b, 5.0)) else {
            continue;
        };
        let Ok(by_truck) = lorry.route(&ta, &tb) else {
            continue;
        };
        assert!(
            !uses(&by_truck.nodes, refs),
            "the truck drives way {id} ({why}): {:?}",
            by_truck.nodes
        );
        if uses(&by_car.nodes, refs) {
            assert!(by_truck.duration_s >= by_car.duration_s);
            shown.push((*id, why.clone()));
        }
    }
    eprintln!(
        "car through, truck around: {} ways, e.g. {:?}",
        shown.len(),
        shown.first()
    );
    assert!(
        !shown.is_empty(),
        "no limited way that a car uses was found"
    );
}
