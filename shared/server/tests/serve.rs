//! `serve` and `serve_tls` on port-0 listeners, stopped by a oneshot channel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, routing::get};
use tokio::{net::TcpListener, sync::oneshot};

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
        .route(
            "/stall",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "never"
            }),
        )
}

#[tokio::test]
async fn a_stalled_client_keeps_the_server_no_longer_than_the_grace() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(edgeroute_server::serve_with_grace(
        listener,
        app(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_millis(300),
    ));
    // A request that takes far longer than the grace.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"GET /stall HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server outlived its grace")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the grace was given"
    );
}

/// reqwest is built without a rustls provider: install ring, as the binaries do.
fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn plain_http_drains_in_flight_requests_on_shutdown() {
    install_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(edgeroute_server::serve(listener, app(), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "ok"
    );

    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{url}/slow");
        async move { client.get(url).send().await?.text().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), "done");
    server.await.unwrap().unwrap();
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_negotiates_h2_and_http1() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    // A throwaway CA and a server certificate signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = edgeroute_server::tls::server_config(&cert_path, &key_path).unwrap();
    assert!(edgeroute_server::tls::server_config(&key_path, &key_path).is_err());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(edgeroute_server::serve_tls(
        listener,
        app(),
        Arc::new(config),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    install_provider();
    let root = reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let h2 = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .build()
        .unwrap();
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiates h2");
    let h1 = reqwest::Client::builder()
        .tls_certs_only([root])
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "ok");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
