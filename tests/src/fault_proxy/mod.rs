//! A TCP fault proxy for end-to-end tests: it sits between the agents and the control plane
//! on loopback and injects real network faults (partitions, black holes, resets, lost
//! responses) while the binaries under test run unmodified.
//!
//! ```no_run
//! # async fn demo(control_plane: std::net::SocketAddr) -> std::io::Result<()> {
//! use edgeroute_tests::fault_proxy::{FaultProxy, Mode};
//!
//! let proxy = FaultProxy::start(control_plane).await?;
//! // Point the agent at `proxy.url()` instead of the control plane, then:
//! proxy.set_mode(Mode::Cut); // partition
//! proxy.set_mode(Mode::Pass); // heal
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every accepted connection gets its own upstream connection (to the upstream address
//! current at accept time) and one task that copies bytes both ways. Mode changes are
//! broadcast on a `watch` channel that every copy loop selects on, so they apply to open
//! connections at once, not only to new ones.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The most bytes a connection holds per direction while they cannot be forwarded (in
/// [`Mode::Stall`], or while the destination is slow). Past it the proxy stops reading,
/// so the sender feels TCP backpressure exactly as behind a real stalled link.
pub const MAX_BUFFERED: usize = 1 << 20;

/// Size of one read from a socket.
const CHUNK: usize = 16 * 1024;

/// What the proxy does to traffic. Changes apply to open connections immediately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward bytes both ways, half-closes included.
    #[default]
    Pass,
    /// A partition seen by the endpoints as closed connections: every open connection is
    /// closed at once (client and upstream side) and new ones are closed right after the
    /// accept. The client normally sees EOF; the kernel sends an RST instead if the socket
    /// still held unread bytes when it was closed.
    Cut,
    /// A black hole: connections are accepted and kept open but no byte is forwarded either
    /// way, FINs included. Bytes received meanwhile are buffered (at most [`MAX_BUFFERED`] per
    /// direction, then reading stops) and delivered when the mode returns to `Pass`, or
    /// discarded on `Cut`/`Reset`. New connections still reach the upstream's accept queue.
    Stall,
    /// Abort every open and new connection with a TCP RST, on both the client and the
    /// upstream side (`SO_LINGER` 0, then close).
    Reset,
    /// The request reaches the server, the answer is lost: client-to-server bytes are
    /// forwarded, and as soon as any server-to-client byte arrives (or is found still
    /// buffered from an earlier stall) it is discarded, a dropped response is counted and
    /// both sockets are closed. On a keep-alive connection no part of any later response
    /// can leak through, because the connection does not survive the first one.
    DropResponses,
    /// A link that dies mid-transfer: each connection forwards at most this many
    /// server-to-client bytes in all, then both sides are reset. Client-to-server bytes pass.
    CutAfter(u64),
}

/// Counters since [`FaultProxy::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Client connections currently open (being proxied or about to be closed).
    pub open: u64,
    /// Accepted connections closed because the upstream could not be reached.
    pub upstream_connect_failures: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written to clients.
    pub bytes_to_client: u64,
    /// Connections closed by [`Mode::Cut`], open ones and new ones alike.
    pub cut: u64,
    /// Connections aborted by [`Mode::Reset`], open ones and new ones alike.
    pub reset: u64,
    /// Responses discarded by [`Mode::DropResponses`] (one per closed connection).
    pub dropped_responses: u64,
}

/// The live counters behind [`Stats`].
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    upstream_connect_failures: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    cut: AtomicU64,
    reset: AtomicU64,
    dropped_responses: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    // Relaxed: the counters are independent statistics, nothing is synchronised through them.
    counter.fetch_add(by, Ordering::Relaxed);
}

/// State the background tasks share. It deliberately holds no `watch` sender: when the last
/// [`FaultProxy`] handle is dropped the senders go with it, which stops the tasks.
struct Shared {
    upstream: Mutex<SocketAddr>,
    counters: Counters,
}

impl Shared {
    fn upstream(&self) -> SocketAddr {
        // A poisoned lock still holds a valid address: a panic cannot tear a SocketAddr write.
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the handles share.
struct Control {
    addr: SocketAddr,
    shared: Arc<Shared>,
    mode: watch::Sender<Mode>,
    stop: watch::Sender<bool>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// A running fault proxy. Cloning gives another handle to the same proxy. It stops on
/// [`FaultProxy::shutdown`], or when the last handle is dropped.
#[derive(Clone)]
pub struct FaultProxy {
    inner: Arc<Control>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.inner.addr)
            .field("upstream", &self.inner.shared.upstream())
            .field("mode", &self.mode())
            .finish()
    }
}

impl FaultProxy {
    /// Listen on `127.0.0.1:0` and forward every accepted connection to `upstream`, in
    /// [`Mode::Pass`].
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            counters: Counters::default(),
        });
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (stop, stop_rx) = watch::channel(false);
        let accept_task =
            tokio::spawn(accept_loop(listener, Arc::clone(&shared), mode_rx, stop_rx));
        Ok(FaultProxy {
            inner: Arc::new(Control {
                addr,
                shared,
                mode,
                stop,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://<addr>`, for clients that take a base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Switch the mode; open connections react at once.
    pub fn set_mode(&self, mode: Mode) {
        // send_replace, not send: it stores the value even while no task is listening.
        self.inner.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.inner.mode.borrow()
    }

    /// Forward connections accepted from now on to `upstream` (e.g. a control plane restarted
    /// on another port). Open connections keep their upstream.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .inner
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = upstream;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            accepted: get(&c.accepted),
            open: get(&c.open),
            upstream_connect_failures: get(&c.upstream_connect_failures),
            bytes_to_upstream: get(&c.bytes_to_upstream),
            bytes_to_client: get(&c.bytes_to_client),
            cut: get(&c.cut),
            reset: get(&c.reset),
            dropped_responses: get(&c.dropped_responses),
        }
    }

    /// Stop accepting (the port is closed on return, so new connects are refused) and close
    /// every open connection on both sides. Other clones of the handle see a stopped proxy;
    /// if one of them already ran `shutdown`, this one returns without waiting for it.
    pub async fn shutdown(self) {
        self.inner.stop.send_replace(true);
        let task = self
            .inner
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // The accept loop never panics; a JoinError could only be a runtime shutting down,
            // where there is nothing left to wait for.
            let _ = task.await;
        }
    }
}

/// Resolves once a stop was requested or every handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Both Ok (stop == true) and Err (sender dropped) mean stop. The guard `wait_for` returns
    // is dropped here so it is never held across an await.
    let _ = stop.wait_for(|&stop| stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mode: watch::Receiver<Mode>,
    mut stop: watch::Receiver<bool>,
) {
    // The connection tasks live in a JoinSet so that stopping aborts them all, which drops
    // (closes) their sockets.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            // Reap finished connections so the set does not grow with every connection ever made.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    bump(&shared.counters.accepted, 1);
                    connections.spawn(proxy_connection(client, Arc::clone(&shared), mode.clone()));
                }
                // Typically EMFILE: back off rather than spin; the listener stays usable.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Keeps [`Stats::open`] right however a connection task ends, abort included.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Close a socket with an RST rather than a FIN.
fn abort(stream: TcpStream) {
    // If setting SO_LINGER fails the socket still closes, just with a FIN; a test expecting
    // a reset then fails visibly rather than the proxy misbehaving silently.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn proxy_connection(client: TcpStream, shared: Arc<Shared>, mut mode: watch::Receiver<Mode>) {
    bump(&shared.counters.open, 1);
    let _open = OpenGuard(Arc::clone(&shared));
    let counters = &shared.counters;
    match *mode.borrow_and_update() {
        Mode::Cut => {
            bump(&counters.cut, 1);
            return;
        }
        Mode::Reset => {
            abort(client);
            bump(&counters.reset, 1);
            return;
        }
        Mode::Pass | Mode::Stall | Mode::DropResponses | Mode::CutAfter(_) => {}
    }
    // Connected eagerly even in Stall: the upstream sees a silent connection, as it would
    // behind a black-holed link. On loopback the connect is immediate; a hanging one is
    // ended by shutdown, which aborts this task.
    let Ok(upstream) = TcpStream::connect(shared.upstream()).await else {
        bump(&counters.upstream_connect_failures, 1);
        return;
    };
    let mut client = client;
    let mut upstream = upstream;
    // Forward small HTTP writes as they come instead of letting Nagle delay them.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let end = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let to_upstream = pump(
            Direction::ToUpstream,
            client_read,
            upstream_write,
            mode.clone(),
            counters,
        );
        let to_client = pump(
            Direction::ToClient,
            upstream_read,
            client_write,
            mode,
            counters,
        );
        tokio::pin!(to_upstream, to_client);
        // A direction that ends with Done has forwarded its FIN; the other may still carry
        // data (HTTP half-close). Any other end closes the whole connection at once.
        tokio::select! {
            end = &mut to_upstream => if end == End::Done { to_client.await } else { end },
            end = &mut to_client => if end == End::Done { to_upstream.await } else { end },
        }
    };
    match end {
        End::Done | End::Closed => {}
        End::Cut => bump(&counters.cut, 1),
        End::Reset => {
            abort(client);
            abort(upstream);
            bump(&counters.reset, 1);
        }
        End::DroppedResponse => bump(&counters.dropped_responses, 1),
    }
    // Everything else closes with a FIN as the sockets drop here.
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// Why one direction of a connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source's EOF was forwarded after all its data.
    Done,
    /// An I/O error on either socket, or the proxy's handles are gone: just close.
    Closed,
    /// The mode became Cut.
    Cut,
    /// The mode became Reset.
    Reset,
    /// A response was discarded in DropResponses.
    DroppedResponse,
}

/// Copy one direction, obeying the mode. Returns when the direction is finished or the
/// connection must end.
async fn pump(
    direction: Direction,
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    mut mode: watch::Receiver<Mode>,
    counters: &Counters,
) -> End {
    let sent = match direction {
        Direction::ToUpstream => &counters.bytes_to_upstream,
        Direction::ToClient => &counters.bytes_to_client,
    };
    let mut buf = vec![0u8; CHUNK];
    // Bytes read from src and not yet written to dst; never longer than MAX_BUFFERED.
    let mut pending: Vec<u8> = Vec::new();
    let mut src_eof = false;
    // Bytes this direction delivered, for CutAfter.
    let mut delivered = 0u64;
    loop {
        let now = *mode.borrow_and_update();
        // How much of `pending` may go out now.
        let mut allowed = pending.len();
        let forward = match now {
            Mode::Cut => return End::Cut,
            Mode::Reset => return End::Reset,
            Mode::Stall => false,
            Mode::Pass => true,
            Mode::CutAfter(_) if direction == Direction::ToUpstream => true,
            Mode::CutAfter(limit) => {
                let left = limit.saturating_sub(delivered);
                if left == 0 && !pending.is_empty() {
                    return End::Reset;
                }
                allowed = pending
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                true
            }
            Mode::DropResponses => match direction {
                Direction::ToUpstream => true,
                // A response buffered before the switch (e.g. during a stall) is a response too.
                Direction::ToClient if !pending.is_empty() => return End::DroppedResponse,
                // EOF from an upstream that answered nothing is still passed on below.
                Direction::ToClient => false,
            },
        };
        // Pass the FIN on only once everything before it is delivered, and never in a stall.
        if src_eof && pending.is_empty() && now != Mode::Stall {
            return match dst.shutdown().await {
                Ok(()) => End::Done,
                Err(_) => End::Closed,
            };
        }
        let room = CHUNK.min(MAX_BUFFERED - pending.len());
        // biased: a mode change seen by this poll wins over a ready write, so at most a write
        // already under way when set_mode(Stall) is called still gets through; writes go
        // before reads so pending drains before it grows.
        tokio::select! {
            biased;
            changed = mode.changed() => if changed.is_err() {
                return End::Closed;
            },
            written = dst.write(&pending[..allowed]), if forward && allowed > 0 => match written {
                Ok(n) if n > 0 => {
                    pending.drain(..n);
                    delivered += n as u64;
                    bump(sent, n as u64);
                }
                // Ok(0) means the socket cannot take more bytes, ever.
                Ok(_) | Err(_) => return End::Closed,
            },
            read = src.read(&mut buf[..room]), if !src_eof && room > 0 => match read {
                Ok(0) => src_eof = true,
                Ok(_) if direction == Direction::ToClient && now == Mode::DropResponses => {
                    return End::DroppedResponse;
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(_) => return End::Closed,
            },
        }
    }
}

#[cfg(test)]
mod tests;
