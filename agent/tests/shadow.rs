//! Shadow comparison during a graph canary, through a fake center: an agent told to serve
//! one graph with another as its shadow re-answers a sample of its route requests on the
//! shadow and reports how often the answers differ, in its reports and its metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Read,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use common::{artifact_a, artifact_b, client, metrics_text, start_in_process};
use edgeroute_engine::{BuildOptions, Coord, Graph, RoadNetwork, profile::Direction};
use edgeroute_protocol::sync::{
    Directives, GraphDirective, ReportAck, ShadowCounts, ShadowDirective,
};
use sha2::{Digest, Sha256};

/// A version label and its artifact's bytes.
type Artifact = (String, Vec<u8>);

/// A center that answers every report with the scripted directives, serves artifacts by
/// name and keeps the reports' metrics windows.
#[derive(Clone, Default)]
struct Center {
    directives: Arc<Mutex<Directives>>,
    artifacts: Arc<Mutex<Vec<Artifact>>>,
    windows: Arc<Mutex<Vec<edgeroute_protocol::sync::MetricsWindow>>>,
    acked: Arc<Mutex<u64>>,
    /// While set, every report is refused with 503 (a center in trouble).
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Center {
    /// Offer `bytes` for download and return the directive naming them.
    fn publish(&self, version: &str, bytes: &[u8]) -> GraphDirective {
        self.artifacts
            .lock()
            .unwrap()
            .push((version.to_owned(), bytes.to_vec()));
        GraphDirective {
            version: version.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size_bytes: bytes.len() as u64,
            url: format!("graphs/{version}"),
        }
    }

    fn direct(&self, graph: Option<GraphDirective>, shadow: Option<ShadowDirective>) {
        *self.directives.lock().unwrap() = Directives {
            graph,
            sync_interval_ms: None,
            shadow,
            ..Directives::default()
        };
    }

    /// Shadow counts of every report so far, summed, and the number of reports.
    fn shadow_totals(&self) -> (Option<ShadowCounts>, usize) {
        let windows = self.windows.lock().unwrap();
        let mut total: Option<ShadowCounts> = None;
        for w in windows.iter() {
            if let Some(s) = &w.shadow {
                total.get_or_insert_with(Default::default).merge(s);
            }
        }
        (total, windows.len())
    }

    async fn serve(self) -> String {
        async fn report(
            State(center): State<Center>,
            body: Bytes,
        ) -> Result<Json<ReportAck>, StatusCode> {
            if center.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut json)
                .unwrap();
            let report: edgeroute_protocol::sync::Report<serde_json::Value> =
                serde_json::from_slice(&json).unwrap();
            let mut acked = center.acked.lock().unwrap();
            for e in &report.events {
                *acked = (*acked).max(e["seq"].as_u64().unwrap());
            }
            center.windows.lock().unwrap().push(report.metrics);
            let ack = ReportAck {
                acked_seq: *acked,
                directives: center.directives.lock().unwrap().clone(),
            };
            Ok(Json(ack))
        }
        async fn artifact(
            State(center): State<Center>,
            Path(version): Path<String>,
        ) -> Result<Vec<u8>, StatusCode> {
            center
                .artifacts
                .lock()
                .unwrap()
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, bytes)| bytes.clone())
                .ok_or(StatusCode::NOT_FOUND)
        }
        let app = Router::new()
            .route("/sync/v1/report", post(report))
            .route("/graphs/{version}", get(artifact))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

fn shadow_of(graph: GraphDirective, sample_rate: f64) -> ShadowDirective {
    ShadowDirective {
        graph,
        sample_rate,
        duration_tolerance: 0.1,
    }
}

/// Points spread over Monaco, each near a road.
fn monaco_points() -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for i in 0..5 {
        for j in 0..4 {
            points.push((7.412 + 0.005 * f64::from(i), 43.730 + 0.005 * f64::from(j)));
        }
    }
    points
}

/// `n` route requests between Monaco points; returns their statuses.
async fn route_requests(client: &reqwest::Client, base: &str, n: usize) -> Vec<u16> {
    let points = monaco_points();
    let mut statuses = Vec::new();
    for k in 0..n {
        let (a, b) = (points[k % points.len()], points[(k * 7 + 3) % points.len()]);
        let url = format!("{base}/route/v1/driving/{},{};{},{}", a.0, a.1, b.0, b.1);
        statuses.push(client.get(url).send().await.unwrap().status().as_u16());
    }
    statuses
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

/// Poll `check` until it returns `Some`, failing after 30 s with `what`.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the agent serves `served` with `shadow` loaded (or none).
async fn wait_for_graphs(client: &reqwest::Client, base: &str, served: &str, shadow: Option<&str>) {
    let served_line = format!("version=\"{served}\"");
    eventually("the directed graphs", async || {
        let text = metrics_text(client, base).await;
        let serves = text
            .lines()
            .any(|l| l.starts_with("edgeroute_agent_graph_info{") && l.contains(&served_line));
        let shadow_line = text
            .lines()
            .find(|l| l.starts_with("edgeroute_agent_shadow_graph_info{"));
        let shadow_ok = match (shadow, shadow_line) {
            (Some(v), Some(line)) => line.contains(&format!("version=\"{v}\"")),
            (None, None) => true,
            _ => false,
        };
        (serves && shadow_ok).then_some(())
    })
    .await;
}

/// A few roads near (0, 0): a different "city", where no Monaco coordinate snaps.
fn nowhere_artifact() -> Vec<u8> {
    let mut b = RoadNetwork::builder();
    let c = |lon, lat| Coord { lon, lat };
    let n = [
        b.add_node(c(0.000, 0.000)),
        b.add_node(c(0.010, 0.000)),
        b.add_node(c(0.010, 0.010)),
    ];
    for i in 0..3 {
        b.add_road(n[i], n[(i + 1) % 3], &[], 36.0, Direction::Both, "side");
    }
    let options = BuildOptions {
        version: "nowhere".to_owned(),
        ..BuildOptions::default()
    };
    Graph::from_network(b.build().unwrap(), &options)
        .unwrap()
        .to_artifact()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_graph_content_never_differs_and_shadow_none_unloads() {
    let center = Center::default();
    let a_bytes = std::fs::read(artifact_a()).unwrap();
    let a = center.publish("monaco-a", &a_bytes);
    let b = center.publish("monaco-b", artifact_b());
    // The canary serves B (the same map under a new version) with A, still stored as the
    // previous version, as its shadow.
    center.direct(Some(b), Some(shadow_of(a, 1.0)));
    let url = center.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--graph",
            artifact_a().to_str().unwrap(),
            "--control-plane",
            &url,
            "--sync-interval-ms",
            "50",
        ],
    )
    .await;
    let client = client();
    agent.ready(&client).await;
    wait_for_graphs(&client, &agent.url, "monaco-b", Some("monaco-a")).await;

    let statuses = route_requests(&client, &agent.url, 30).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let counts = eventually("30 comparisons reported", async || {
        center.shadow_totals().0.filter(|c| c.compared >= 30)
    })
    .await;
    assert_eq!(counts.against_version, "monaco-a");
    assert_eq!(counts.compared, 30, "every request is in a sample of 1.0");
    assert_eq!((counts.differ, counts.lost_routes), (0, 0), "{counts:?}");
    let text = metrics_text(&client, &agent.url).await;
    assert_eq!(metric(&text, "edgeroute_agent_shadow_compared_total"), 30.0);
    assert_eq!(metric(&text, "edgeroute_agent_shadow_differ_total"), 0.0);

    // The rollout ends: the shadow is unloaded, later requests are not compared and later
    // reports carry no shadow counts.
    center.direct(None, None);
    wait_for_graphs(&client, &agent.url, "monaco-b", None).await;
    let (_, reports_before) = center.shadow_totals();
    route_requests(&client, &agent.url, 10).await;
    eventually("two more reports", async || {
        (center.shadow_totals().1 >= reports_before + 2).then_some(())
    })
    .await;
    let windows = center.windows.lock().unwrap().clone();
    assert!(
        windows[reports_before + 1..]
            .iter()
            .all(|w| w.shadow.is_none()),
        "reports after the unload carry shadow counts"
    );
    assert_eq!(center.shadow_totals().0.unwrap().compared, 30);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_of_another_city_loses_every_route_the_shadow_had() {
    let center = Center::default();
    let nowhere = center.publish("nowhere", &nowhere_artifact());
    // B is neither served nor stored on the agent: the shadow is downloaded, and must not
    // become the served graph.
    let b = center.publish("monaco-b", artifact_b());
    center.direct(Some(nowhere), Some(shadow_of(b, 0.5)));
    let url = center.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--graph",
            artifact_a().to_str().unwrap(),
            "--control-plane",
            &url,
            "--sync-interval-ms",
            "50",
        ],
    )
    .await;
    let client = client();
    agent.ready(&client).await;
    wait_for_graphs(&client, &agent.url, "nowhere", Some("monaco-b")).await;

    let statuses = route_requests(&client, &agent.url, 20).await;
    assert!(
        statuses.iter().all(|s| *s == 400),
        "NoSegment on the wrong city: {statuses:?}"
    );
    let counts = eventually("10 comparisons reported", async || {
        center.shadow_totals().0.filter(|c| c.compared >= 10)
    })
    .await;
    assert_eq!(counts.against_version, "monaco-b");
    assert_eq!(counts.compared, 10, "half of 20 requests sampled");
    assert_eq!(counts.differ, 10, "{counts:?}");
    assert_eq!(counts.lost_routes, 10, "{counts:?}");
    let text = metrics_text(&client, &agent.url).await;
    assert_eq!(
        metric(&text, "edgeroute_agent_shadow_lost_routes_total"),
        10.0
    );
    assert!(
        text.contains("edgeroute_agent_graph_info{version=\"nowhere\""),
        "the shadow must never be served"
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shadow_queue_drops_samples_and_never_fails_a_request() {
    let center = Center::default();
    let a_bytes = std::fs::read(artifact_a()).unwrap();
    let a = center.publish("monaco-a", &a_bytes);
    center.direct(None, Some(shadow_of(a, 1.0)));
    let url = center.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--graph",
            artifact_a().to_str().unwrap(),
            "--control-plane",
            &url,
            "--sync-interval-ms",
            "50",
            "--shadow-queue",
            "1",
        ],
    )
    .await;
    let client = client();
    agent.ready(&client).await;
    wait_for_graphs(&client, &agent.url, "monaco-a", Some("monaco-a")).await;

    // Many at once against a queue of one: some samples are dropped, no request fails.
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (client, base) = (client.clone(), agent.url.clone());
            tokio::spawn(async move { route_requests(&client, &base, 16).await })
        })
        .collect();
    for r in requests {
        let statuses = r.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    // Every sampled request is either compared or dropped, and both are counted.
    let (compared, dropped) = eventually("every sample accounted for", async || {
        let text = metrics_text(&client, &agent.url).await;
        let compared = metric(&text, "edgeroute_agent_shadow_compared_total");
        let dropped = metric(&text, "edgeroute_agent_shadow_dropped_total");
        (compared + dropped == 128.0).then_some((compared, dropped))
    })
    .await;
    eprintln!("queue of 1, 128 concurrent samples: {compared} compared, {dropped} dropped");
    let reported = eventually("the compared samples reported", async || {
        center
            .shadow_totals()
            .0
            .filter(|c| c.compared as f64 >= compared)
    })
    .await;
    assert_eq!(reported.compared as f64, compared);
    assert_eq!(reported.differ, 0);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counts_survive_failed_reports() {
    let center = Center::default();
    let a_bytes = std::fs::read(artifact_a()).unwrap();
    let a = center.publish("monaco-a", &a_bytes);
    center.direct(None, Some(shadow_of(a, 1.0)));
    let url = center.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--graph",
            artifact_a().to_str().unwrap(),
            "--control-plane",
            &url,
            "--sync-interval-ms",
            "50",
            "--sync-max-backoff-ms",
            "100",
        ],
    )
    .await;
    let client = client();
    agent.ready(&client).await;
    wait_for_graphs(&client, &agent.url, "monaco-a", Some("monaco-a")).await;
    let (_, status) = common::get_json(&client, &format!("{}/v1/status", agent.url)).await;
    assert_eq!(status["sync"]["shadow"], "monaco-a", "{status}");

    // The center refuses reports while the requests are compared: the counts wait in the
    // agent's window.
    center
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    route_requests(&client, &agent.url, 12).await;
    eventually("12 local comparisons and a failed report", async || {
        let text = metrics_text(&client, &agent.url).await;
        let compared = metric(&text, "edgeroute_agent_shadow_compared_total");
        let failures = metric(&text, "edgeroute_agent_sync_report_failures_total");
        (compared == 12.0 && failures >= 2.0).then_some(())
    })
    .await;
    let before = center.shadow_totals().0.map_or(0, |c| c.compared);
    assert_eq!(before, 0, "nothing compared reached the center yet");
    center
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let counts = eventually("the counts delivered", async || {
        center.shadow_totals().0.filter(|c| c.compared >= 12)
    })
    .await;
    assert_eq!(counts.compared, 12);
    // Sent once: later reports do not repeat them.
    let reports = center.shadow_totals().1;
    eventually("three more reports", async || {
        (center.shadow_totals().1 >= reports + 3).then_some(())
    })
    .await;
    assert_eq!(center.shadow_totals().0.unwrap().compared, 12);
    agent.stop().await.unwrap();
}
