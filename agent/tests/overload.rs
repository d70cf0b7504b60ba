//! Overload (issue 16), in process with custom matrices (no graph): small `/optimize`
//! problems do not wait behind each other, a full solve queue refuses at once, and requests
//! whose clients go away are counted and leave the in-flight gauge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, metrics_text, start_in_process};
use serde_json::{Value, json};

/// Two jobs on a line: solved exactly in microseconds.
fn small_problem() -> Value {
    json!({
        "vehicles": [{"id": 1, "start_index": 0, "end_index": 0}],
        "jobs": [{"id": 1, "location_index": 1}, {"id": 2, "location_index": 2}],
        "matrices": {"car": {"durations": [[0, 10, 20], [10, 0, 10], [20, 10, 0]]}}
    })
}

/// 150 jobs on an irregular matrix: the search keeps improving for far longer than a
/// second, so a solve uses its whole time limit.
fn large_problem() -> Value {
    let n = 151;
    let durations: Vec<Vec<u64>> = (0..n)
        .map(|i: u64| {
            (0..n)
                .map(|j: u64| {
                    if i == j {
                        0
                    } else {
                        10 + (i * 37 + j * 101 + i * j * 7) % 500
                    }
                })
                .collect()
        })
        .collect();
    let jobs: Vec<Value> = (1..n)
        .map(|i| json!({"id": i, "location_index": i}))
        .collect();
    json!({
        "vehicles": [
            {"id": 1, "start_index": 0, "end_index": 0},
            {"id": 2, "start_index": 0, "end_index": 0},
            {"id": 3, "start_index": 0, "end_index": 0}
        ],
        "jobs": jobs,
        "matrices": {"car": {"durations": durations}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_five_concurrent_small_problems_all_succeed_quickly() {
    let dir = tempfile::tempdir().unwrap();
    // Runtime lag and queue delay are other tests' subjects: here the solve queue and the
    // early stop are. Thirty-five requests arriving at once on a slow 2-core machine in a
    // debug build wait more than the default 5 ms for a worker, and were shed for it.
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--max-runtime-lag-ms",
            "0",
            "--max-queue-delay-ms",
            "0",
        ],
    )
    .await;
    let client = client();
    let url = format!("{}/optimize?time_limit_ms=1000", agent.url);
    let started = Instant::now();
    let requests = (0..35).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let response = client.post(&url).json(&small_problem()).send().await;
            let response = response.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        })
    });
    for request in futures::future::join_all(requests).await {
        let (status, body) = request.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["summary"]["unassigned"], 0, "{body}");
        // Each used far less than its one-second budget.
        assert!(
            body["summary"]["computing_times"]["solving"]
                .as_u64()
                .unwrap()
                < 500
        );
    }
    // One at a time and each using its whole second, they took 35 s (past the 30 s timeout).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_solve_queue_refuses_at_once_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--max-concurrent-solves",
            "1",
            "--solve-queue",
            "1",
            // Parsing the large bodies in a debug build stalls a worker for a moment; this
            // test is about the solve queue, not about runtime lag or queue delay.
            "--max-runtime-lag-ms",
            "0",
            "--max-queue-delay-ms",
            "0",
        ],
    )
    .await;
    let client = client();
    let url = format!("{}/optimize?time_limit_ms=1500", agent.url);
    let send = || {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.post(&url).json(&large_problem()).send().await;
            let response = response.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body, started.elapsed())
        })
    };
    // One runs and one waits; wait until they are in before sending the overflow.
    let admitted = [send(), send()];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(&client, &agent.url).await;
        if text.contains("edgeroute_agent_solve_queue_depth 1")
            && text.contains("edgeroute_agent_solves_running 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let overflow = [send(), send(), send()];
    for request in overflow {
        let (status, retry_after, body, took) = request.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], 1, "{body}");
        assert_eq!(retry_after.unwrap(), "1");
        assert!(
            took < Duration::from_millis(1000),
            "refused at once: {took:?}"
        );
    }
    for request in admitted {
        let (status, _, body, _) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let text = metrics_text(&client, &agent.url).await;
    assert!(
        text.contains("edgeroute_agent_solves_rejected_total 3"),
        "{text}"
    );
    assert!(
        text.contains("edgeroute_agent_solve_queue_depth 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_are_counted_and_leave_the_in_flight_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--max-concurrent-solves",
            "1",
            "--max-runtime-lag-ms",
            "0",
            "--max-queue-delay-ms",
            "0",
        ],
    )
    .await;
    let client = client();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/optimize?time_limit_ms=2000", agent.url);
    let cancelled = (0..3).map(|_| impatient.post(&url).json(&large_problem()).send());
    for result in futures::future::join_all(cancelled).await {
        assert!(result.unwrap_err().is_timeout());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(&client, &agent.url).await;
        // The /metrics request itself is the only one in flight.
        let gauge_ok = text.contains("edgeroute_agent_http_requests_in_flight 1\n");
        let counted = text.lines().any(|line| {
            line.starts_with("edgeroute_agent_http_requests_total")
                && line.contains("endpoint=\"/optimize\"")
                && line.contains("\"499\"")
                && line.ends_with(" 3")
        });
        if gauge_ok && counted {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
