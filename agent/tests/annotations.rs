//! `annotations=nodes` returns OSRM's `nodes` array: one OSM node id per coordinate of
//! each leg's geometry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{A, B, C, Served, get_json, serve_monaco};
use serde_json::Value;

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_annotations_carry_osm_node_ids_along_the_geometry() {
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&["--no-auth"]).await;
    let url = &agent.url;

    let (status, r) = get_json(
        &client,
        &format!(
            "{url}/route/v1/driving/{A};{B}?geometries=geojson&overview=full&annotations=nodes"
        ),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let line = r["routes"][0]["geometry"]["coordinates"]
        .as_array()
        .unwrap();
    let annotation = &r["routes"][0]["legs"][0]["annotation"];
    let nodes = ids(&annotation["nodes"]);
    assert_eq!(nodes.len(), line.len(), "one node per coordinate");
    assert!(nodes.iter().all(|&n| n > 0), "real OSM ids: {nodes:?}");
    assert!(
        nodes.windows(2).all(|w| w[0] != w[1]),
        "a node is not repeated: {nodes:?}"
    );
    assert!(annotation.get("duration").is_none(), "only what was asked");

    // `annotations=true` includes the nodes, per leg.
    let (status, r) = get_json(
        &client,
        &format!("{url}/route/v1/driving/{A};{B};{C}?annotations=true&overview=false"),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let legs = r["routes"][0]["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2);
    for leg in legs {
        let a = &leg["annotation"];
        let segments = a["duration"].as_array().unwrap().len();
        assert_eq!(ids(&a["nodes"]).len(), segments + 1);
    }

    // Without `nodes` in the list, no array.
    let (_, r) = get_json(
        &client,
        &format!("{url}/route/v1/driving/{A};{B}?annotations=duration,distance"),
    )
    .await;
    assert!(
        r["routes"][0]["legs"][0]["annotation"]
            .get("nodes")
            .is_none()
    );
}
