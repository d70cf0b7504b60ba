//! Several profiles from one agent (issue 15): the car graph as the default, a truck graph
//! beside it, on Porto, where a 7.5 t truck must go around streets a car drives through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, sync::OnceLock};

use common::{client, get_json, start_in_process};
use edgeroute_engine::{BuildOptions, Graph, Profile, TruckDimensions};
use edgeroute_tests::data::shared_data;
use serde_json::json;

/// Both ends of Rua do Chouso (OSM way 25687435, one way, `maxweight=3.5`): a car drives
/// it in about 58 s, a 7.5 t truck may not and goes around (the engine's `tests/truck.rs`
/// finds it in the extract).
const CHOUSO_FROM: &str = "-8.677192,41.224880";
const CHOUSO_TO: &str = "-8.676889,41.221609";

struct Porto {
    _dir: tempfile::TempDir,
    car: PathBuf,
    truck: PathBuf,
}

/// The Porto car and truck artifacts, built once per test binary (in parallel), or `None`
/// without the shared data.
fn porto() -> Option<&'static Porto> {
    static PORTO: OnceLock<Option<Porto>> = OnceLock::new();
    PORTO
        .get_or_init(|| {
            let pbf = shared_data("osm/porto.osm.pbf")?;
            let dir = tempfile::tempdir().unwrap();
            let build = |profile: Profile, version: &str, out: PathBuf| {
                let pbf = pbf.clone();
                let version = version.to_owned();
                std::thread::spawn(move || {
                    let options = BuildOptions {
                        version,
                        ..BuildOptions::default()
                    };
                    Graph::from_osm_file(&pbf, &profile, &options)
                        .unwrap()
                        .write_artifact(&out)
                        .unwrap();
                    out
                })
            };
            let car = build(Profile::car(), "porto-car", dir.path().join("car.graph"));
            let truck = build(
                Profile::truck(TruckDimensions::default()),
                "porto-truck",
                dir.path().join("truck.graph"),
            );
            Some(Porto {
                car: car.join().unwrap(),
                truck: truck.join().unwrap(),
                _dir: dir,
            })
        })
        .as_ref()
}

async fn serve(porto: &Porto, extra: &[&str]) -> (common::InProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--no-auth", "--graph", porto.car.to_str().unwrap()];
    args.extend_from_slice(extra);
    let agent = start_in_process(&dir.path().join("db"), &args).await;
    agent.ready(&client()).await;
    (agent, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_answers_on_its_own_graph_and_unknown_ones_are_refused() {
    let Some(porto) = porto() else { return };
    let truck_flag = format!("truck={}", porto.truck.display());
    let (agent, _dir) = serve(porto, &["--profile-graph", &truck_flag]).await;
    let client = client();
    let base = &agent.url;

    let route = |profile: &str| format!("{base}/route/v1/{profile}/{CHOUSO_FROM};{CHOUSO_TO}");
    let (status, car) = get_json(&client, &route("driving")).await;
    assert_eq!(status, 200, "{car}");
    let (_, car_alias) = get_json(&client, &route("car")).await;
    assert_eq!(
        car_alias["routes"], car["routes"],
        "car and driving are one graph"
    );
    let (status, truck) = get_json(&client, &route("truck")).await;
    assert_eq!(status, 200, "{truck}");
    let (car_s, truck_s) = (
        car["routes"][0]["duration"].as_f64().unwrap(),
        truck["routes"][0]["duration"].as_f64().unwrap(),
    );
    assert!(car_s < 90.0, "the car drives Rua do Chouso: {car_s} s");
    assert!(
        truck_s > 2.0 * car_s,
        "the truck must go around: {truck_s} s vs {car_s} s"
    );
    assert_ne!(car["routes"][0]["geometry"], truck["routes"][0]["geometry"]);

    // Table and nearest pick the profile too.
    let (status, table) = get_json(
        &client,
        &format!("{base}/table/v1/truck/{CHOUSO_FROM};{CHOUSO_TO}"),
    )
    .await;
    assert_eq!(status, 200, "{table}");
    let cell = table["durations"][0][1].as_f64().unwrap();
    assert!((cell - truck_s).abs() < 1.0, "{cell} vs {truck_s}");

    for path in [
        format!("/route/v1/bike/{CHOUSO_FROM};{CHOUSO_TO}"),
        format!("/table/v1/foot/{CHOUSO_FROM};{CHOUSO_TO}"),
        format!("/nearest/v1/Truck/{CHOUSO_FROM}"),
    ] {
        let (status, body) = get_json(&client, &format!("{base}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "InvalidUrl", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("truck"),
            "names the served profiles: {message}"
        );
    }

    let (_, status) = get_json(&client, &format!("{base}/v1/status")).await;
    let profiles = status["profiles"].as_object().unwrap();
    assert_eq!(
        profiles.keys().collect::<Vec<_>>(),
        ["car", "truck"],
        "{status}"
    );
    assert_eq!(profiles["truck"]["version"], "porto-truck");
    agent.stop().await.unwrap();
}

fn problem(profiles: &[Option<&str>]) -> serde_json::Value {
    let from: Vec<f64> = CHOUSO_FROM.split(',').map(|v| v.parse().unwrap()).collect();
    let to: Vec<f64> = CHOUSO_TO.split(',').map(|v| v.parse().unwrap()).collect();
    let vehicles: Vec<_> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = json!({ "id": i + 1, "start": from, "end": to, "capacity": [1] });
            if let Some(p) = p {
                v["profile"] = json!(p);
            }
            v
        })
        .collect();
    // One job per vehicle, each filling a vehicle: every vehicle drives Rua do Chouso's
    // ends on its own profile's graph.
    let jobs: Vec<_> = (0..profiles.len())
        .map(|i| json!({ "id": i + 1, "location": to, "delivery": [1] }))
        .collect();
    json!({ "vehicles": vehicles, "jobs": jobs })
}

async fn optimize(
    client: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("{base}/optimize"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_picks_the_matrix_of_the_vehicles_profile() {
    let Some(porto) = porto() else { return };
    let truck_flag = format!("truck={}", porto.truck.display());
    let (agent, _dir) = serve(porto, &["--profile-graph", &truck_flag]).await;
    let client = client();
    let base = &agent.url;

    let (status, car) = optimize(&client, base, &problem(&[None])).await;
    assert_eq!(status, 200, "{car}");
    let (status, car_named) = optimize(&client, base, &problem(&[Some("car")])).await;
    assert_eq!(status, 200, "{car_named}");
    let (status, truck) = optimize(&client, base, &problem(&[Some("truck")])).await;
    assert_eq!(status, 200, "{truck}");
    let duration = |out: &serde_json::Value| out["summary"]["duration"].as_f64().unwrap();
    assert_eq!(duration(&car), duration(&car_named));
    assert!(
        duration(&truck) > 2.0 * duration(&car),
        "the truck's matrix goes around Rua do Chouso: {} vs {}",
        duration(&truck),
        duration(&car)
    );

    let (status, unknown) = optimize(&client, base, &problem(&[Some("bike")])).await;
    assert_eq!(
        (status, unknown["code"].as_u64()),
        (400, Some(2)),
        "{unknown}"
    );
    assert_eq!(unknown["error"], "Invalid profile: bike.");

    // A mixed fleet: each vehicle travels on its own profile's matrix.
    for fleet in [[None, Some("truck")], [Some("truck"), Some("driving")]] {
        let (status, mixed) = optimize(&client, base, &problem(&fleet)).await;
        assert_eq!(status, 200, "{mixed}");
        assert_eq!(mixed["unassigned"], json!([]), "{mixed}");
        for route in mixed["routes"].as_array().unwrap() {
            let vehicle = route["vehicle"].as_u64().unwrap() as usize;
            let alone = if fleet[vehicle - 1] == Some("truck") {
                &truck
            } else {
                &car
            };
            assert_eq!(
                route["duration"].as_f64(),
                alone["summary"]["duration"].as_f64(),
                "vehicle {vehicle} of {fleet:?}: {mixed}"
            );
        }
        assert_eq!(
            duration(&mixed),
            duration(&car) + duration(&truck),
            "{mixed}"
        );
    }
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_uploaded_by_the_admin_is_served_and_kept_across_restarts() {
    let Some(porto) = porto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let args = [
        "--no-auth",
        "--admin-key",
        "adm",
        "--graph",
        porto.car.to_str().unwrap(),
    ];
    let agent = start_in_process(&db, &args).await;
    let client = client();
    agent.ready(&client).await;
    let route = format!("{}/route/v1/truck/{CHOUSO_FROM};{CHOUSO_TO}", agent.url);
    let (status, _) = get_json(&client, &route).await;
    assert_eq!(status, 400, "no truck graph yet");

    let upload = |profile: &str, path: &PathBuf| {
        client
            .put(format!("{}/admin/graph?profile={profile}", agent.url))
            .bearer_auth("adm")
            .body(std::fs::read(path).unwrap())
            .send()
    };
    // A car graph is not a truck graph.
    let wrong = upload("truck", &porto.car).await.unwrap();
    assert_eq!(wrong.status(), 400);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("car profile"),
        "{body}"
    );
    // The name is refused before the body is read; a small body keeps the client from
    // racing the server's early answer with a broken pipe.
    let bad_name = client
        .put(format!("{}/admin/graph?profile=../x", agent.url))
        .bearer_auth("adm")
        .body(&b"x"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_name.status(), 400);

    let ok = upload("truck", &porto.truck).await.unwrap();
    assert_eq!(ok.status(), 200);
    let change: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(change["version"], "porto-truck");
    let (status, truck) = get_json(&client, &route).await;
    assert_eq!(status, 200, "{truck}");
    // The default graph is untouched.
    let (_, status_body) = get_json(&client, &format!("{}/v1/status", agent.url)).await;
    assert_eq!(status_body["graph"]["version"], "porto-car");
    agent.stop().await.unwrap();

    let agent = start_in_process(&db, &args).await;
    agent.ready(&client).await;
    let route = format!("{}/route/v1/truck/{CHOUSO_FROM};{CHOUSO_TO}", agent.url);
    let (status, again) = get_json(&client, &route).await;
    assert_eq!(
        status, 200,
        "the uploaded profile survives a restart: {again}"
    );
    assert_eq!(again["routes"], truck["routes"]);
    agent.stop().await.unwrap();
}
