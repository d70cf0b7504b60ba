//! Span export that never holds up a request.
//!
//! Finished spans enter a bounded queue ([`Bounded`] in front of the SDK's batch processor,
//! whose thread exports batches); a full queue drops the span at once. Each batch is sent
//! once (no retries: a collector that is away would only fill the queue meanwhile) with a
//! short timeout; a failed batch is dropped. Every drop is counted by reason
//! ([`SpanStats`]), and the servers expose the counts as metrics ([`register_metrics`]).
//!
//! The HTTP client is the process's reqwest (rustls, never OpenSSL) running on the
//! process's Tokio runtime: the batch thread only waits for the result.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::TelemetryError;

/// How long one export request may take before its batch is dropped.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often queued spans are sent.
const SCHEDULE_DELAY: Duration = Duration::from_secs(1);

/// Why spans were dropped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    /// `queue_full` or `export_failed`.
    reason: &'static str,
}

/// Span export counts of this process. The tracer provider is process-wide, so are they.
#[derive(Debug, Default)]
pub struct SpanStats {
    exported: Counter,
    dropped: Family<DropLabels, Counter>,
}

impl SpanStats {
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.get()
    }

    /// Spans dropped because the export queue was full.
    pub fn dropped_queue_full(&self) -> u64 {
        self.dropped
            .get_or_create(&DropLabels {
                reason: "queue_full",
            })
            .get()
    }

    /// Spans dropped because their batch could not be sent (collector away, refused, slow).
    pub fn dropped_export_failed(&self) -> u64 {
        self.dropped
            .get_or_create(&DropLabels {
                reason: "export_failed",
            })
            .get()
    }

    /// Every dropped span.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full() + self.dropped_export_failed()
    }

    fn drop_for(&self, reason: &'static str, n: usize) {
        self.dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(n as u64);
    }
}

static STATS: LazyLock<SpanStats> = LazyLock::new(SpanStats::default);

/// This process's span export counts.
pub fn stats() -> &'static SpanStats {
    &STATS
}

/// Registers `trace_spans_exported_total` and `trace_spans_dropped_total{reason}` in
/// `registry` (under its prefix, e.g. `edgeroute_agent_`). The counters are the process's:
/// several registries in one process show the same counts.
pub fn register_metrics(registry: &mut Registry) {
    registry.register(
        "trace_spans_exported",
        "Spans sent to the OTLP collector",
        STATS.exported.clone(),
    );
    registry.register(
        "trace_spans_dropped",
        "Spans not exported, by reason: queue_full (the export queue was full) or \
         export_failed (the collector did not take the batch)",
        STATS.dropped.clone(),
    );
}

/// The endpoint without credentials or query, for logs.
pub fn redact_endpoint(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The span processor that exports to `endpoint`, holding at most `capacity` spans.
pub(super) fn processor(
    endpoint: &str,
    capacity: usize,
) -> Result<Bounded<BatchSpanProcessor>, TelemetryError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| TelemetryError::Exporter(format!("--otlp-endpoint {endpoint:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TelemetryError::Exporter(format!(
            "--otlp-endpoint must be an http:// or https:// URL, not {}",
            redact_endpoint(endpoint)
        )));
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        TelemetryError::Exporter("span export needs a Tokio runtime to send from".to_owned())
    })?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("HTTP client: {e}")))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .with_http_client(OnRuntime { client, runtime })
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counting {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            // Room for every span the bound lets in: the SDK's own queue never drops
            // uncounted.
            .with_max_queue_size(capacity)
            .with_max_export_batch_size(capacity.clamp(1, 512))
            .with_scheduled_delay(SCHEDULE_DELAY)
            .build(),
    )
    .build();
    Ok(Bounded {
        inner: batch,
        pending,
        capacity,
    })
}

/// Lets at most `capacity` spans wait for export; the rest are dropped and counted.
#[derive(Debug)]
pub(super) struct Bounded<P> {
    inner: P,
    /// Spans handed to `inner` and not yet exported or dropped by [`Counting`].
    pending: Arc<AtomicUsize>,
    capacity: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            STATS.drop_for("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what the exporter does with each batch and releases its places in the queue.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

/// Gives a batch's places back even if its export future is dropped half-way.
struct Release<'a> {
    pending: &'a AtomicUsize,
    n: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let _release = Release {
            pending: &self.pending,
            n,
        };
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                STATS.exported.inc_by(n as u64);
            }
            Err(_) => STATS.drop_for("export_failed", n),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter's HTTP client: reqwest on the process's runtime. The batch thread that
/// calls it has no runtime of its own; it waits on the spawned task.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// The most of a collector's answer read (it is a small protobuf message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let url = reqwest::Url::parse(&parts.uri.to_string())?;
            let mut response = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err::<_, HttpError>("collector response too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            let mut answer = http::Response::new(Bytes::from(body));
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        });
        task.await?
    }
}
