//! Connection bounds of `serve_with_limits`, over real sockets: half-sent requests and idle
//! connections are closed, beyond the cap new connections wait while existing ones are
//! still served, and connections report how long they waited for a worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use edgeroute_server::{ServerLimits, queue_delay::QueueDelay};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

async fn start(limits: ServerLimits) -> (SocketAddr, oneshot::Sender<()>) {
    start_app(
        Router::new().route("/healthz", get(|| async { "ok" })),
        limits,
    )
    .await
}

async fn start_app(app: Router, limits: ServerLimits) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(edgeroute_server::serve_with_limits(
        listener,
        app,
        async move {
            let _ = stopped.await;
        },
        Some(Duration::from_secs(1)),
        limits,
    ));
    (addr, stop)
}

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/// Reads one small response (head and a short body) within `within`; `None` on timeout.
async fn response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"ok") {
                break;
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, until_closed).await.is_ok()
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    let (addr, _stop) = start(ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    })
    .await;
    let mut partial = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        partial.push(s);
    }
    for s in &mut partial {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "a half-sent request was held past the header timeout"
        );
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let (addr, _stop) = start(ServerLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let answer = response(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "an idle keep-alive connection was held past the idle timeout"
    );
}

/// User and system CPU time of this process so far, in seconds (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command name, which may hold spaces: state is field 3, utime and stime 14
    // and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn a_request_longer_than_the_idle_timeout_is_answered_without_busy_waiting() {
    let app = Router::new().route(
        "/healthz",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "ok"
        }),
    );
    let (addr, _stop) = start_app(
        app,
        ServerLimits {
            idle_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        },
    )
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let before = cpu_seconds();
    let answer = response(&mut s, Duration::from_secs(5)).await.unwrap();
    let spent = cpu_seconds() - before;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The idle check must not wake again and again while the request is in flight: that
    // burnt a core for the request's whole time.
    assert!(spent < 0.5, "{spent:.2} s of CPU during a 1.5 s request");
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "the connection was held past the idle timeout after its request"
    );
}

#[tokio::test]
async fn beyond_the_cap_new_connections_wait_and_existing_ones_are_served() {
    let (addr, _stop) = start(ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(GET).await.unwrap();
    assert!(response(&mut first, Duration::from_secs(2)).await.is_some());
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(GET).await.unwrap();
    assert!(
        response(&mut second, Duration::from_secs(2))
            .await
            .is_some()
    );

    // The kernel completes the handshake (backlog), but the server does not take it.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    assert!(
        response(&mut third, Duration::from_millis(500))
            .await
            .is_none_or(|r| r.is_empty()),
        "a connection beyond the cap was served"
    );
    // Probes on an existing connection still get through.
    first.write_all(GET).await.unwrap();
    let answer = response(&mut first, Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A slot frees: the waiting connection is served.
    drop(second);
    let answer = response(&mut third, Duration::from_secs(3)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_connection_serves_at_most_its_request_budget() {
    let (addr, _stop) = start(ServerLimits {
        max_requests_per_connection: Some(2),
        ..ServerLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let first = response(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(!first.to_ascii_lowercase().contains("connection: close"));
    s.write_all(GET).await.unwrap();
    let last = response(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(
        last.to_ascii_lowercase().contains("connection: close"),
        "{last}"
    );
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn connections_woken_behind_busy_tasks_report_their_wait_for_the_worker() {
    let delay = Arc::new(QueueDelay::new());
    let (addr, _stop) = start(ServerLimits {
        queue_delay: Some(delay.clone()),
        ..ServerLimits::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // On an idle runtime a request is picked up at once.
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s, Duration::from_secs(2)).await.is_some());
        clients.push(s);
    }
    assert!(
        delay.recent() < Duration::from_millis(5),
        "{:?}",
        delay.recent()
    );
    // The requests are on the wire, then 100 ms of other work is queued on the only worker:
    // the connections, woken together when the driver next looks (after a few dozen of
    // these tasks at most), wait behind the rest and behind one another.
    for s in &mut clients {
        s.write_all(GET).await.unwrap();
    }
    for _ in 0..100 {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(1)) });
    }
    for s in &mut clients {
        assert!(response(s, Duration::from_secs(5)).await.is_some());
    }
    assert!(
        delay.recent() >= Duration::from_millis(10),
        "{:?}",
        delay.recent()
    );
}
