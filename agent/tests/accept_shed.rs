//! Overload at accept time (issue 16): beyond `--shed-connections-above` open connections a
//! new connection gets an immediate 503 with `Retry-After` instead of waiting, and the probe
//! listener (`--probe-listen`) keeps answering through the flood.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use edgeroute_agent::{config::Config, server::Agent};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What a connection received until closed or for `wait` (empty: nothing).
async fn received(stream: &mut TcpStream, wait: Duration) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// An open agent in `dir` that refuses connections beyond `above` at accept. These tests
/// are about the connection count; runtime lag is measured elsewhere, so its gate is off.
async fn shedding_agent(dir: &std::path::Path, above: u32) -> Agent {
    let db = dir.join("db");
    let above = above.to_string();
    let config = Config::try_parse_from([
        "edgeroute-agent",
        "--data-dir",
        db.to_str().unwrap(),
        "--no-auth",
        "--shed-connections-above",
        &above,
        "--max-runtime-lag-ms",
        "0",
    ])
    .unwrap();
    Agent::open(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_at_accept_and_the_probes_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let agent = shedding_agent(dir.path(), 8).await;
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probes = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_url, probe_url) = (
        format!("http://{}", main.local_addr().unwrap()),
        format!("http://{}", probes.local_addr().unwrap()),
    );
    let main_addr = main.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(agent.serve_with_probes(main, Some(probes), async move {
        let _ = stopped.await;
    }));

    // The flood: 40 connections that start a request and never finish its head (each
    // would be held until the header-read timeout).
    let mut flood = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(main_addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        flood.push(stream);
    }
    let mut refused = 0;
    let mut held = 0;
    for stream in &mut flood {
        let got = received(stream, Duration::from_millis(300)).await;
        if got.is_empty() {
            held += 1;
        } else {
            assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
            let head = got.to_ascii_lowercase();
            assert!(head.contains("retry-after: 1\r\n"), "{got}");
            assert!(head.contains("connection: close\r\n"), "{got}");
            assert!(got.contains(r#""code":"Overloaded""#), "{got}");
            refused += 1;
        }
    }
    assert_eq!((held, refused), (8, 32), "eight served, the rest refused");

    // A client on a new connection is refused at once, with the API's JSON error.
    edgeroute_server::tls::install_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("{main_url}/route/v1/driving/7.42,43.73;7.43,43.74"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "Overloaded", "{body}");

    // The probes answer on their own listener, and the metrics count the refusals.
    let health = client
        .get(format!("{probe_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("{probe_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("edgeroute_agent_http_shed_total")
                && l.contains(r#"reason="connection_limit""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no connection_limit count in:\n{metrics}"));
    assert!(shed >= 33.0, "{shed}");
    // The probe listener serves probes only: the API is not reachable there.
    let api = client
        .get(format!(
            "{probe_url}/route/v1/driving/7.42,43.73;7.43,43.74"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);

    // Once the flood is gone, new connections are served again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client
            .get(format!("{main_url}/healthz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_connection_that_sent_its_request_gets_the_whole_answer() {
    // The 503 is written before the request is read; the connection must still close
    // cleanly (not reset) so that the client reads it.
    let dir = tempfile::tempdir().unwrap();
    let agent = shedding_agent(dir.path(), 1).await;
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(agent.serve(main, async move {
        let _ = stopped.await;
    }));
    let _holder = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let big_header = "x".repeat(16 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: a\r\nx-pad: {big_header}\r\n\r\n");
    // The server may have closed its side already: a failed write is fine, a lost answer is not.
    let _ = refused.write_all(request.as_bytes()).await;
    let got = received(&mut refused, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 503 "), "{got:?}");
    assert!(got.ends_with('}'), "the whole body arrived: {got:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
