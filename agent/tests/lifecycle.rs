//! The agent's lifecycle. In process: authentication and rate limits, graph swap under
//! load (keys across a restart: `hardening.rs`). End to end, with the real binary: refusing
//! to start without keys, restart from sled without re-importing (SIGTERM drains), HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    A, B, Served, artifact_a, artifact_b, client, get_json, metrics_text, monaco_pbf, serve_monaco,
    start, start_in_process,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_and_rate_limited() {
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&[
        "--api-key",
        "k1",
        "--rate-limit",
        "0.5",
        "--rate-burst",
        "3",
    ])
    .await;
    let route = format!("{}/route/v1/driving/{A};{B}", agent.url);

    let missing = client.get(&route).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        missing.json::<Value>().await.unwrap()["code"],
        "Unauthorized"
    );
    let wrong = client.get(&route).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // Health, readiness and metrics stay open.
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = client
            .get(format!("{}{open}", agent.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
    // A burst of 3, then 429 with Retry-After.
    for _ in 0..3 {
        let r = client.get(&route).bearer_auth("k1").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let limited = client.get(&route).bearer_auth("k1").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["code"],
        "TooManyRequests"
    );
}

#[test]
fn refuses_to_start_without_keys_or_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edgeroute-agent"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--api-key") && stderr.contains("--no-auth"),
        "{stderr}"
    );
}

#[tokio::test]
async fn restart_serves_from_sled_without_reimporting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let client = client();
    let first = start(&db, &["--map", monaco_pbf().to_str().unwrap(), "--no-auth"]);
    first.ready(&client).await;
    let url = format!("{}/route/v1/driving/{A};{B}", first.url);
    let (status, before) = get_json(&client, &url).await;
    assert_eq!(status, 200);
    assert!(first.log().contains("importing"));
    // SIGTERM drains and exits cleanly.
    assert!(first.terminate().success());

    let second = start(&db, &["--no-auth"]);
    second.ready(&client).await;
    let (status, after) =
        get_json(&client, &format!("{}/route/v1/driving/{A};{B}", second.url)).await;
    assert_eq!(status, 200);
    assert_eq!(before["routes"], after["routes"]);
    assert!(!second.log().contains("importing"), "{}", second.log());
    let (_, status_body) = get_json(&client, &format!("{}/v1/status", second.url)).await;
    assert_eq!(status_body["boot_count"], 2);
    drop(second);

    // --map again with the same file: the stored graph is served, nothing is imported.
    let third = start(&db, &["--map", monaco_pbf().to_str().unwrap(), "--no-auth"]);
    third.ready(&client).await;
    assert!(
        third.log().contains("serving the stored active graph"),
        "{}",
        third.log()
    );
    assert!(!third.log().contains("importing"), "{}", third.log());
    drop(third);

    // --force-graph: the same file is recognised, not re-imported, and activated.
    let fourth = start(
        &db,
        &[
            "--map",
            monaco_pbf().to_str().unwrap(),
            "--no-auth",
            "--force-graph",
        ],
    );
    fourth.ready(&client).await;
    assert!(
        fourth.log().contains("already imported"),
        "{}",
        fourth.log()
    );
}

/// The version served, from `/v1/status`.
async fn served_version(client: &reqwest::Client, base: &str) -> String {
    let (_, s) = get_json(client, &format!("{base}/v1/status")).await;
    s["graph"]["version"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_graph_uploaded_since_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let client = client();
    let seed = [
        "--graph",
        artifact_a().to_str().unwrap(),
        "--admin-key",
        "root",
        "--no-auth",
    ];
    let agent = start_in_process(&db, &seed).await;
    agent.ready(&client).await;
    let r = client
        .put(format!("{}/admin/graph", agent.url))
        .bearer_auth("root")
        .body(artifact_b().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    agent.stop().await.unwrap();

    // The same --graph again: the upload stays active.
    let agent = start_in_process(&db, &seed).await;
    agent.ready(&client).await;
    assert_eq!(served_version(&client, &agent.url).await, "monaco-b");
    agent.stop().await.unwrap();

    // Unless the operator forces the seed.
    let mut forced = seed.to_vec();
    forced.push("--force-graph");
    let agent = start_in_process(&db, &forced).await;
    agent.ready(&client).await;
    assert_eq!(served_version(&client, &agent.url).await, "monaco-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_active_and_previous_graphs_are_kept() {
    // Three more versions of Monaco, built while the agent starts.
    let extra = tokio::task::spawn_blocking(|| {
        ["monaco-c", "monaco-d", "monaco-e"].map(|version| {
            let options = edgeroute_engine::BuildOptions {
                version: version.to_owned(),
                ..edgeroute_engine::BuildOptions::default()
            };
            edgeroute_engine::Graph::from_osm_file(
                &monaco_pbf(),
                &edgeroute_engine::CarProfile::default(),
                &options,
            )
            .unwrap()
            .to_artifact()
        })
    });
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&["--no-auth", "--admin-key", "root"]).await;
    let base = agent.url.clone();
    let mut uploads = vec![artifact_b().to_vec()];
    uploads.extend(extra.await.unwrap());
    for bytes in uploads {
        let r = client
            .put(format!("{base}/admin/graph"))
            .bearer_auth("root")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let stored = || async {
        let r = client
            .get(format!("{base}/admin/graph"))
            .bearer_auth("root")
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };
    let versions = stored().await;
    assert_eq!(
        versions["versions"],
        serde_json::json!(["monaco-d", "monaco-e"]),
        "{versions}"
    );
    assert_eq!(versions["active"], "monaco-e");
    assert_eq!(versions["previous"], "monaco-d");

    // Rollback still has its target, and what it leaves is the same pair.
    let r = client
        .post(format!("{base}/admin/graph/rollback"))
        .bearer_auth("root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(served_version(&client, &base).await, "monaco-d");
    let versions = stored().await;
    assert_eq!(
        versions["versions"],
        serde_json::json!(["monaco-d", "monaco-e"]),
        "{versions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_swap_under_load_fails_no_request() {
    let Served {
        agent,
        client,
        dir: _dir,
    } = serve_monaco(&[
        "--no-auth",
        "--admin-key",
        "admin",
        // The load below outruns the default per-key limit, and with --no-auth every request
        // shares one bucket: a 429 would be a failure here, and limits are tested elsewhere.
        "--rate-limit",
        "0",
    ])
    .await;
    let base = agent.url.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, stop, ok, base) = (client.clone(), stop.clone(), ok.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .get(format!("{base}/route/v1/driving/{A};{B}?overview=false"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth("admin");
    let version = |client: reqwest::Client, base: String| async move {
        let (_, s) = get_json(&client, &format!("{base}/v1/status")).await;
        s["graph"]["version"].as_str().unwrap().to_owned()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Upload B: swapped in.
    let r = admin(client.put(format!("{base}/admin/graph")))
        .body(artifact_b().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let change: Value = r.json().await.unwrap();
    assert_eq!(change["version"], "monaco-b");
    assert_eq!(change["previous"], "monaco-a");
    assert_eq!(version(client.clone(), base.clone()).await, "monaco-b");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Roll back to A, then forward to B again (already stored: accepted).
    let r = admin(client.post(format!("{base}/admin/graph/rollback")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(version(client.clone(), base.clone()).await, "monaco-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = admin(client.put(format!("{base}/admin/graph")))
        .body(artifact_b().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Bad uploads are rejected and change nothing.
    let mut corrupt = artifact_b().to_vec();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    for (body, auth, status) in [
        (corrupt, true, 400),
        (b"not a graph".to_vec(), true, 400),
        (artifact_b().to_vec(), false, 401),
    ] {
        // A fresh client per rejected upload: the server may close a connection whose body
        // it refused to read, and a pooled connection would race with that close.
        let mut req = common::client()
            .put(format!("{base}/admin/graph"))
            .body(body);
        if auth {
            req = req.bearer_auth("admin");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert!(body["code"].is_string());
    }
    assert_eq!(version(client.clone(), base.clone()).await, "monaco-b");
    let r = admin(client.get(format!("{base}/admin/graph")))
        .send()
        .await
        .unwrap();
    let versions: Value = r.json().await.unwrap();
    assert_eq!(versions["active"], "monaco-b");
    assert_eq!(versions["previous"], "monaco-a");

    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    let metrics = metrics_text(&client, &base).await;
    assert!(
        metrics.contains("edgeroute_agent_graph_swaps_total 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn https_with_http1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    // A throwaway CA and a server certificate signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, server_cert.pem()).unwrap();
    std::fs::write(&key_path, server_key.serialize_pem()).unwrap();

    let agent = start(
        &dir.path().join("db"),
        &[
            "--graph",
            artifact_a().to_str().unwrap(),
            "--no-auth",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(agent.url.starts_with("https://"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap();
    let h2 = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .build()
        .unwrap();
    agent.ready(&h2).await;
    let r = h2
        .get(format!("{}/route/v1/driving/{A};{B}", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiates h2");
    let h1 = reqwest::Client::builder()
        .tls_certs_only([root])
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("{}/healthz", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // Plain HTTP to the TLS port does not get an answer.
    let plain = client();
    let http_url = agent.url.replace("https://", "http://");
    assert!(
        plain
            .get(format!("{http_url}/healthz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
}
