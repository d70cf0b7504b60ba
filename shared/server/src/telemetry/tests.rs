use super::*;

#[test]
fn trace_ids_come_from_well_formed_traceparents_only() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        trace_id_of(tp).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    for bad in [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ] {
        assert_eq!(trace_id_of(bad), None, "{bad:?}");
    }
}

#[test]
fn sample_ratios_outside_zero_to_one_are_refused() {
    assert_eq!(parse_ratio("0.25"), Ok(0.25));
    assert_eq!(parse_ratio("1"), Ok(1.0));
    assert!(parse_ratio("1.5").is_err());
    assert!(parse_ratio("-0.1").is_err());
    assert!(parse_ratio("NaN").is_err());
    assert!(parse_ratio("half").is_err());
}

#[test]
fn endpoints_are_logged_without_credentials() {
    let shown = export::redact_endpoint("https://user:secret@collector:4318/v1/traces?token=x");
    assert!(
        !shown.contains("secret") && !shown.contains("token"),
        "{shown}"
    );
    assert!(shown.contains("collector:4318/v1/traces"), "{shown}");
}

#[tokio::test]
async fn a_bad_endpoint_is_a_clear_error() {
    let args = TraceArgs {
        otlp_endpoint: Some("ftp://collector/v1/traces".to_owned()),
        ..TraceArgs::default()
    };
    let Err(err) = provider("test", &args) else {
        panic!("an ftp endpoint was accepted");
    };
    assert!(err.to_string().contains("http://"), "{err}");
}

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The one JSON line `log` writes inside the subscriber the agent installs for
/// `--log-format json`, with span fields formatted by `fields`.
fn json_line<N>(fields: N, log: impl FnOnce()) -> serde_json::Value
where
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let out = Captured::default();
    let writer = out.clone();
    let (capture, format) = log::JsonWithTrace::new();
    let subscriber = tracing_subscriber::registry().with(capture).with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(format)
            .fmt_fields(fields),
    );
    tracing::subscriber::with_default(subscriber, log);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    serde_json::from_str(text.trim()).unwrap()
}

#[test]
fn span_fields_recorded_later_reach_the_json_line_and_the_last_value_wins() {
    let line = json_line(log::JsonSpanFields, || {
        let span = tracing::info_span!(
            "request",
            endpoint = "/route",
            code = tracing::field::Empty,
            profile = tracing::field::Empty,
            quoted = tracing::field::Empty,
        );
        span.record("code", 200);
        span.record("profile", "car");
        span.record("quoted", "a \"b\", {c}");
        span.record("profile", "truck");
        let _entered = span.enter();
        tracing::info!("inside");
    });
    let span = &line["span"];
    assert_eq!(span["endpoint"], "/route", "{line}");
    assert_eq!(span["code"], 200, "{line}");
    assert_eq!(span["profile"], "truck", "{line}");
    assert_eq!(span["quoted"], "a \"b\", {c}", "{line}");
    assert_eq!(line["spans"][0]["profile"], "truck", "{line}");
}

/// The `span` object of a line logged inside a span with every kind of field.
fn span_object<N>(fields: N) -> serde_json::Value
where
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
{
    let line = json_line(fields, || {
        let span = tracing::info_span!(
            "request",
            text = "tab\there \"quoted\" back\\slash \u{1} \u{7f} é ✓",
            count = 42u64,
            delta = -7i64,
            ratio = 0.1f64,
            nan = f64::NAN,
            big = 1e300f64,
            flag = true,
            debug = ?Some("x"),
            r#type = "raw",
            later = tracing::field::Empty,
        );
        span.record("later", 3u64);
        let _entered = span.enter();
        tracing::info!("inside");
    });
    line["span"].clone()
}

#[test]
fn span_fields_are_the_json_tracing_subscriber_writes() {
    let ours = span_object(log::JsonSpanFields);
    let theirs = span_object(tracing_subscriber::fmt::format::JsonFields::new());
    assert_eq!(ours, theirs);
    assert_eq!(ours["later"], 3, "{ours}");
}
