//! `dev --profiles car,truck`: the center builds the truck artifact from the same map and
//! every agent gets it through sync beside the car graph (issue 15). Real binaries, the
//! bundled Monaco map.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edgeroute_tests::{
    fleet::{self, client, free_port, get_json},
    procs::eventually,
};
use serde_json::Value;

const ADMIN: &str = "k";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_agents_serve_every_profile_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let mut dev = fleet::start_dev(
        &data_dir,
        free_port(),
        ADMIN,
        &["--profiles", "car,truck"],
        "dev.log",
    )
    .await;
    let http = client();
    let center = dev.url.clone();
    let nodes = eventually(
        Duration::from_secs(180),
        "three agents serving car and truck",
        || {
            let (http, center) = (http.clone(), center.clone());
            async move {
                let list = get_json(&http, &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
                let nodes: Vec<Value> = list["nodes"]
                    .as_array()?
                    .iter()
                    .filter(|n| n["ready"] == true && n["profiles"]["truck"]["version"].is_string())
                    .cloned()
                    .collect();
                (nodes.len() == 3).then_some(nodes)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", dev.log_text()));

    // One truck artifact for the region, built from the map dev serves the car from.
    let truck = &nodes[0]["profiles"]["truck"];
    let version = truck["version"].as_str().unwrap();
    assert!(version.starts_with("monaco-truck-"), "{version}");
    assert!(nodes.iter().all(|n| n["profiles"]["truck"] == *truck));
    assert_ne!(nodes[0]["graph_version"].as_str(), Some(version));
    let agent = nodes[0]["advertise_url"].as_str().unwrap();
    let status = get_json(&http, &format!("{agent}/v1/status"), None)
        .await
        .unwrap();
    assert_eq!(status["profiles"]["truck"]["version"], version, "{status}");
    let route = get_json(
        &http,
        &format!("{agent}/route/v1/truck/7.4196,43.7373;7.4265,43.7400"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(route["code"], "Ok", "{route}");

    dev.terminate(Duration::from_secs(30)).await.unwrap();
}
