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

/// The JSON lines `log` writes inside the subscriber `init` installs without an exporter
/// (trace ids from [`super::local`]), sampling new traces at `ratio`.
fn json_lines_without_export(ratio: f64, log: impl FnOnce()) -> Vec<serde_json::Value> {
    use tracing_subscriber::layer::SubscriberExt;
    let out = Captured::default();
    let writer = out.clone();
    let (capture, format) = log::JsonWithTrace::new();
    let args = TraceArgs {
        trace_sample_ratio: ratio,
        ..TraceArgs::default()
    };
    let subscriber = tracing_subscriber::registry()
        .with(super::local::LocalTraceContext::new(super::sampler(&args)))
        .with(capture)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .event_format(format)
                .fmt_fields(log::JsonSpanFields),
        );
    tracing::subscriber::with_default(subscriber, log);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn traceparent_headers(flags: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let value = format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-{flags}");
    headers.insert("traceparent", value.parse().unwrap());
    headers
}

#[test]
fn without_an_exporter_a_client_trace_reaches_the_logs_and_the_traceparents() {
    let mut seen = None;
    let lines = json_lines_without_export(1.0, || {
        let request = tracing::info_span!("request");
        set_parent_from_headers(&request, &traceparent_headers("01"));
        let _entered = request.enter();
        tracing::info!("in the request");
        let work = tracing::info_span!("work");
        let _entered = work.enter();
        tracing::info!("in its child");
        let mut outgoing = http::HeaderMap::new();
        inject_headers(&work, &mut outgoing);
        seen = Some((traceparent(&request), outgoing));
    });
    let (request_traceparent, outgoing) = seen.unwrap();
    let [request_line, child_line] = &lines[..] else {
        panic!("two lines: {lines:?}");
    };
    for line in [request_line, child_line] {
        assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
    }
    let request_span = request_line["span_id"].as_str().unwrap();
    let child_span = child_line["span_id"].as_str().unwrap();
    assert_eq!(request_span.len(), 16);
    assert_ne!(
        request_span, "00f067aa0ba902b7",
        "a span of its own under the client's"
    );
    assert_ne!(request_span, child_span);
    assert_eq!(
        request_traceparent.as_deref(),
        Some(format!("00-{CLIENT_TRACE}-{request_span}-01").as_str())
    );
    assert_eq!(
        outgoing["traceparent"],
        format!("00-{CLIENT_TRACE}-{child_span}-01")
    );
}

#[test]
fn without_an_exporter_new_traces_are_sampled_at_the_ratio_and_clients_are_followed() {
    let mut parents = Vec::new();
    json_lines_without_export(1.0, || {
        parents.push(traceparent(&tracing::info_span!("root")));
        let unsampled_client = tracing::info_span!("request");
        set_parent_from_traceparent(
            &unsampled_client,
            &format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-00"),
        );
        parents.push(traceparent(&unsampled_client));
    });
    json_lines_without_export(0.0, || {
        let root = tracing::info_span!("root");
        parents.push(traceparent(&root));
        parents.push(traceparent(&tracing::info_span!(parent: &root, "child")));
        let sampled_client = tracing::info_span!("request");
        set_parent_from_headers(&sampled_client, &traceparent_headers("01"));
        parents.push(traceparent(&sampled_client));
    });
    let parents: Vec<String> = parents.into_iter().map(Option::unwrap).collect();
    let flags: Vec<&str> = parents.iter().map(|p| &p[53..]).collect();
    assert_eq!(flags, ["01", "00", "00", "00", "01"], "{parents:?}");
    let root_trace = &parents[2][3..35];
    assert_ne!(root_trace, "0".repeat(32));
    assert_eq!(
        &parents[3][3..35],
        root_trace,
        "a child stays in its parent's trace"
    );
    assert_eq!(&parents[1][3..35], CLIENT_TRACE);
    assert_eq!(&parents[4][3..35], CLIENT_TRACE);
}
