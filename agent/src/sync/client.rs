//! The sync loop: report to the center, delete what it acknowledged, follow its directives.
//!
//! It runs beside the server and shares nothing with request handling but the store, the
//! graph holder and the metrics window, so a partitioned agent serves at full speed; it
//! only stops reporting, and says since when in `/v1/status`.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use edgeroute_protocol::sync::{
    GraphDirective, GraphRef, Health, Location, RawEvent, Report, ReportAck, ShadowCounts,
};
use reqwest::{StatusCode, Url, header};
use tracing::Instrument;

use super::{
    backoff::Backoff,
    download::{self, DownloadError},
    follow::{ShadowFollower, follow_graph},
    profiles::ProfileFollower,
    window::WindowRecorder,
};
use crate::{
    api::NodeInfo,
    config::Config,
    metrics::Metrics,
    routing::{GraphService, profiles::Profiles, shadow::Shadow},
    storage::{
        self, Store,
        outbox::{NewStream, now_ms},
    },
};

/// How the agent reaches the center.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The control plane's base URL.
    pub control_plane: Url,
    /// Time between reports.
    pub interval: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Bearer token, when not authenticating by client certificate.
    pub token: Option<String>,
    /// Where clients reach this agent.
    pub advertise_url: Option<String>,
    /// Where this agent stands.
    pub location: Option<Location>,
    /// Most events in one report.
    pub batch_events: usize,
    /// Most bytes of events (before compression) in one report.
    pub batch_bytes: usize,
    /// Where partial graph downloads are kept.
    pub download_dir: PathBuf,
    /// Time limit of one report round trip.
    pub request_timeout: Duration,
}

impl SyncConfig {
    /// The sync settings of an agent configuration.
    pub fn from_config(config: &Config, control_plane: Url) -> Self {
        let interval = Duration::from_millis(config.sync_interval_ms.max(10));
        Self {
            control_plane,
            interval,
            max_backoff: Duration::from_millis(config.sync_max_backoff_ms).max(interval),
            token: config.sync_token.clone().filter(|t| !t.is_empty()),
            advertise_url: config.advertise_url.clone(),
            location: config.location,
            batch_events: config.sync_batch_events.max(1),
            batch_bytes: 8 << 20,
            download_dir: config.data_dir.join("downloads"),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The HTTP client the agent talks to the control plane with: rustls (ring), the
/// `--sync-ca` roots when given, and the `--sync-client-cert` identity for mutual TLS.
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(ca) = &config.sync_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&config.sync_client_cert, &config.sync_client_key) {
        let mut pem =
            std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?);
        let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
            format!(
                "{} and {} are not a PEM certificate and private key",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .context("cannot build the control plane client")
}

/// What the sync loop knows, for `/v1/status` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// Unix milliseconds of the last acknowledged report.
    pub last_ack_at_ms: Option<u64>,
    /// Unix milliseconds since which every attempt failed (`None` while connected).
    pub unreachable_since_ms: Option<u64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The center's watermark.
    pub acked_seq: u64,
    /// Events waiting for the center.
    pub outbox_depth: u64,
    /// The last graph download or verification failure.
    pub graph_error: Option<String>,
    /// A graph download in progress (its version).
    pub downloading: Option<String>,
    /// The last failure to follow the directives' extra profiles, until a pass succeeds.
    pub profile_error: Option<String>,
    /// The last failure to load the shadow graph a directive named, until one loads.
    pub shadow_error: Option<String>,
    /// Reports acknowledged.
    pub reports: u64,
    /// Reports that failed.
    pub failures: u64,
    /// Request bytes sent to the center, as sent (compressed).
    pub bytes_sent: u64,
    /// Response bytes received from the center, graph downloads included.
    pub bytes_received: u64,
}

/// The shared, lock-protected [`SyncStatus`].
#[derive(Debug, Default)]
pub struct SyncState(Mutex<SyncStatus>);

impl SyncState {
    /// A copy of the current status.
    pub fn get(&self) -> SyncStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}

/// Everything the loop works with.
#[derive(Clone)]
pub struct SyncContext {
    /// Settings.
    pub config: Arc<SyncConfig>,
    /// HTTP client (TLS, client certificate and CA already set).
    pub client: reqwest::Client,
    /// The agent's store (the outbox).
    pub store: Arc<dyn Store>,
    /// The served graph.
    pub graphs: Arc<GraphService>,
    /// The metrics window.
    pub window: Arc<WindowRecorder>,
    /// Shared status.
    pub state: Arc<SyncState>,
    /// Who this agent is.
    pub node: Arc<NodeInfo>,
    /// Where the loop's counters go.
    pub metrics: Arc<Metrics>,
    /// The shadow graph slot the directives' `shadow` fills and empties.
    pub shadow: Arc<Shadow>,
    /// The extra profiles the directives' `profile_graphs` install and remove.
    pub profiles: Arc<Profiles>,
}

impl SyncContext {
    /// Download the artifact a directive names (resumable, sha256-checked) and count the
    /// bytes in the metrics and the status; the error is the message `graph_error` shows.
    pub(super) async fn fetch_graph(&self, directive: &GraphDirective) -> Result<Vec<u8>, String> {
        let bytes = download::fetch(
            &self.client,
            &self.config.control_plane,
            self.config.token.as_deref(),
            &self.config.download_dir,
            directive,
        )
        .await
        .map_err(|e: DownloadError| format!("{:#}", anyhow::Error::new(e)))?;
        let len = bytes.len() as u64;
        self.metrics.sync_downloaded(len);
        self.state.update(|s| s.bytes_received += len);
        Ok(bytes)
    }
}

/// Why one round failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("cannot reach the control plane")]
    Transport(#[source] reqwest::Error),
    #[error("the control plane answered {status}: {body}")]
    Status {
        status: StatusCode,
        body: String,
        /// The answer's `Retry-After` (a shedding center's request to wait).
        retry_after: Option<Duration>,
    },
    #[error("the control plane's answer is not a report acknowledgement")]
    Decode(#[source] serde_json::Error),
    #[error("local storage failed")]
    Store(#[from] storage::Error),
    #[error("a blocking task failed")]
    Task,
}

/// The outcome of a round that reached the center.
struct Round {
    ack: ReportAck,
    /// The batch was full: more events are waiting.
    more: bool,
}

/// Run until `shutdown` resolves.
pub async fn run(ctx: SyncContext, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let base_delay = ctx.config.interval.min(Duration::from_secs(1));
    let mut backoff = Backoff::new(base_delay, ctx.config.max_backoff);
    let mut interval = ctx.config.interval;
    let downloading = Arc::new(tokio::sync::Mutex::new(()));
    let shadow = ShadowFollower::default();
    let profiles = ProfileFollower::default();
    loop {
        let wait = match round(&ctx).await {
            Ok(round) => {
                backoff.reset();
                if let Some(ms) = round.ack.directives.sync_interval_ms {
                    interval = Duration::from_millis(ms.clamp(100, 3_600_000));
                }
                if let Some(graph) = round.ack.directives.graph.clone() {
                    follow_graph(&ctx, graph, &downloading);
                }
                shadow.follow(&ctx, round.ack.directives.shadow.clone());
                profiles.follow(&ctx, round.ack.directives.profile_graphs);
                if round.more { Duration::ZERO } else { interval }
            }
            Err(err) => {
                let asked = match &err {
                    RoundError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let message = format!("{:#}", anyhow::Error::new(err));
                tracing::warn!(error = %message, "sync report failed");
                let now = now_ms();
                ctx.metrics.sync_failed();
                ctx.state.update(|s| {
                    s.failures += 1;
                    s.last_error = Some(message);
                    s.unreachable_since_ms.get_or_insert(now);
                });
                let delay = backoff.next_delay(rand::random::<f64>());
                retry_delay(delay, asked, ctx.config.max_backoff, rand::random::<f64>())
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// `Retry-After` in delay-seconds (a shedding center sends those; an HTTP date is ignored
/// and the backoff applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How long to wait after a failed round: the backoff's delay, or, when the center asked
/// for longer with `Retry-After`, that plus up to half of it again at random (`unit` in
/// `[0, 1)`), so a shed fleet does not come back in the same second. Never beyond `max`
/// (the agent's own cap), whatever the center asks.
fn retry_delay(backoff: Duration, asked: Option<Duration>, max: Duration, unit: f64) -> Duration {
    let Some(asked) = asked else { return backoff };
    let jittered = asked + (asked / 2).mul_f64(unit.clamp(0.0, 1.0));
    backoff.max(jittered).min(max.max(backoff))
}

/// One report: build it, send it, apply the acknowledgement.
async fn round(ctx: &SyncContext) -> Result<Round, RoundError> {
    let store = ctx.store.clone();
    let (max_events, max_bytes) = (ctx.config.batch_events, ctx.config.batch_bytes);
    let node = ctx.node.name.clone();
    let batch =
        tokio::task::spawn_blocking(move || store.outbox_batch(&node, max_events, max_bytes))
            .await
            .map_err(|_| RoundError::Task)??;
    if let Some(new) = &batch.rotated {
        new_stream(ctx, new);
    }
    let (stream, last_sent, depth, events) = (batch.stream, batch.last, batch.depth, batch.events);
    let more = events.len() >= max_events || (depth as usize) > events.len();
    let status = ctx.state.get();
    let graph = ctx.graphs.holder().get().map(|g| GraphRef {
        version: g.info().version.clone(),
        sha256: g.sha256().to_owned(),
        bbox: Some(g.info().bbox),
    });
    let profiles = ctx
        .profiles
        .all()
        .into_iter()
        .map(|(name, g)| {
            let graph = GraphRef {
                version: g.info().version.clone(),
                sha256: g.sha256().to_owned(),
                bbox: Some(g.info().bbox),
            };
            (name, graph)
        })
        .collect();
    let window = ctx.window.take();
    let mut metrics = window.clone();
    if metrics.shadow.is_none()
        && let Some(shadow) = ctx.shadow.current()
    {
        // Say a shadow is loaded even in a window without samples: the center then knows
        // the comparison runs, and that an idle canary compared nothing.
        metrics.shadow = Some(ShadowCounts {
            against_version: shadow.version().to_owned(),
            ..ShadowCounts::default()
        });
    }
    let report = Report {
        node: ctx.node.name.clone(),
        stream: stream.clone(),
        region: ctx.node.region.clone(),
        boot_id: format!("{}-{}", ctx.node.id, ctx.node.boot_count),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        health: Health {
            ready: graph.is_some(),
            // The default graph's failure first: it is what `ready` depends on.
            graph_error: status
                .graph_error
                .clone()
                .or_else(|| status.profile_error.clone()),
            last_ack_at_ms: status.last_ack_at_ms,
        },
        graph,
        profiles,
        advertise_url: ctx.config.advertise_url.clone(),
        location: ctx.config.location,
        metrics,
        outbox_depth: depth,
        events,
    };
    let sent = send(ctx, &report).await;
    let (ack, sent_bytes, received_bytes) = match sent {
        Ok(ok) => ok,
        Err(e) => {
            // Not counted at the center: count it in the next report instead.
            ctx.window.restore(window);
            return Err(e);
        }
    };
    let acked = ack.acked_seq;
    let store = ctx.store.clone();
    let applied = tokio::task::spawn_blocking(move || store.ack_outbox(&stream, last_sent, acked))
        .await
        .map_err(|_| RoundError::Task)??;
    let depth = applied.depth;
    if let Some(new) = &applied.rotated {
        new_stream(ctx, new);
    }
    let now = now_ms();
    ctx.metrics
        .sync_acked(depth, sent_bytes, received_bytes, now / 1000);
    ctx.state.update(|s| {
        s.reports += 1;
        s.last_ack_at_ms = Some(now);
        s.unreachable_since_ms = None;
        s.last_error = None;
        s.acked_seq = if applied.rotated.is_some() { 0 } else { acked };
        s.outbox_depth = depth;
        s.bytes_sent += sent_bytes;
        s.bytes_received += received_bytes;
    });
    Ok(Round {
        ack,
        // A new stream sends its waiting events again at once, not after an interval.
        more: (more || applied.rotated.is_some()) && depth > 0,
    })
}

/// Say loudly that a new stream began: the old one's history and this database's
/// disagreed, and only an operator can find out why (see docs/sync.md).
fn new_stream(ctx: &SyncContext, new: &NewStream) {
    tracing::warn!(
        reason = new.reason.label(),
        previous = %new.previous,
        stream = %new.stream,
        waiting = new.waiting,
        "sync: the center's record of this node's events and this database disagree; \
         the waiting events go out again in a new stream"
    );
    ctx.metrics.sync_stream_rotated(new.reason.label());
}

/// POST the report gzip-compressed; returns the ack and the bytes each way.
async fn send(
    ctx: &SyncContext,
    report: &Report<RawEvent>,
) -> Result<(ReportAck, u64, u64), RoundError> {
    let json = serde_json::to_vec(report).map_err(RoundError::Decode)?;
    let body = tokio::task::spawn_blocking(move || {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&json)?;
        gz.finish()
    })
    .await
    .map_err(|_| RoundError::Task)?
    .map_err(|e| RoundError::Store(storage::Error::Io(e)))?;
    let url = ctx
        .config
        .control_plane
        .join("sync/v1/report")
        .map_err(|_| RoundError::Task)?;
    let sent = body.len() as u64;
    // The report's own trace; the center's ingest span continues it (and each plan's span
    // continues the plan's trace, see `NewPlan::traceparent`).
    let span = tracing::info_span!(
        "sync.report",
        otel.name = "POST /sync/v1/report",
        otel.kind = "client",
        http.request.method = "POST",
        server.address = url.host_str(),
        http.response.status_code = tracing::field::Empty,
        edgeroute.sync.events = edgeroute_server::telemetry::count(report.events.len()),
    );
    let mut trace_headers = header::HeaderMap::new();
    edgeroute_server::telemetry::inject_headers(&span, &mut trace_headers);
    let mut request = ctx
        .client
        .post(url)
        .headers(trace_headers)
        .timeout(ctx.config.request_timeout)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(body);
    if let Some(token) = &ctx.config.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .instrument(span.clone())
        .await
        .map_err(RoundError::Transport)?;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let bytes = response.bytes().await.map_err(RoundError::Transport)?;
    if status != StatusCode::OK {
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(RoundError::Status {
            status,
            body,
            retry_after,
        });
    }
    let ack: ReportAck = serde_json::from_slice(&bytes).map_err(RoundError::Decode)?;
    Ok((ack, sent, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_with_jitter_within_the_cap() {
        let s = Duration::from_secs;
        let max = s(30);
        // Without Retry-After the backoff decides.
        assert_eq!(retry_delay(s(1), None, max, 0.7), s(1));
        // A shedding center's 4 s: between 4 and 6 s, spread by the random unit.
        assert_eq!(retry_delay(s(1), Some(s(4)), max, 0.0), s(4));
        assert_eq!(retry_delay(s(1), Some(s(4)), max, 0.5), s(5));
        assert!(retry_delay(s(1), Some(s(4)), max, 0.999) < s(6));
        // A longer backoff is kept; the center cannot park an agent beyond its cap.
        assert_eq!(retry_delay(s(8), Some(s(2)), max, 0.0), s(8));
        assert_eq!(retry_delay(s(1), Some(s(3600)), max, 0.0), max);
        assert_eq!(parse_retry_after(" 2 "), Some(s(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
