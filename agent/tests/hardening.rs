//! Hardening (issue 16), in process and without a graph: keys are exactly the configured
//! ones across restarts, metric labels come from fixed sets, `/optimize` takes JSON only,
//! and the `Bearer` scheme is case-insensitive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{client, metrics_text, start_in_process};
use reqwest::{Method, header::HeaderValue};
use serde_json::Value;

#[tokio::test]
async fn a_key_removed_from_the_configuration_is_refused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let client = client();
    let status = |agent: &common::InProcess, key: &str| {
        client
            .get(format!("{}/v1/status", agent.url))
            .bearer_auth(key)
            .send()
    };

    let agent = start_in_process(&db, &["--api-key", "k1"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 200);
    agent.stop().await.unwrap();

    let agent = start_in_process(&db, &["--api-key", "k2"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 401);
    assert_eq!(status(&agent, "k2").await.unwrap().status(), 200);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn client_chosen_methods_do_not_become_metric_labels() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--api-key", "k1"]).await;
    let client = client();
    for i in 0..50 {
        let method = Method::from_bytes(format!("RANDOMXX{i:02}").as_bytes()).unwrap();
        for path in ["/v1/status", "/no/such/path"] {
            client
                .request(method.clone(), format!("{}{path}", agent.url))
                .bearer_auth("k1")
                .send()
                .await
                .unwrap();
        }
    }
    let text = metrics_text(&client, &agent.url).await;
    let methods: BTreeSet<&str> = text
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let fixed = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
    ];
    assert!(methods.contains("other"), "{methods:?}");
    assert!(
        methods.iter().all(|m| fixed.contains(m)),
        "method labels outside the fixed set: {methods:?}"
    );
}

#[tokio::test]
async fn optimize_takes_json_only() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let client = client();
    let url = format!("{}/optimize", agent.url);
    // A body that is not a valid problem: a JSON content type gets past the check (400),
    // anything else is refused before the body is read (415), in VROOM's shape.
    let post = |content_type: Option<&'static str>| {
        let request = client.post(&url).body("{}");
        match content_type {
            Some(ct) => request.header("content-type", ct),
            None => request,
        }
        .send()
    };
    for refused in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let response = post(refused).await.unwrap();
        assert_eq!(response.status(), 415, "{refused:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 2, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("application/json"),
            "{body}"
        );
    }
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.vroom+json",
    ] {
        let response = post(Some(accepted)).await.unwrap();
        assert_eq!(response.status(), 400, "{accepted}");
    }
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_bad_bytes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--api-key", "k1"]).await;
    let client = client();
    let url = format!("{}/v1/status", agent.url);
    let with = |value: HeaderValue| client.get(&url).header("authorization", value).send();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = with(HeaderValue::from_str(&format!("{scheme} k1")).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = with(HeaderValue::from_bytes(b"Bearer k\xff1").unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("Missing"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    // Another scheme is still a missing key.
    let r = with(HeaderValue::from_static("Basic azE6")).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// Sends `request` on a raw socket and returns the status and the parsed JSON body.
async fn raw(url: &str, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

#[tokio::test]
async fn errors_raised_below_the_router_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let coordinates = vec!["7.4197,43.7314"; 10_000].join(";");
    let long = format!("GET /route/v1/driving/{coordinates} HTTP/1.1\r\nhost: x\r\n\r\n");
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(600 * 1024)
    );
    let cases: [(&[u8], u16, &str); 4] = [
        (long.as_bytes(), 414, "InvalidUrl"),
        (big_header.as_bytes(), 431, "TooBig"),
        (
            b"GET /route/v1/\x01bad HTTP/1.1\r\nhost: x\r\n\r\n",
            400,
            "InvalidUrl",
        ),
        (
            b"POST /optimize HTTP/1.1\r\nhost: x\r\ncontent-length: 12x\r\n\r\n",
            400,
            "InvalidUrl",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = raw(&agent.url, request).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}
