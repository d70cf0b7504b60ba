//! `POST /optimize` and the stored plans, served in process on port-0 listeners: custom
//! matrices, coordinates on the Monaco map, VROOM input errors, and plans surviving a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Served, artifact_a, client, get_json, serve_monaco, start_in_process};
use edgeroute_tests::data::shared_data;
use edgeroute_tests::vrp_instances::{Family, load};
use edgeroute_vrp::{
    check_feasibility,
    vroom::{to_input, to_solution},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Option<String>, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    (status, location, value)
}

fn matrix_problem() -> Value {
    json!({
        "vehicles": [
            {"id": 1, "start_index": 0, "end_index": 0, "capacity": [3]},
            {"id": 2, "start_index": 0, "end_index": 0, "capacity": [3], "costs": {"fixed": 1000}}
        ],
        "jobs": [
            {"id": 10, "location_index": 1, "delivery": [1], "time_windows": [[0, 100]]},
            {"id": 11, "location_index": 2, "delivery": [1]},
            {"id": 12, "location_index": 3, "delivery": [1], "service": 10},
            {"id": 13, "location_index": 3, "delivery": [9]}
        ],
        "matrices": {"car": {"durations": [
            [0, 10, 20, 30], [10, 0, 10, 20], [20, 10, 0, 10], [30, 20, 10, 0]
        ]}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_custom_matrices_coordinates_errors_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let args = [
        "--graph",
        artifact_a().to_str().unwrap(),
        "--no-auth",
        "--max-vrp-jobs",
        "5",
        "--max-vrp-time-limit-ms",
        "2000",
    ];
    let agent = start_in_process(&db, &args).await;
    let client = client();
    agent.ready(&client).await;
    let url = format!("{}/optimize?time_limit_ms=200", agent.url);

    // Custom matrices: one vehicle serves the three small jobs, job 13 does not fit.
    let (status, location, out) = post(&client, &url, &matrix_problem()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["code"], 0);
    let routes = out["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{out}");
    assert_eq!(routes[0]["vehicle"], 1);
    let steps = routes[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[0]["type"], "start");
    assert_eq!(steps[4]["type"], "end");
    assert_eq!(routes[0]["duration"], 60);
    assert_eq!(out["summary"]["cost"], 60);
    assert_eq!(out["summary"]["service"], 10);
    assert_eq!(
        out["unassigned"],
        json!([{"id": 13, "type": "job", "location_index": 3}])
    );
    let first_id = out["plan_id"].as_str().unwrap().to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("/plans/{first_id}").as_str())
    );

    // Coordinates on Monaco: the matrix comes from the graph, geometry on request.
    let coords = json!({
        "vehicles": [{"id": 1, "start": [7.4197, 43.7314], "end": [7.4197, 43.7314]}],
        "jobs": [
            {"id": 1, "location": [7.4246, 43.7384]},
            {"id": 2, "location": [7.4200, 43.7350]}
        ],
        "options": {"g": true}
    });
    let (status, _, out) = post(&client, &url, &coords).await;
    assert_eq!(status, 200, "{out}");
    let route = &out["routes"][0];
    assert_eq!(route["steps"].as_array().unwrap().len(), 4);
    assert!(route["duration"].as_u64().unwrap() > 0);
    assert!(route["distance"].as_u64().unwrap() > 100);
    assert!(route["geometry"].as_str().unwrap().len() > 10);
    assert_eq!(route["steps"][0]["location"], json!([7.4197, 43.7314]));
    assert!(out["unassigned"].as_array().unwrap().is_empty());
    let second_id = out["plan_id"].as_str().unwrap().to_owned();

    // Input errors: VROOM's code 2 (routing errors: code 3), HTTP 400.
    let mut bad_window = matrix_problem();
    bad_window["jobs"][0]["time_windows"] = json!([[50, 10]]);
    let mut bad_index = matrix_problem();
    bad_index["jobs"][1]["location_index"] = json!(9);
    let mut unknown = matrix_problem();
    unknown["jobs"][0]["setup"] = json!(5);
    let mut too_many = matrix_problem();
    too_many["jobs"] = json!([1, 2, 3, 4, 5, 6].map(|i| json!({"id": i, "location_index": 1})));
    let far = json!({
        "vehicles": [{"id": 1, "start": [7.4197, 43.7314]}],
        "jobs": [{"id": 1, "location": [2.35, 48.85]}]
    });
    for (body, code, needle) in [
        (bad_window, 2, "jobs[0].time_windows[0]"),
        (bad_index, 2, "jobs[1].location_index"),
        (unknown, 2, "setup"),
        (too_many, 2, "Too many jobs"),
        (json!({"vehicles": [], "jobs": []}), 2, "vehicles"),
        (far, 3, "jobs[0].location"),
    ] {
        let (status, _, out) = post(&client, &url, &body).await;
        assert_eq!(status, 400, "{out}");
        assert_eq!(out["code"], code, "{out}");
        assert!(out["error"].as_str().unwrap().contains(needle), "{out}");
    }
    let (status, _, out) = post(
        &client,
        &format!("{}/optimize?time_limit_ms=5000", agent.url),
        &matrix_problem(),
    )
    .await;
    assert_eq!((status, out["code"].clone()), (400, json!(2)), "{out}");
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 2);

    // Plans: by id, listed by sequence number, and still there after a restart.
    let (status, plan) = get_json(&client, &format!("{}/plans/{first_id}", agent.url)).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["seq"], 1);
    assert_eq!(plan["jobs"], 4);
    assert_eq!(plan["vehicles"], 2);
    assert!(plan["graph_version"].is_null());
    assert_eq!(plan["output"]["summary"]["cost"], 60);
    assert!(
        plan["solver_version"]
            .as_str()
            .unwrap()
            .starts_with("edgeroute-engine")
    );
    let (status, _) = get_json(&client, &format!("{}/plans/nope-77", agent.url)).await;
    assert_eq!(status, 404);
    agent.stop().await.unwrap();

    let agent = start_in_process(&db, &args).await;
    agent.ready(&client).await;
    let (status, list) = get_json(&client, &format!("{}/plans?since=0", agent.url)).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<_> = list["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [first_id.clone(), second_id.clone()]);
    let (_, second) = get_json(&client, &format!("{}/plans/{second_id}", agent.url)).await;
    assert_eq!(second["seq"], 2);
    assert_eq!(second["graph_version"], "monaco-a");
    assert!(second["graph_checksum"].is_string());
    let url = format!("{}/optimize?time_limit_ms=200", agent.url);
    let (status, _, out) = post(&client, &url, &matrix_problem()).await;
    assert_eq!(status, 200, "{out}");
    let third = out["plan_id"].as_str().unwrap();
    let (_, list) = get_json(&client, &format!("{}/plans?since=2&limit=10", agent.url)).await;
    assert_eq!(list["plans"][0]["id"], third);
    assert_eq!(list["plans"][0]["seq"], 3);
    assert_eq!(list["next_since"], 3);
    let (_, list) = get_json(&client, &format!("{}/plans?since=0&limit=1", agent.url)).await;
    assert_eq!(list["plans"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_since"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trip_on_monaco_visits_every_coordinate() {
    use common::{A, B, C};
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&["--no-auth"]).await;
    let url = format!("{}/trip/v1/driving/{A};{B};{C}", agent.url);

    let (status, r) = get_json(&client, &url).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["code"], "Ok");
    let trips = r["trips"].as_array().unwrap();
    assert_eq!(trips.len(), 1);
    assert_eq!(trips[0]["legs"].as_array().unwrap().len(), 3);
    assert!(trips[0]["duration"].as_f64().unwrap() > 0.0);
    assert!(trips[0]["geometry"].is_string());
    let mut positions: Vec<_> = r["waypoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["trips_index"], 0);
            assert!(w["location"].is_array());
            w["waypoint_index"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(r["waypoints"][0]["waypoint_index"], 0);
    positions.sort_unstable();
    assert_eq!(positions, [0, 1, 2]);

    let (status, r) = get_json(
        &client,
        &format!("{url}?roundtrip=false&source=first&destination=last&steps=true"),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["trips"][0]["legs"].as_array().unwrap().len(), 2);
    assert_eq!(r["waypoints"][0]["waypoint_index"], 0);
    assert_eq!(r["waypoints"][2]["waypoint_index"], 2);
    assert!(
        !r["trips"][0]["legs"][0]["steps"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (status, r) = get_json(&client, &format!("{url}?roundtrip=false")).await;
    assert_eq!((status, r["code"].as_str()), (400, Some("NotImplemented")));
    let (status, r) = get_json(&client, &format!("{url}?source=middle")).await;
    assert_eq!((status, r["code"].as_str()), (400, Some("InvalidValue")));
}

/// Solomon C101 through `/optimize` with custom matrices (issue 4's conversion: Euclidean
/// ×100 as durations and distances, times ×100): the answer, mapped back to the problem,
/// passes the engine's independent feasibility checker with every figure the agent
/// reported (arrivals, loads, cumulative durations and distances, costs), serves every
/// customer, and comes within 5% of the best-known distance after 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solomon_c101_through_http_is_feasible_and_near_best_known() {
    let Some(data) = shared_data("vrp/solomon/C101.txt") else {
        return;
    };
    let inst = load(&data, Family::Solomon).unwrap();
    let body = serde_json::to_value(to_input(&inst.problem).unwrap()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let client = client();
    let (status, _, out) = post(
        &client,
        &format!("{}/optimize?time_limit_ms=1000", agent.url),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let solution = to_solution(&inst.problem, &serde_json::from_value(out).unwrap()).unwrap();
    let stats = check_feasibility(&inst.problem, &solution).unwrap();
    assert_eq!((stats.served, stats.unassigned), (100, 0));
    let distance = inst.distance(&solution);
    let gap = distance / 828.94 - 1.0;
    println!(
        "C101 at 1 s: {} vehicles, distance {distance:.2}, gap {:.2}%",
        stats.routes,
        gap * 100.0
    );
    assert!(gap < 0.05, "gap {gap}");
}

/// A custom matrix far larger than axum's 2 MB default body cap: accepted up to
/// `--max-optimize-body-bytes`, refused beyond it with a 413 in VROOM's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_custom_matrices_are_accepted_up_to_the_configured_limit() {
    let n = 900;
    let matrix: Vec<Vec<u64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 0 } else { 100_000 }).collect())
        .collect();
    let body = json!({
        "vehicles": [{"id": 1, "start_index": 0, "end_index": 0}],
        "jobs": [{"id": 1, "location_index": 1}, {"id": 2, "location_index": n - 1}],
        "matrices": {"car": {"durations": matrix}}
    });
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size > 4 << 20, "{size} bytes");
    let client = client();

    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let url = format!("{}/optimize?time_limit_ms=50", agent.url);
    let (status, _, out) = post(&client, &url, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["summary"]["cost"], 300_000);

    // Refused on the announced length alone, before any of the body is read; headers only,
    // so the answer cannot race a client still writing.
    let small = start_in_process(
        &dir.path().join("db-small"),
        &["--no-auth", "--max-optimize-body-bytes", "1000000"],
    )
    .await;
    let addr = small.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /optimize HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":2"#), "{answer}");
    assert!(answer.contains("at most 1000000 bytes"), "{answer}");
}
