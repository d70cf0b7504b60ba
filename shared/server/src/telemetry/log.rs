//! The JSON log line: tracing-subscriber's JSON format (`timestamp`, `level`, `fields`,
//! `target`, `span`, `spans`) plus `trace_id` and `span_id` of the current span when there
//! is one, and the process's own fields ([`set_process_field`]: the agent's `node` and
//! `region`).

use std::{
    fmt,
    sync::{Arc, OnceLock, RwLock},
};

use tracing::{Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::{
    Layer,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, Writer},
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
