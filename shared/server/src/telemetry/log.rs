//! The JSON log line: tracing-subscriber's JSON format (`timestamp`, `level`, `fields`,
//! `target`, `span`, `spans`) plus `trace_id` and `span_id` of the current span when there
//! is one, and the process's own fields ([`set_process_field`]: the agent's `node` and
//! `region`).

use std::{
    fmt,
    sync::{Arc, OnceLock, RwLock},
};

use tracing::{Event, Subscriber, dispatcher::WeakDispatch, span::Record};
use tracing_subscriber::{
    Layer,
    field::{RecordFields, VisitOutput},
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{Format, Json, JsonVisitor, Writer},
    },
    registry::LookupSpan,
};

/// Fields every JSON line of this process carries, in order of first setting.
static PROCESS_FIELDS: RwLock<Vec<(&'static str, String)>> = RwLock::new(Vec::new());

/// Adds (or replaces) a field every JSON log line of this process carries from now on, e.g.
/// `node` and `region`. Never pass a secret.
pub fn set_process_field(key: &'static str, value: impl Into<String>) {
    let value = value.into();
    let mut fields = match PROCESS_FIELDS.write() {
        Ok(f) => f,
        Err(poisoned) => poisoned.into_inner(),
    };
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

/// The event format of JSON logs; see the module documentation.
pub struct JsonWithTrace {
    inner: Format<Json>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// Learns the dispatcher the format runs in: the OpenTelemetry context of a span is read
/// through it, and inside an event it cannot be looked up as the current one.
pub struct CaptureDispatch {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S: Subscriber> Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }
}

impl JsonWithTrace {
    /// The format and the layer that must be installed in the same subscriber.
    pub fn new() -> (CaptureDispatch, Self) {
        let dispatch = Arc::new(OnceLock::new());
        (
            CaptureDispatch {
                dispatch: dispatch.clone(),
            },
            Self {
                inner: Format::default().json(),
                dispatch,
            },
        )
    }

    fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        use opentelemetry::trace::TraceContextExt;
        let span = ctx.event_scope()?.next()?;
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel = cx.span();
        let context = otel.span_context();
        context.is_valid().then(|| {
            (
                context.trace_id().to_string(),
                context.span_id().to_string(),
            )
        })
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Read the ids before formatting: the formatter borrows the spans' extensions.
        let ids = self.ids(ctx);
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(line.trim_end())
        else {
            return writer.write_str(&line);
        };
        if let Some((trace_id, span_id)) = ids {
            object.insert("trace_id".to_owned(), trace_id.into());
            object.insert("span_id".to_owned(), span_id.into());
        }
        let fields = match PROCESS_FIELDS.read() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (key, value) in fields.iter() {
            object
                .entry((*key).to_owned())
                .or_insert_with(|| value.clone().into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

/// The fields of a span as a JSON object, as tracing-subscriber's `JsonFields` keeps them,
/// but a field recorded later is appended instead of the object being parsed and written
/// again: `JsonFields` did that on every `Span::record`, and the agent records four fields
/// on each request's span (status, profile, graph version, coordinates), which cost about
/// 118,000 instructions of a 400,000-instruction `/route` (callgrind,
/// `agent/examples/request_cost.rs`). A field recorded twice appears twice; readers of the
/// object (the event format) keep the last, as `JsonFields` did.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'a> FormatFields<'a> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'_>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor::new(&mut writer);
        fields.record(&mut visitor);
        visitor.finish()
    }

    fn add_fields(
        &self,
        current: &'a mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        let Some(inner) = added.strip_prefix('{').and_then(|a| a.strip_suffix('}')) else {
            return Err(fmt::Error);
        };
        if inner.is_empty() {
            return Ok(());
        }
        let existing = &mut current.fields;
        if existing.len() <= 2 {
            // Nothing yet, or `{}`.
            *existing = added;
        } else if existing.ends_with('}') {
            existing.pop();
            existing.push(',');
            existing.push_str(inner);
            existing.push('}');
        } else {
            return Err(fmt::Error);
        }
        Ok(())
    }
}
