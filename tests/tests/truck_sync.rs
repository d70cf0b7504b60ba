//! The truck profile travels from the center to the edge (issue 15): a region asks for a car
//! and a truck graph of Porto, the agent downloads both through sync and answers
//! `/route/v1/truck/...` around a weight-limited street the car drives through, keeps the
//! truck graph across a restart without the center, and stops serving it once the center
//! drops the profile. Real binaries; Porto from the shared data (skipped without it, failing
//! under `EDGEROUTE_REQUIRE_DATA=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use edgeroute_tests::{
    data::shared_data,
    fleet::{ADMIN, TOKEN, client, get_json, start_center},
    procs::{Proc, binary, eventually},
};
use serde_json::{Value, json};

/// The agent's admin key (`GET /admin/graph`).
const AGENT_ADMIN: &str = "agent-admin";

/// Both ends of Rua do Chouso (OSM way 25687435, one way, `maxweight=3.5`): a car drives it
/// in about 58 s, a 7.5 t truck may not (see `agent/tests/profiles.rs`).
const CHOUSO: &str = "-8.677192,41.224880;-8.676889,41.221609";

/// Build a Porto artifact for `profile` with the control plane's own `graph build`.
fn build(
    pbf: PathBuf,
    out: PathBuf,
    version: &'static str,
    profile: &'static str,
) -> std::thread::JoinHandle<PathBuf> {
    std::thread::spawn(move || {
        let status = std::process::Command::new(binary("edgeroute-control-plane").unwrap())
            .args(["graph", "build", "--osm"])
            .arg(&pbf)
            .arg("--out")
            .arg(&out)
            .args(["--version", version, "--profile", profile])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "graph build --profile {profile} failed");
        out
    })
}

async fn start_agent(dir: &Path, center: &str) -> Proc {
    let data_dir = dir.join("edge-1");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--no-auth",
        "--admin-key",
        AGENT_ADMIN,
        "--node-name",
        "edge-1",
        "--region",
        "porto",
        "--control-plane",
        center,
        "--sync-token",
        TOKEN,
        "--sync-interval-ms",
        "200",
        "--sync-max-backoff-ms",
        "500",
    ];
    Proc::start(
        binary("edgeroute-agent").unwrap(),
        args.map(String::from).to_vec(),
        vec![],
        dir.join("edge-1.log"),
    )
    .await
    .unwrap()
}

async fn admin(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = client.request(method, url).bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn route(client: &reqwest::Client, agent: &str, profile: &str) -> (u16, Value) {
    let response = client
        .get(format!("{agent}/route/v1/{profile}/{CHOUSO}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Wait until the agent's `/v1/status` satisfies `ok`.
async fn status_until(agent: &Proc, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let client = client();
    let url = format!("{}/v1/status", agent.url);
    eventually(Duration::from_secs(90), what, || {
        let (client, url) = (client.clone(), url.clone());
        let ok = &ok;
        async move {
            let status = get_json(&client, &url, None).await?;
            ok(&status).then_some(status)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_with_a_truck_profile_gets_truck_routes_on_its_agents() {
    let Some(pbf) = shared_data("osm/porto.osm.pbf") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let car = build(
        pbf.clone(),
        dir.path().join("car.graph"),
        "porto-car",
        "car",
    );
    let truck = build(pbf, dir.path().join("truck.graph"), "porto-truck", "truck");
    let (car, truck) = (car.join().unwrap(), truck.join().unwrap());

    let mut center = start_center(dir.path(), &[]).await;
    let base = center.url.clone();
    let client = client();
    for (version, path) in [("porto-car", &car), ("porto-truck", &truck)] {
        let r = client
            .put(format!("{base}/api/v1/graphs/{version}"))
            .bearer_auth(ADMIN)
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let region = format!("{base}/api/v1/regions/porto/graph");
    let put = reqwest::Method::PUT;
    let (status, body) = admin(
        &client,
        put.clone(),
        region.clone(),
        Some(json!({"version": "porto-car"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Bad requests are refused with what was wrong, and change nothing.
    for (query, version, expected) in [
        ("?profile=Truck", "porto-truck", 400),
        ("?profile=truck", "porto-bus", 422),
        ("?profile=truck&x=1", "porto-truck", 400),
    ] {
        let (status, body) = admin(
            &client,
            put.clone(),
            format!("{region}{query}"),
            Some(json!({"version": version})),
        )
        .await;
        assert_eq!(status, expected, "{query} {version}: {body}");
        assert!(body.contains("message"), "{body}");
    }
    let (status, _) = admin(
        &client,
        reqwest::Method::GET,
        format!("{region}?profile=truck"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = admin(
        &client,
        put.clone(),
        format!("{region}?profile=truck"),
        Some(json!({"version": "porto-truck"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin(
        &client,
        reqwest::Method::GET,
        format!("{region}?profile=truck"),
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["version"].clone()
        ),
        (200, json!("porto-truck"))
    );
    let (_, body) = admin(&client, reqwest::Method::GET, region.clone(), None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["version"],
        "porto-car",
        "the default graph is untouched"
    );

    // An agent with no graph of its own gets both through sync.
    let mut agent = start_agent(dir.path(), &base).await;
    status_until(&agent, "car and truck served", |s| {
        s["graph"]["version"] == "porto-car" && s["profiles"]["truck"]["version"] == "porto-truck"
    })
    .await;
    let (status, car_route) = route(&client, &agent.url, "car").await;
    assert_eq!(status, 200, "{car_route}");
    let (status, truck_route) = route(&client, &agent.url, "truck").await;
    assert_eq!(status, 200, "{truck_route}");
    let car_s = car_route["routes"][0]["duration"].as_f64().unwrap();
    let truck_s = truck_route["routes"][0]["duration"].as_f64().unwrap();
    assert!(car_s < 90.0, "the car drives Rua do Chouso: {car_s} s");
    assert!(
        truck_s > 2.0 * car_s,
        "the truck goes around: {truck_s} s vs {car_s} s"
    );

    // The agent lists the profile as directed, with the artifact's sha256, and tells the center.
    let registry = get_json(&client, &format!("{base}/api/v1/graphs"), Some(ADMIN))
        .await
        .unwrap();
    let truck_sha = registry["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["version"] == "porto-truck")
        .map(|g| g["sha256"].as_str().unwrap().to_owned())
        .unwrap();
    let graphs = get_json(
        &client,
        &format!("{}/admin/graph", agent.url),
        Some(AGENT_ADMIN),
    )
    .await
    .unwrap();
    assert_eq!(
        graphs["profiles"]["truck"]["checksum"],
        truck_sha.as_str(),
        "{graphs}"
    );
    assert_eq!(graphs["profiles"]["truck"]["directed"], true, "{graphs}");
    eventually(
        Duration::from_secs(30),
        "the center sees the truck graph",
        || {
            let (client, url) = (client.clone(), format!("{base}/api/v1/nodes"));
            let sha = truck_sha.clone();
            async move {
                let nodes = get_json(&client, &url, Some(ADMIN)).await?;
                let node = nodes["nodes"]
                    .as_array()?
                    .iter()
                    .find(|n| n["node"] == "edge-1")?
                    .clone();
                (node["profiles"]["truck"]["sha256"] == sha.as_str()).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // Without the center, a restarted agent still serves the truck graph from its disk.
    center.kill9().await;
    agent.restart().await.unwrap();
    status_until(&agent, "truck served after a restart", |s| {
        s["profiles"]["truck"]["version"] == "porto-truck"
    })
    .await;
    let (status, again) = route(&client, &agent.url, "truck").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["routes"][0]["duration"],
        truck_route["routes"][0]["duration"]
    );

    // The center drops the profile: the agent stops serving it, and keeps the car.
    center.restart().await.unwrap();
    let (status, body) = admin(
        &client,
        reqwest::Method::DELETE,
        format!("{region}?profile=truck"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = admin(
        &client,
        reqwest::Method::DELETE,
        format!("{region}?profile=truck"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    status_until(&agent, "truck no longer served", |s| {
        s["profiles"].get("truck").is_none() && s["graph"]["version"] == "porto-car"
    })
    .await;
    let (status, gone) = route(&client, &agent.url, "truck").await;
    assert_eq!(
        (status, gone["code"].clone()),
        (400, json!("InvalidUrl")),
        "{gone}"
    );
    assert!(!dir.path().join("edge-1/profiles/truck.graph").exists());
}
