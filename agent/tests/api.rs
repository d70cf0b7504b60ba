//! The OSRM API on the Monaco map, served in process on a port-0 listener: response shapes
//! field by field and the bad-input list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{A, B, C, Served, get_json, metrics_text, serve_monaco};
use serde_json::Value;

fn assert_waypoint(w: &Value) {
    assert!(w["hint"].is_string());
    assert!(w["name"].is_string());
    assert!(w["distance"].as_f64().unwrap() >= 0.0);
    let loc = w["location"].as_array().unwrap();
    assert_eq!(loc.len(), 2);
    let (lon, lat) = (loc[0].as_f64().unwrap(), loc[1].as_f64().unwrap());
    assert!(
        (7.3..7.6).contains(&lon) && (43.6..43.8).contains(&lat),
        "[lon, lat] order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_table_nearest_have_osrm_shapes() {
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&["--no-auth"]).await;
    let url = &agent.url;

    // Route with steps, GeoJSON, full overview and all annotations.
    let (status, r) = get_json(
        &client,
        &format!(
            "{url}/route/v1/driving/{A};{B}?steps=true&geometries=geojson&overview=full&annotations=true"
        ),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["code"], "Ok");
    let route = &r["routes"][0];
    assert_eq!(r["routes"].as_array().unwrap().len(), 1);
    for key in ["distance", "duration", "weight"] {
        assert!(route[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(route["weight_name"], "routability");
    assert_eq!(route["geometry"]["type"], "LineString");
    let line = route["geometry"]["coordinates"].as_array().unwrap();
    assert!(line.len() > 2);
    let legs = route["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 1);
    let leg = &legs[0];
    assert_eq!(leg["distance"], route["distance"]);
    assert!(leg["summary"].is_string());
    let steps = leg["steps"].as_array().unwrap();
    assert!(steps.len() >= 2);
    assert_eq!(steps[0]["maneuver"]["type"], "depart");
    assert_eq!(steps.last().unwrap()["maneuver"]["type"], "arrive");
    for step in steps {
        for key in ["distance", "duration", "weight"] {
            assert!(step[key].is_number(), "{key}");
        }
        assert_eq!(step["mode"], "driving");
        assert!(step["name"].is_string());
        assert_eq!(step["geometry"]["type"], "LineString");
        let m = &step["maneuver"];
        assert!(m["bearing_before"].is_u64() && m["bearing_after"].is_u64());
        assert_eq!(m["location"].as_array().unwrap().len(), 2);
        assert!(!step["intersections"].as_array().unwrap().is_empty());
    }
    let step_sum: f64 = steps.iter().map(|s| s["distance"].as_f64().unwrap()).sum();
    assert!((step_sum - leg["distance"].as_f64().unwrap()).abs() < 1.0);
    let annotation = &leg["annotation"];
    let n = annotation["duration"].as_array().unwrap().len();
    assert_eq!(n, line.len() - 1, "one annotation per geometry segment");
    for key in ["distance", "speed", "weight"] {
        assert_eq!(annotation[key].as_array().unwrap().len(), n);
    }
    assert_eq!(r["waypoints"].as_array().unwrap().len(), 2);
    r["waypoints"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(assert_waypoint);

    // Default: polyline string, simplified overview, no steps; .json suffix; polyline6.
    let (_, plain) = get_json(&client, &format!("{url}/route/v1/car/{A};{B}.json")).await;
    assert!(plain["routes"][0]["geometry"].is_string());
    assert!(
        plain["routes"][0]["legs"][0]["steps"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(plain["routes"][0]["legs"][0].get("annotation").is_none());
    assert_eq!(plain["routes"][0]["distance"], route["distance"]);
    let (_, none) = get_json(
        &client,
        &format!("{url}/route/v1/driving/{A};{B}?overview=false"),
    )
    .await;
    assert!(none["routes"][0].get("geometry").is_none());
    // Built without the shape (the engine's summary detail), the answer is otherwise the
    // same: totals, and each leg's totals and road-name summary.
    assert_eq!(
        none["routes"][0]["distance"],
        plain["routes"][0]["distance"]
    );
    assert_eq!(
        none["routes"][0]["duration"],
        plain["routes"][0]["duration"]
    );
    assert_eq!(none["routes"][0]["legs"], plain["routes"][0]["legs"]);

    // polyline(...) coordinates give the same route.
    let coords: Vec<edgeroute_engine::Coord> = [A, B]
        .iter()
        .map(|p| {
            let (lon, lat) = p.split_once(',').unwrap();
            edgeroute_engine::Coord::new(lon.parse().unwrap(), lat.parse().unwrap()).unwrap()
        })
        .collect();
    let encoded = edgeroute_engine::polyline::encode(&coords, 5);
    let escaped: String = encoded.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, via_polyline) = get_json(
        &client,
        &format!("{url}/route/v1/driving/polyline({escaped})"),
    )
    .await;
    assert_eq!(status, 200, "{via_polyline}");
    assert!(
        (via_polyline["routes"][0]["distance"].as_f64().unwrap()
            - route["distance"].as_f64().unwrap())
        .abs()
            < 50.0
    );

    // Three waypoints: two legs adding up.
    let (_, multi) = get_json(&client, &format!("{url}/route/v1/driving/{A};{C};{B}")).await;
    let legs = multi["routes"][0]["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2);
    let sum: f64 = legs.iter().map(|l| l["duration"].as_f64().unwrap()).sum();
    assert!((sum - multi["routes"][0]["duration"].as_f64().unwrap()).abs() < 0.2);

    // Table: sources/destinations subsets, both matrices.
    let (status, t) = get_json(
        &client,
        &format!("{url}/table/v1/driving/{A};{B};{C}?sources=0;1&destinations=2&annotations=duration,distance"),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["code"], "Ok");
    assert_eq!(t["durations"].as_array().unwrap().len(), 2);
    assert_eq!(t["durations"][0].as_array().unwrap().len(), 1);
    assert_eq!(t["distances"][1].as_array().unwrap().len(), 1);
    assert_eq!(t["sources"].as_array().unwrap().len(), 2);
    assert_eq!(t["destinations"].as_array().unwrap().len(), 1);
    t["sources"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(assert_waypoint);
    let (_, full) = get_json(&client, &format!("{url}/table/v1/driving/{A};{B}")).await;
    assert_eq!(full["durations"][0][0], 0.0);
    assert!(full.get("distances").is_none(), "durations only by default");
    // A -> B in the table equals the route's duration.
    assert!(
        (full["durations"][0][1].as_f64().unwrap() - route["duration"].as_f64().unwrap()).abs()
            < 0.2
    );

    // Nearest.
    let (status, n) = get_json(&client, &format!("{url}/nearest/v1/driving/{A}?number=3")).await;
    assert_eq!(status, 200, "{n}");
    let waypoints = n["waypoints"].as_array().unwrap();
    assert_eq!(waypoints.len(), 3);
    waypoints.iter().for_each(assert_waypoint);
    let d: Vec<f64> = waypoints
        .iter()
        .map(|w| w["distance"].as_f64().unwrap())
        .collect();
    assert!(d.windows(2).all(|p| p[0] <= p[1]), "nearest first: {d:?}");

    // Operations endpoints.
    let (_, status_body) = get_json(&client, &format!("{url}/v1/status")).await;
    assert_eq!(status_body["graph"]["version"], "monaco-a");
    assert_eq!(status_body["graph"]["checksum"].as_str().unwrap().len(), 64);
    assert_eq!(status_body["region"], "default");
    assert!(status_body["uptime_s"].is_u64());
    let (_, doc) = get_json(&client, &format!("{url}/openapi.json")).await;
    assert!(doc["paths"]["/route/{version}/{profile}/{coordinates}"].is_object());
    let response = client
        .get(format!("{url}/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let metrics = metrics_text(&client, url).await;
    assert!(metrics.contains(
        "edgeroute_agent_http_requests_total{endpoint=\"/route/{version}/{profile}/{coordinates}\",method=\"GET\",code=\"200\"}"
    ), "{metrics}");
    assert!(metrics.contains("edgeroute_agent_graph_info{version=\"monaco-a\""));
    assert!(metrics.contains("edgeroute_agent_build_info"));
    assert!(!metrics.contains("7.4197"), "raw paths never become labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_osrm_errors_as_json() {
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&[
        "--no-auth",
        "--max-route-waypoints",
        "3",
        "--max-table-size",
        "2",
        "--max-body-bytes",
        "1024",
    ])
    .await;
    let url = &agent.url;
    let far = "2.35,48.85"; // Paris: no road of the Monaco graph within the radius.
    let cases: Vec<(String, u16, &str)> = vec![
        ("/route/v1/driving/7.41;43.73".to_owned(), 400, "InvalidUrl"),
        (format!("/route/v1/driving/abc,def;{B}"), 400, "InvalidUrl"),
        (
            format!("/route/v1/driving/NaN,43.73;{B}"),
            400,
            "InvalidUrl",
        ),
        (
            format!("/route/v1/driving/7.41,95;{B}"),
            400,
            "InvalidValue",
        ),
        (format!("/route/v1/driving/{A}"), 400, "InvalidOptions"),
        (format!("/route/v1/driving/{A};{far}"), 400, "NoSegment"),
        (format!("/route/v1/driving/{A};{B};{C};{A}"), 400, "TooBig"),
        (format!("/table/v1/driving/{A};{B};{C}"), 400, "TooBig"),
        (
            format!("/route/v1/driving/{A};{B}?bogus=1"),
            400,
            "InvalidQuery",
        ),
        (
            format!("/route/v1/driving/{A};{B}?steps=maybe"),
            400,
            "InvalidQuery",
        ),
        (
            format!("/route/v1/driving/{A};{B}?radiuses=10"),
            400,
            "InvalidOptions",
        ),
        (
            "/route/v1/driving/polyline(%7E%7E%7E".to_owned(),
            400,
            "InvalidUrl",
        ),
        (
            "/route/v1/driving/polyline(%7E%7E%7E)".to_owned(),
            400,
            "InvalidUrl",
        ),
        (format!("/route/v2/driving/{A};{B}"), 400, "InvalidVersion"),
        (
            format!("/table/v1/driving/{A};{B}?sources=5"),
            400,
            "InvalidOptions",
        ),
        (
            format!("/nearest/v1/driving/{A};{B}"),
            400,
            "InvalidOptions",
        ),
        (
            format!("/nearest/v1/driving/{A}?number=1000"),
            400,
            "TooBig",
        ),
        (format!("/nearest/v1/driving/{far}"), 400, "NoSegment"),
        ("/no/such/path".to_owned(), 404, "NotFound"),
        ("/route/v1/driving".to_owned(), 404, "NotFound"),
    ];
    for (path, status, code) in &cases {
        let (got, body) = get_json(&client, &format!("{url}{path}")).await;
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (*status, *code),
            "{path}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }

    // Wrong method: 405 JSON.
    let response = client
        .post(format!("{url}/route/v1/driving/{A};{B}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "MethodNotAllowed");

    // Huge body: 413 JSON. (Its own client: the server closes that connection rather than
    // drain a megabyte, which a pooled connection would trip over.)
    let response = common::client()
        .get(format!("{url}/route/v1/driving/{A};{B}"))
        .body(vec![b'x'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "PayloadTooLarge");

    // The admin API is off without --admin-key.
    let response = client
        .put(format!("{url}/admin/graph"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Still healthy after all that.
    let (status, _) = get_json(&client, &format!("{url}/route/v1/driving/{A};{B}")).await;
    assert_eq!(status, 200);
}
