use super::*;
use std::future::Future;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for any step that should succeed; a bug fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(f: F) -> F::Output {
    timeout(LIMIT, f).await.expect("step timed out")
}

/// An upstream that writes `greeting` on every connection, then echoes until EOF.
async fn echo_server(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if conn.write_all(greeting).await.is_err() {
                    return;
                }
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn cut_after_delivers_a_prefix_then_resets() {
    let upstream = echo_server(b"0123456789").await;
    let proxy = FaultProxy::start(upstream).await.unwrap();
    proxy.set_mode(Mode::CutAfter(4));
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match within(conn.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(got, b"0123", "exactly the allowed prefix arrives");
    within(async {
        while proxy.stats().reset == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    proxy.set_mode(Mode::Pass);
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    let mut greeting = [0u8; 10];
    within(conn.read_exact(&mut greeting)).await.unwrap();
    assert_eq!(&greeting, b"0123456789");
}

/// A keep-alive HTTP-like upstream: it reports every request head it receives, then
/// answers it with [`RESPONSE`].
async fn http_server() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
                        if conn.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, requests)
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: cp\r\n\r\n").into_bytes()
}

/// Read until EOF or an error; returns the bytes read and how it ended.
async fn read_until_closed(conn: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match conn.read(&mut chunk).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

async fn read_n(conn: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    within(conn.read_exact(&mut buf)).await.unwrap();
    buf
}

/// Poll the stats until `pred` holds (the proxy updates them from its own tasks).
async fn stats_until(proxy: &FaultProxy, pred: impl Fn(&Stats) -> bool) -> Stats {
    within(async {
        loop {
            let stats = proxy.stats();
            if pred(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[tokio::test]
async fn pass_forwards_both_ways_and_counts() {
    let proxy = FaultProxy::start(echo_server(b"hi\n").await).await.unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    assert_eq!(read_n(&mut conn, 3).await, b"hi\n");
    conn.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut conn, 4).await, b"ping");
    // Half-close travels through: the echo server sees EOF and closes, so do we.
    conn.shutdown().await.unwrap();
    let (rest, end) = within(read_until_closed(&mut conn)).await;
    assert!(rest.is_empty() && end.is_ok(), "{rest:?} {end:?}");
    drop(conn);
    let stats = stats_until(&proxy, |s| s.open == 0).await;
    assert_eq!(
        stats,
        Stats {
            accepted: 1,
            bytes_to_upstream: 4,
            bytes_to_client: 7,
            ..Stats::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn cut_closes_open_and_new_connections_and_pass_restores() {
    let proxy = FaultProxy::start(echo_server(b"").await).await.unwrap();
    let mut open = within(TcpStream::connect(proxy.addr())).await.unwrap();
    open.write_all(b"a").await.unwrap();
    assert_eq!(read_n(&mut open, 1).await, b"a");

    proxy.set_mode(Mode::Cut);
    let (got, _) = within(read_until_closed(&mut open)).await;
    assert!(got.is_empty());

    // The kernel completes the handshake; the proxy closes right after the accept.
    let mut fresh = within(TcpStream::connect(proxy.addr())).await.unwrap();
    let _ = fresh.write_all(b"b").await;
    let (got, _) = within(read_until_closed(&mut fresh)).await;
    assert!(got.is_empty());
    let stats = stats_until(&proxy, |s| s.cut == 2).await;
    assert_eq!(stats.bytes_to_upstream, 1);

    proxy.set_mode(Mode::Pass);
    let mut healed = within(TcpStream::connect(proxy.addr())).await.unwrap();
    healed.write_all(b"c").await.unwrap();
    assert_eq!(read_n(&mut healed, 1).await, b"c");
    proxy.shutdown().await;
}

#[tokio::test]
async fn stall_holds_bytes_both_ways_until_pass() {
    let proxy = FaultProxy::start(echo_server(b"hi\n").await).await.unwrap();
    // A new connection in a stall: neither the greeting nor the echo arrives.
    proxy.set_mode(Mode::Stall);
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    conn.write_all(b"ping").await.unwrap();
    let mut byte = [0u8; 1];
    let early = timeout(Duration::from_millis(300), conn.read(&mut byte)).await;
    assert!(early.is_err(), "got {early:?} during the stall");
    proxy.set_mode(Mode::Pass);
    assert_eq!(read_n(&mut conn, 3).await, b"hi\n");
    // The ping was buffered, not lost.
    assert_eq!(read_n(&mut conn, 4).await, b"ping");

    // An open connection stalls too.
    proxy.set_mode(Mode::Stall);
    conn.write_all(b"more").await.unwrap();
    let early = timeout(Duration::from_millis(300), conn.read(&mut byte)).await;
    assert!(early.is_err(), "got {early:?} during the stall");
    assert_eq!(proxy.stats().bytes_to_upstream, 4);
    proxy.set_mode(Mode::Pass);
    assert_eq!(read_n(&mut conn, 4).await, b"more");
    proxy.shutdown().await;
}

#[tokio::test]
async fn stall_buffers_boundedly() {
    let proxy = FaultProxy::start(echo_server(b"").await).await.unwrap();
    proxy.set_mode(Mode::Stall);
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    // Far more than MAX_BUFFERED plus any loopback socket buffers: if the proxy kept
    // reading, this write would complete.
    let big = vec![7u8; 64 << 20];
    let write = timeout(Duration::from_millis(1500), conn.write_all(&big)).await;
    assert!(write.is_err(), "a stalled proxy swallowed 64 MiB");
    assert_eq!(proxy.stats().bytes_to_upstream, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_aborts_open_and_new_connections() {
    let proxy = FaultProxy::start(echo_server(b"").await).await.unwrap();
    let mut open = within(TcpStream::connect(proxy.addr())).await.unwrap();
    open.write_all(b"a").await.unwrap();
    assert_eq!(read_n(&mut open, 1).await, b"a");

    proxy.set_mode(Mode::Reset);
    let (got, end) = within(read_until_closed(&mut open)).await;
    assert!(got.is_empty());
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset)
    );

    let mut fresh = within(TcpStream::connect(proxy.addr())).await.unwrap();
    let (got, end) = within(read_until_closed(&mut fresh)).await;
    assert!(got.is_empty());
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset)
    );
    stats_until(&proxy, |s| s.reset == 2).await;

    proxy.set_mode(Mode::Pass);
    let mut healed = within(TcpStream::connect(proxy.addr())).await.unwrap();
    healed.write_all(b"c").await.unwrap();
    assert_eq!(read_n(&mut healed, 1).await, b"c");
    proxy.shutdown().await;
}

#[tokio::test]
async fn drop_responses_delivers_requests_and_loses_answers() {
    let (upstream, mut requests) = http_server().await;
    let proxy = FaultProxy::start(upstream).await.unwrap();

    // A keep-alive connection that worked before the fault...
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    conn.write_all(&request("/one")).await.unwrap();
    assert_eq!(read_n(&mut conn, RESPONSE.len()).await, RESPONSE);
    assert!(
        within(requests.recv())
            .await
            .unwrap()
            .starts_with("GET /one ")
    );

    // ...reaches the server but gets no byte of the answer, and is closed.
    proxy.set_mode(Mode::DropResponses);
    conn.write_all(&request("/two")).await.unwrap();
    let (got, _) = within(read_until_closed(&mut conn)).await;
    assert!(got.is_empty(), "leaked {:?}", String::from_utf8_lossy(&got));
    assert!(
        within(requests.recv())
            .await
            .unwrap()
            .starts_with("GET /two ")
    );

    // Same for a new connection.
    let mut fresh = within(TcpStream::connect(proxy.addr())).await.unwrap();
    fresh.write_all(&request("/three")).await.unwrap();
    let (got, _) = within(read_until_closed(&mut fresh)).await;
    assert!(got.is_empty(), "leaked {:?}", String::from_utf8_lossy(&got));
    assert!(
        within(requests.recv())
            .await
            .unwrap()
            .starts_with("GET /three ")
    );
    let stats = stats_until(&proxy, |s| s.dropped_responses == 2 && s.open == 0).await;
    assert_eq!(stats.bytes_to_client, RESPONSE.len() as u64);

    proxy.set_mode(Mode::Pass);
    let mut healed = within(TcpStream::connect(proxy.addr())).await.unwrap();
    healed.write_all(&request("/four")).await.unwrap();
    assert_eq!(read_n(&mut healed, RESPONSE.len()).await, RESPONSE);
    proxy.shutdown().await;
}

#[tokio::test]
async fn drop_responses_discards_an_answer_buffered_during_a_stall() {
    let proxy = FaultProxy::start(echo_server(b"hi\n").await).await.unwrap();
    proxy.set_mode(Mode::Stall);
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    // Let the proxy read the greeting into its stall buffer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set_mode(Mode::DropResponses);
    let (got, _) = within(read_until_closed(&mut conn)).await;
    assert!(got.is_empty(), "leaked {got:?}");
    let stats = stats_until(&proxy, |s| s.dropped_responses == 1).await;
    assert_eq!(stats.bytes_to_client, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn set_upstream_switches_new_connections_only() {
    let proxy = FaultProxy::start(echo_server(b"A").await).await.unwrap();
    let mut old = within(TcpStream::connect(proxy.addr())).await.unwrap();
    assert_eq!(read_n(&mut old, 1).await, b"A");

    proxy.set_upstream(echo_server(b"B").await);
    let mut new = within(TcpStream::connect(proxy.addr())).await.unwrap();
    assert_eq!(read_n(&mut new, 1).await, b"B");
    old.write_all(b"x").await.unwrap();
    assert_eq!(read_n(&mut old, 1).await, b"x");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    // Bind and drop to get a port nobody listens on.
    let dead = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(dead).await.unwrap();
    let mut conn = within(TcpStream::connect(proxy.addr())).await.unwrap();
    let (got, _) = within(read_until_closed(&mut conn)).await;
    assert!(got.is_empty());
    stats_until(&proxy, |s| s.upstream_connect_failures == 1).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_port() {
    let proxy = FaultProxy::start(echo_server(b"").await).await.unwrap();
    let addr = proxy.addr();
    // A stalled connection with buffered data must not keep shutdown waiting.
    proxy.set_mode(Mode::Stall);
    let mut open = within(TcpStream::connect(addr)).await.unwrap();
    open.write_all(b"a").await.unwrap();
    stats_until(&proxy, |s| s.open == 1).await;
    let watcher = proxy.clone();
    within(proxy.shutdown()).await;
    let (got, _) = within(read_until_closed(&mut open)).await;
    assert!(got.is_empty());
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    assert_eq!(watcher.stats().open, 0);
}
