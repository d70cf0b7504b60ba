//! The JSON log line: tracing-subscriber's JSON format (`timestamp`, `level`, `fields`,
//! `target`, `span`, `spans`) plus `trace_id` and `span_id` of the current span when there
//! is one, and the process's own fields ([`set_process_field`]: the agent's `node` and
//! `region`).

use std::{
    fmt::{self, Write as _},
    sync::{Arc, OnceLock, RwLock},
};

use tracing::{Event, Subscriber, dispatcher::WeakDispatch, span::Record};
use tracing_subscriber::{
    Layer,
    field::RecordFields,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
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
/// through it, and inside an event it cannot be looked up as the current one. (The context
/// [`super::local`] gives is in the span's extensions and needs no dispatcher.)
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
        let local = span
            .extensions()
            .get::<super::local::LocalSpanContext>()
            .map(|c| c.0.clone());
        let context = match local {
            Some(context) => context,
            None => {
                let dispatch = self.dispatch.get()?.upgrade()?;
                let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
                cx.span().span_context().clone()
            }
        };
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
/// written more cheaply. `JsonFields` builds a map of `serde_json::Value`s for every span,
/// and on every `Span::record` parses the whole object and writes it again; the agent
/// records four fields on each request's span (status, profile, graph version,
/// coordinates), which cost about 118,000 instructions of a 400,000-instruction `/route`
/// (callgrind, `agent/examples/request_cost.rs`). Here fields are written straight to the
/// string in the order they come, and a field recorded later is appended. A field recorded
/// twice appears twice; readers of the object (the event format) keep the last, as with
/// `JsonFields`.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'a> FormatFields<'a> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'_>, fields: R) -> fmt::Result {
        with_scratch(|object| {
            write_object(object, fields);
            writer.write_str(object)
        })
    }

    fn add_fields(
        &self,
        current: &'a mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        with_scratch(|added| {
            write_object(added, fields);
            let Some(inner) = added.strip_prefix('{').and_then(|a| a.strip_suffix('}')) else {
                return Err(fmt::Error);
            };
            if inner.is_empty() {
                return Ok(());
            }
            let existing = &mut current.fields;
            if existing.len() <= 2 {
                // Nothing yet, or `{}`.
                existing.clear();
                existing.push_str(added);
            } else if existing.ends_with('}') {
                existing.pop();
                existing.push(',');
                existing.push_str(inner);
                existing.push('}');
            } else {
                return Err(fmt::Error);
            }
            Ok(())
        })
    }
}

/// `fields` as a JSON object, into `out`.
fn write_object<R: RecordFields>(out: &mut String, fields: R) {
    out.push('{');
    fields.record(&mut JsonObject { out, first: true });
    out.push('}');
}

thread_local! {
    /// Where span fields are formatted before they are copied to the span's own string.
    /// Written piece by piece, that string grew from empty by doubling (six reallocations
    /// for a request's span); copied once, it is allocated at its size.
    static SCRATCH: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(1024));
}

/// Runs `f` with the thread's scratch string, emptied ([`crate::scratch::with`]).
fn with_scratch<T>(f: impl FnOnce(&mut String) -> T) -> T {
    crate::scratch::with(&SCRATCH, 1024, f)
}

/// Writes visited fields as the members of a JSON object (without its braces), straight
/// into the string: through a `fmt::Write` trait object every piece was a dynamic call,
/// which made a request span's twenty strings cost about 500 instructions each. Writing to
/// a `String` cannot fail, so nothing here carries an error.
struct JsonObject<'o> {
    out: &'o mut String,
    first: bool,
}

impl JsonObject<'_> {
    fn member(&mut self, name: &str, value: impl FnOnce(&mut String)) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_json_str(self.out, name);
        self.out.push(':');
        value(self.out);
    }
}

impl tracing::field::Visit for JsonObject<'_> {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        // As serde_json writes an f64: not a number is null.
        self.member(field.name(), |out| {
            if value.is_finite() {
                put(out, format_args!("{value:?}"));
            } else {
                out.push_str("null");
            }
        });
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.member(field.name(), |out| put(out, format_args!("{value}")));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.member(field.name(), |out| put(out, format_args!("{value}")));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.member(field.name(), |out| put(out, format_args!("{value}")));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.member(field.name(), |out| write_json_str(out, value));
    }

    fn record_bytes(&mut self, field: &tracing::field::Field, value: &[u8]) {
        self.member(field.name(), |out| {
            out.push('[');
            for (i, byte) in value.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                put(out, format_args!("{byte}"));
            }
            out.push(']');
        });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let text = format!("{value:?}");
        self.member(name, |out| write_json_str(out, &text));
    }
}

/// Formats into `out`. Writing to a `String` cannot fail (only a `Display` that reports an
/// error could, and these are numbers), so there is no error to pass on.
fn put(out: &mut String, args: fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

/// Whether JSON writes `b` escaped: quote, backslash and the control characters.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` as a JSON string, quotes included.
fn write_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Ids, paths and names almost never need an escape. Testing every byte without an
    // early exit lets the test run many bytes at a time; then the string is one copy.
    if !s.bytes().fold(false, |any, b| any | needs_escape(b)) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    // Byte by byte: every character JSON escapes is ASCII, and no byte of a multi-byte
    // UTF-8 sequence is below 0x80, so the runs between escapes stay on char boundaries
    // without decoding the string.
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            put(out, format_args!("\\u{:04x}", b));
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}
