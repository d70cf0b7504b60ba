//! Graphs travel from the center to the edge, and agents prove who they are: a graph
//! directive issued during a partition is followed once the link heals, through a download
//! cut halfway that resumes and verifies, while clients keep being served; and mutual TLS
//! with certificates made at test time admits exactly the agents the CA signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use edgeroute_tests::{
    fault_proxy::Mode,
    fleet::{ADMIN, Fleet, Workload, artifact, client, get_json, start_agent, start_center},
    procs::eventually,
};
use serde_json::{Value, json};

async fn status(client: &reqwest::Client, url: &str) -> Option<Value> {
    get_json(client, &format!("{url}/v1/status"), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directive_during_a_partition_is_followed_through_a_cut_download() {
    let fleet = Fleet::start(&["edge-1"], &[]).await;
    let bytes = std::fs::read(artifact("monaco-b")).unwrap();
    let r = fleet
        .admin(reqwest::Method::PUT, "/api/v1/graphs/monaco-b")
        .await
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The region's graph changes while the agent cannot hear about it.
    fleet.proxy.set_mode(Mode::Cut);
    let r = fleet
        .admin(reqwest::Method::PUT, "/api/v1/regions/monaco/graph")
        .await
        .json(&json!({"version": "monaco-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let agent = fleet.agents[0].url.clone();
    let work = Workload::start(&fleet.client, &agent);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = status(&fleet.client, &agent).await.unwrap();
    assert_eq!(
        s["graph"]["version"], "monaco-a",
        "nothing changes during the partition"
    );

    // The link comes back, but every connection dies after half an artifact.
    let before = fleet.proxy.stats().bytes_to_client;
    fleet.proxy.set_mode(Mode::CutAfter(bytes.len() as u64 / 2));
    let client = fleet.client.clone();
    eventually(Duration::from_secs(60), "the agent serves monaco-b", || {
        let (client, agent) = (client.clone(), agent.clone());
        async move {
            let s = status(&client, &agent).await?;
            (s["graph"]["version"] == "monaco-b").then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.agents[0].log_text()));
    // Every attempt after a cut resumed where the kept bytes ended: the offsets the agent
    // asked for only grow, and only the first starts from zero.
    let log = fleet.agents[0].log_text();
    let offsets: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("downloading graph"))
        .filter_map(|l| {
            l.split("from_byte=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        offsets.len() >= 2,
        "the first download was cut: {offsets:?}\n{log}"
    );
    assert_eq!(offsets[0], 0);
    assert!(
        offsets.windows(2).all(|w| w[1] > w[0]),
        "each attempt resumed: {offsets:?}"
    );
    assert!(fleet.proxy.stats().bytes_to_client > before);
    fleet.proxy.set_mode(Mode::Pass);
    let answered = work.finish().await;
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
    // The center sees the new version, reported by the agent itself.
    let (client, center) = (fleet.client.clone(), fleet.center.url.clone());
    eventually(Duration::from_secs(10), "the center sees monaco-b", || {
        let (client, center) = (client.clone(), center.clone());
        async move {
            let nodes = get_json(&client, &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
            (nodes["nodes"][0]["graph_version"] == "monaco-b").then_some(())
        }
    })
    .await
    .unwrap();
}

/// A CA and certificates signed by it, as PEM files in `dir`.
struct Pki {
    ca: std::path::PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            ca,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf certificate and its key; `client` adds the clientAuth usage.
    fn leaf(&self, dir: &Path, name: &str, client: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.to_str().unwrap().to_owned(),
            key_path.to_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_agents_the_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d, "fleet");
    let rogue = Pki::new(d, "rogue");
    let (server_cert, server_key) = pki.leaf(d, "center", false);
    let center = start_center(
        d,
        &[
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--client-ca",
            pki.ca.to_str().unwrap(),
        ],
    )
    .await;
    assert!(center.url.starts_with("https://"), "{}", center.url);
    let sync_agent = |name: &'static str, cert: (String, String)| {
        let center = center.url.clone();
        let ca = pki.ca.to_str().unwrap().to_owned();
        async move {
            let args = [
                "--control-plane",
                &center,
                "--sync-ca",
                &ca,
                "--sync-client-cert",
                &cert.0,
                "--sync-client-key",
                &cert.1,
                "--sync-interval-ms",
                "200",
            ];
            start_agent(d, name, &args, false).await
        }
    };
    let _good = sync_agent("edge-good", pki.leaf(d, "edge-good", true)).await;
    let bad = sync_agent("edge-rogue", rogue.leaf(d, "edge-rogue", true)).await;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let url = center.url.clone();
    let nodes = eventually(Duration::from_secs(30), "edge-good reports", || {
        let (https, url) = (https.clone(), url.clone());
        async move {
            let nodes = get_json(&https, &format!("{url}/api/v1/nodes"), Some(ADMIN)).await?;
            let list = nodes["nodes"].as_array()?;
            list.iter()
                .any(|n| n["node"] == "edge-good")
                .then_some(nodes)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", center.log_text()));
    // Give the rogue agent several report intervals: it never gets in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let nodes = get_json(&https, &format!("{url}/api/v1/nodes"), Some(ADMIN))
        .await
        .unwrap_or(nodes);
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(names, ["edge-good"], "only the CA's agents report");
    let rogue_status = status(&client(), &bad.url).await.unwrap();
    assert!(
        rogue_status["sync"]["unreachable_since"].is_string(),
        "{rogue_status}"
    );
    // Without a certificate the TLS handshake succeeds but the sync API says who is missing.
    let r = https
        .post(format!("{url}/sync/v1/report"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
