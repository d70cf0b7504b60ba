//! The accept loop every server runs, HTTP and HTTPS alike, with bounded connections.
//!
//! `axum::serve` holds an idle or half-sent connection for as long as the client likes,
//! accepts without a cap and, at the file-descriptor limit, spins on `EMFILE`. Here:
//! - at most [`ServerLimits::max_connections`] connections are open; beyond it the loop stops
//!   accepting, so new clients wait in the kernel's backlog instead of costing descriptors;
//! - a request head must arrive within [`ServerLimits::header_read_timeout`] (for HTTP/1
//!   this also bounds the wait for the next request on a keep-alive connection; for TLS it
//!   bounds the handshake);
//! - a connection with no request in flight for [`ServerLimits::idle_timeout`] is closed;
//! - an HTTP/1 connection serves at most [`ServerLimits::max_requests_per_connection`];
//! - accept errors never end the loop: running out of descriptors is logged once per
//!   episode and retried after [`ServerLimits::accept_backoff`];
//! - under overload a new connection is answered at once with 503, `Retry-After` and
//!   `Connection: close` ([`ServerLimits::shedder`]) instead of being served late: a client
//!   waiting in the listen backlog or behind a flood of open connections is invisible to
//!   any in-process queue, so the only place to refuse it early is the accept.

use std::{
    future::Future,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, Version, header},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt;

use crate::Result;

/// Bounds on the connections a server keeps. [`Default`] suits a public-facing edge node.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections open at once; further clients wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (and, over TLS, to finish the
    /// handshake). HTTP/1 also applies it to the wait for the next request on a kept-alive
    /// connection.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 included).
    pub idle_timeout: Duration,
    /// Requests one HTTP/1 connection may carry; the last is answered with
    /// `Connection: close`. `None`: unlimited.
    pub max_requests_per_connection: Option<u64>,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// Interval of HTTP/2 pings on a connection; a peer that does not answer one within the
    /// same interval is dropped.
    pub http2_keep_alive_interval: Duration,
    /// Pause of the accept loop after an error such as `EMFILE` (no descriptor left).
    pub accept_backoff: Duration,
    /// Body of the 400/414/431 responses hyper sends for requests it cannot parse (which
    /// never reach the application); `None` leaves them empty.
    pub protocol_error_body: Option<crate::protocol_errors::ProtocolErrorBody>,
    /// Decides, for each new connection, whether to refuse it at once with 503; `None`:
    /// never.
    pub shedder: Option<Arc<dyn ConnectionShedder>>,
    /// Refused connections being answered at once at most (each holds a descriptor for up
    /// to [`SHED_LINGER`]); beyond, a new connection to refuse is closed without an answer.
    pub max_shedding: usize,
    /// Where connections report how long they waited for a runtime worker each time they
    /// were woken (the queue an overloaded server builds); `None`: not measured.
    pub queue_delay: Option<Arc<crate::queue_delay::QueueDelay>>,
}

/// Refuses new connections under overload, before they cost a request.
pub trait ConnectionShedder: Send + Sync + std::fmt::Debug {
    /// Whether to refuse a new connection while `open` others are being served: the reason
    /// (a metric label; the implementation counts the refusal), or `None` to serve it.
    fn refuse(&self, open: usize) -> Option<&'static str>;
    /// The JSON body of the 503 a refused connection gets.
    fn body(&self) -> String;
}

/// How long a refused connection is kept open after its 503, reading what the client still
/// sends: closing a socket with unread data resets it, and the client could lose the 503.
pub const SHED_LINGER: Duration = Duration::from_secs(1);

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_requests_per_connection: Some(10_000),
            http2_max_concurrent_streams: 128,
            http2_keep_alive_interval: Duration::from_secs(30),
            accept_backoff: Duration::from_millis(100),
            protocol_error_body: None,
            shedder: None,
            max_shedding: 512,
            queue_delay: None,
        }
    }
}

impl ServerLimits {
    /// These limits with `max_connections` lowered, when needed, so that open connections
    /// leave `reserve` descriptors (files, the database, outgoing connections) under the
    /// soft limit `fd_limit`.
    pub fn within_fd_limit(mut self, fd_limit: u64, reserve: u64) -> Self {
        let room = usize::try_from(fd_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(room).max(1);
        self
    }
}

/// Raises the soft limit on open files to the hard limit, where the platform allows it, and
/// returns the soft limit now in force (`None` where there is no such limit or it cannot be
/// read). A server that runs out of descriptors stops accepting even its health probes.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(err) => {
                tracing::warn!(error = %err, "cannot raise the open-file limit");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Turns an accepted TCP stream into the stream HTTP is spoken on (identity, or a TLS
/// handshake), plus extensions to put on each of its requests. `None` drops the connection.
pub(crate) trait Accept: Clone + Send + Sync + 'static {
    /// The stream HTTP runs over.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Accepts one connection.
    fn accept(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = Option<(Self::Io, axum::http::Extensions)>> + Send;
}

/// Plain TCP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlainTcp;

impl Accept for PlainTcp {
    type Io = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> Option<(TcpStream, axum::http::Extensions)> {
        Some((tcp, axum::http::Extensions::new()))
    }
}

/// Whether an accept error concerns only the connection being accepted (the client gave up
/// already), so the next accept can follow at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Serves `app` on `listener` with `acceptor` until `shutdown`, then gives open connections
/// `grace` (`None`: as long as they need) to finish their requests.
pub(crate) async fn run<A, F>(
    listener: TcpListener,
    app: Router,
    shutdown: F,
    grace: Option<Duration>,
    limits: ServerLimits,
    acceptor: A,
) -> Result<()>
where
    A: Accept,
    F: Future<Output = ()> + Send + 'static,
{
    let limits = Arc::new(limits);
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let shedding = Arc::new(Semaphore::new(limits.max_shedding));
    let builder = Arc::new(builder(&limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut out_of_descriptors = false;
    // Aborted when this function returns, so connections past the grace are really dropped.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => {
                if out_of_descriptors {
                    tracing::info!("accepting connections again");
                    out_of_descriptors = false;
                }
                tcp
            }
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: the condition lasts until connections
                // close, so say it once and retry at a calm pace instead of spinning.
                if !out_of_descriptors {
                    tracing::error!(error = %err, backoff_ms = limits.accept_backoff.as_millis(), "cannot accept connections; retrying");
                    out_of_descriptors = true;
                }
                tokio::time::sleep(limits.accept_backoff).await;
                continue;
            }
        };
        // Small responses must not wait for Nagle plus a delayed ACK (about 40 ms).
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        if let Some(shedder) = &limits.shedder {
            // This connection's own slot is taken already.
            let open = max - slots.available_permits() - 1;
            if shedder.refuse(open).is_some() {
                drop(permit);
                // Refusing costs a descriptor too: beyond the bound, just close.
                if let Ok(shed_permit) = shedding.clone().try_acquire_owned() {
                    connections.spawn(refuse(tcp, acceptor.clone(), shedder.body(), shed_permit));
                }
                continue;
            }
        }
        let serve = connection(
            tcp,
            acceptor.clone(),
            app.clone(),
            builder.clone(),
            limits.clone(),
            stop_rx.clone(),
            permit,
        );
        match &limits.queue_delay {
            Some(delay) => {
                connections.spawn(crate::queue_delay::Stamped::new(serve, delay.clone()))
            }
            None => connections.spawn(serve),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let max = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = slots.acquire_many(max);
    match grace {
        None => {
            let _ = drained.await;
        }
        Some(grace) => {
            if tokio::time::timeout(grace, drained).await.is_err() {
                tracing::warn!(
                    grace_s = grace.as_secs_f64(),
                    "shutdown grace period over; dropping open connections"
                );
            }
        }
    }
    Ok(())
}

/// Answers a refused connection: 503 with `Retry-After` and `Connection: close` to whatever
/// it asks (over TLS, after the handshake), as soon as its first bytes arrive, then reads
/// what the client still sends; all within [`SHED_LINGER`], then closes.
async fn refuse<A: Accept>(
    tcp: TcpStream,
    acceptor: A,
    body: String,
    _permit: OwnedSemaphorePermit,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answered = async {
        let Some((mut io, _)) = acceptor.accept(tcp).await else {
            return;
        };
        // An HTTP client that reads a response before it has sent its request rejects it
        // (hyper: "unexpected message"), so answer once the request starts arriving.
        let mut sink = [0u8; 4096];
        if !matches!(io.read(&mut sink).await, Ok(n) if n > 0) {
            return;
        }
        if io.write_all(response.as_bytes()).await.is_err() || io.shutdown().await.is_err() {
            return;
        }
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(SHED_LINGER, answered).await;
}

fn builder(limits: &ServerLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_interval);
    builder
}

/// What a connection has been doing, for the idle timeout.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicU64,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        *last = Instant::now();
    }

    fn last(&self) -> Instant {
        match self.last.lock() {
            Ok(l) => *l,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Counts a request in flight until dropped, so a request whose client went away (its
/// future dropped) counts as ended too.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

async fn connection<A: Accept>(
    tcp: TcpStream,
    acceptor: A,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Arc<ServerLimits>,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)) => accepted,
        _ = stop.wait_for(|s| *s) => return,
    };
    let Ok(Some((io, extensions))) = accepted else {
        return;
    };
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        served: AtomicU64::new(0),
        last: Mutex::new(Instant::now()),
    });
    let max_requests = limits.max_requests_per_connection;
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // Not idle while a request is in flight, whatever `last` says: only the end of
            // one needs the time (a clock read and a lock per request fewer).
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = InFlight(activity.clone());
            let served = activity.served.fetch_add(1, Ordering::AcqRel) + 1;
            let last_allowed = request.version() < Version::HTTP_2
                && max_requests.is_some_and(|max| served >= max);
            request.extensions_mut().extend(extensions.clone());
            let app = app.clone();
            async move {
                let mut response: Response<Body> = match app.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if last_allowed {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                drop(guard);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let io = crate::protocol_errors::ErrorBodies::new(io, limits.protocol_error_body);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // A connection with a request in flight is not idle: look again a whole timeout
        // from now. (From its last activity, a request that outlasts the timeout would
        // wake this loop at once, again and again, until it ended.)
        let since = if activity.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now()
        } else {
            activity.last()
        };
        let idle_at = since + limits.idle_timeout;
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(idle_at.into()), if !closing => {
                let idle = activity.in_flight.load(Ordering::Acquire) == 0
                    && activity.last().elapsed() >= limits.idle_timeout;
                if idle {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
