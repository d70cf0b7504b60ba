use super::*;

#[test]
fn exposition_has_templates_graph_and_build() {
    let metrics = Metrics::new();
    let labels = HttpLabels {
        endpoint: "/route/v1/{profile}/{coordinates}".into(),
        method: "GET",
        code: 200,
    };
    metrics.observe_request(&labels, 0.001, None);
    metrics.graph_activated("monaco-1", "abcd", 10);
    metrics.graph_activated("monaco-2", "ef01", 12);
    let text = metrics.encode().unwrap();
    assert!(text.contains(
        "edgeroute_agent_http_requests_total{endpoint=\"/route/v1/{profile}/{coordinates}\",method=\"GET\",code=\"200\"} 1"
    ));
    assert!(text.contains("edgeroute_agent_http_request_duration_seconds_bucket"));
    assert!(text.contains("edgeroute_agent_build_info{version="));
    assert!(
        !text.contains("monaco-1"),
        "the old graph version is cleared"
    );
    assert!(text.contains("edgeroute_agent_graph_info{version=\"monaco-2\",checksum=\"ef01\"} 1"));
}

/// The families of a 0.0.4 exposition: every sample's family has `HELP` and `TYPE`.
fn text_is_complete(text: &str) -> Result<(), String> {
    let mut help = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        } else if line.starts_with('#') {
            return Err(format!("unexpected comment line {line:?}"));
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            if !help.contains(family) || !typed.contains(family) {
                return Err(format!("sample {name} has no HELP or TYPE for {family}"));
            }
        }
    }
    Ok(())
}

#[test]
fn text_format_names_every_family_and_has_no_eof() {
    let metrics = Metrics::new();
    metrics.observe_request(
        &HttpLabels {
            endpoint: "/healthz".into(),
            method: "GET",
            code: 200,
        },
        0.01,
        Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    );
    metrics.graph_activated("v", "abcd", 1);
    let text = metrics.encode_as(Format::Text).unwrap();
    text_is_complete(&text).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE edgeroute_agent_http_requests_total counter"));
    assert!(text.contains("# HELP edgeroute_agent_graph_swaps_total "));
    assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(text.contains("process_resident_memory_bytes "));
    // The exemplar is OpenMetrics syntax: the 0.0.4 text drops it.
    assert!(!text.contains("trace_id"), "{text}");
    let open = metrics.encode_as(Format::OpenMetrics).unwrap();
    assert!(open.ends_with("# EOF\n"));
    assert!(
        open.lines().any(
            |l| l.starts_with("edgeroute_agent_http_request_duration_seconds_bucket")
                && l.contains(" # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.01")
        ),
        "{open}"
    );
    assert!(open.contains("# TYPE edgeroute_agent_http_requests counter"));
}

#[test]
fn open_metrics_only_when_asked() {
    for (accept, format) in [
        (None, Format::Text),
        (Some("text/plain"), Format::Text),
        (Some("*/*"), Format::Text),
        (
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            Format::OpenMetrics,
        ),
        (Some("application/openmetrics-text; q=0"), Format::Text),
    ] {
        assert_eq!(Format::negotiate(accept), format, "{accept:?}");
    }
}
