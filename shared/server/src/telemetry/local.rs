//! Trace context without an exporter: what the OpenTelemetry layer gives a span that no
//! collector will ever see, its trace and span ids, for a tenth of the work.
//!
//! A process that exports nothing still puts `trace_id` and `span_id` on its JSON log
//! lines, continues a client's `traceparent` into them and into its plans, and passes its
//! own on to the center. The OpenTelemetry layer did that by building a whole span per
//! tracing span: its attributes copied into a list, its start and end read from the clock
//! (three reads per request span), then an SDK span made at the close and dropped. That
//! was 5.2k instructions of a two-point `/route` (5%, `docs/agent-benchmarks.md`). Here a
//! span only gets a [`SpanContext`] in its extensions when it is made: its parent's trace
//! with a new span id, or a new trace sampled as the SDK's sampler decides; and
//! [`super::set_parent_from_headers`] swaps in a remote parent's trace before the span is
//! first used.

use opentelemetry::{
    Context,
    trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags},
};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tracing::{Subscriber, span};
use tracing_subscriber::{Layer, Registry, layer::Context as LayerContext, registry::LookupSpan};

/// A span's trace context, in its extensions.
#[derive(Debug, Clone)]
pub(super) struct LocalSpanContext(pub(super) SpanContext);

/// The layer that gives every span a [`LocalSpanContext`]; installed instead of the
/// OpenTelemetry layer when spans are not exported.
#[derive(Debug)]
pub(super) struct LocalTraceContext {
    sampler: Sampler,
    ids: RandomIdGenerator,
}

impl LocalTraceContext {
    /// Samples new traces with `sampler`, the one the exporting provider would use, so
    /// that the flags a `traceparent` passes on do not depend on whether this process
    /// exports.
    pub(super) fn new(sampler: Sampler) -> Self {
        Self {
            sampler,
            ids: RandomIdGenerator::default(),
        }
    }

    /// A new span's context: a child of `parent` when it is valid (local or remote), else
    /// the root of a new trace.
    fn child_of(&self, parent: Option<&SpanContext>, name: &str) -> SpanContext {
        let parent = parent.filter(|p| p.is_valid());
        let trace_id = parent.map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        let parent_cx = parent.map(|p| Context::new().with_remote_span_context(p.clone()));
        let decision = self.sampler.should_sample(
            parent_cx.as_ref(),
            trace_id,
            name,
            &SpanKind::Internal,
            &[],
            &[],
        );
        let flags = match decision.decision {
            SamplingDecision::RecordAndSample => TraceFlags::SAMPLED,
            SamplingDecision::RecordOnly | SamplingDecision::Drop => TraceFlags::default(),
        };
        SpanContext::new(
            trace_id,
            self.ids.new_span_id(),
            flags,
            false,
            decision.trace_state,
        )
    }
}

impl<S> Layer<S> for LocalTraceContext
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<LocalSpanContext>()
                .map(|c| c.0.clone())
        });
        let context = self.child_of(parent.as_ref(), attrs.metadata().name());
        span.extensions_mut().insert(LocalSpanContext(context));
    }
}

/// Runs `f` on the context [`LocalTraceContext`] gave `span`; `None` when that layer is not
/// installed or `span` has no context from it.
fn with_context<T>(span: &tracing::Span, f: impl FnOnce(&mut SpanContext) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let mut extensions = span.extensions_mut();
        extensions
            .get_mut::<LocalSpanContext>()
            .map(|c| f(&mut c.0))
    })
    .flatten()
}

/// `span`'s context from [`LocalTraceContext`], if that layer is installed.
pub(super) fn get(span: &tracing::Span) -> Option<SpanContext> {
    with_context(span, |own| own.clone())
}

/// Makes the remote `parent` the parent of `span`, if [`LocalTraceContext`] gave `span` a
/// context: `span` keeps its span id and joins `parent`'s trace, sampled as `parent` says.
/// Returns whether it did. Spans made inside `span` before this call keep the old trace,
/// as with the OpenTelemetry layer's `set_parent`.
pub(super) fn set_parent(span: &tracing::Span, parent: &SpanContext) -> bool {
    with_context(span, |own| {
        *own = SpanContext::new(
            parent.trace_id(),
            own.span_id(),
            TraceFlags::default().with_sampled(parent.is_sampled()),
            false,
            parent.trace_state().clone(),
        );
    })
    .is_some()
}
