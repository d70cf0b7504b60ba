//! The center follows the cluster's desired state: an EdgeRegion's graph version, created
//! or changed through the (fake) API server, becomes the region's graph in the center's
//! store (directly while the region has no node to roll out to), which every report's
//! directive carries to the agents; its rollout policy becomes the region's policy.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use edgeroute_control_plane::{
    serve::Settings,
    sync::{regions, store::CenterStore},
};
use serde_json::json;
use support::{center::TestCenter, fake_apiserver::FakeApiServer};

const NS: &str = "edgeroute";
const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";

fn region(name: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeSelector": {"matchLabels": {"zone": name}},
            "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.1.0"},
            "graph": {"source": format!("{name}.osm.pbf"), "version": version}
        }
    })
}

async fn wait_for(store: &dyn CenterStore, region: &str, version: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.region_graph(region).await.unwrap().as_deref() == Some(version) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{region} never got {version}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn region_graphs_follow_their_edgeregions() {
    let server = FakeApiServer::start().await;
    server.put(REGIONS, NS, region("porto", "porto-v1"));
    let center = TestCenter::new(Settings::default()).center;
    let store = center.store.clone();
    let task = tokio::spawn(regions::follow_center(
        server.client(),
        NS.into(),
        center.clone(),
    ));
    wait_for(store.as_ref(), "porto", "porto-v1").await;
    // A new version, and a region created later, both arrive through the watch.
    server.merge(
        REGIONS,
        NS,
        "porto",
        json!({"spec": {"graph": {"version": "porto-v2"}}}),
        false,
    );
    server.put(REGIONS, NS, region("monaco", "monaco-v7"));
    wait_for(store.as_ref(), "porto", "porto-v2").await;
    wait_for(store.as_ref(), "monaco", "monaco-v7").await;
    // A dropped watch is resumed.
    server.cut_watches();
    server.merge(
        REGIONS,
        NS,
        "porto",
        json!({"spec": {"graph": {"version": "porto-v3"}}}),
        false,
    );
    wait_for(store.as_ref(), "porto", "porto-v3").await;
    // The EdgeRegion's rollout policy is the one the region's rollouts and alerts use.
    server.merge(
        REGIONS,
        NS,
        "porto",
        json!({"spec": {"rollout": {"maxErrorRate": 0.125}}}),
        false,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while center.rollouts.policy("porto").max_error_rate != 0.125 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "policy never followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(center.rollouts.policy("monaco").max_error_rate, 0.125);
    task.abort();
}
