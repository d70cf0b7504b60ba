use super::*;
use edgeroute_protocol::sync::{EndpointCounts, MetricsWindow};

#[test]
fn statuses_fold_into_the_fixed_reasons() {
    assert_eq!(error_reason(StatusCode::OK), None);
    assert_eq!(error_reason(StatusCode::PARTIAL_CONTENT), None);
    assert_eq!(error_reason(StatusCode::BAD_REQUEST), Some("malformed"));
    assert_eq!(error_reason(StatusCode::UNAUTHORIZED), Some("unauthorized"));
    assert_eq!(
        error_reason(StatusCode::PAYLOAD_TOO_LARGE),
        Some("too_large")
    );
    assert_eq!(
        error_reason(StatusCode::SERVICE_UNAVAILABLE),
        Some("storage")
    );
    assert_eq!(error_reason(StatusCode::IM_A_TEAPOT), Some("internal"));
    for status in [400, 401, 403, 404, 413, 415, 416, 418, 422, 500, 503] {
        let reason = error_reason(StatusCode::from_u16(status).unwrap()).unwrap();
        assert!(ERROR_REASONS.contains(&reason), "{reason}");
    }
}

fn record(node: &str, region: &str, depth: u64) -> NodeRecord {
    NodeRecord {
        report: Report {
            node: node.into(),
            stream: node.into(),
            region: region.into(),
            boot_id: "b".into(),
            agent_version: "0".into(),
            profiles: Default::default(),
            graph: None,
            health: Default::default(),
            advertise_url: None,
            location: None,
            metrics: Default::default(),
            outbox_depth: depth,
            events: Vec::new(),
        },
        received_at_ms: 1_000,
        acked_seq: 0,
    }
}

#[test]
fn regions_beyond_the_cap_are_summed_under_other() {
    let metrics = CenterMetrics::new();
    let records: Vec<NodeRecord> = (0..MAX_REGIONS + 10)
        .map(|i| record(&format!("n{i}"), &format!("r{i:04}"), 1))
        .collect();
    metrics.refresh_fleet(&records, 1_000, &Settings::default(), &|_| {
        RolloutSpec::default()
    });
    let text = metrics.encode().unwrap();
    let regions: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("edgeroute_center_region_outbox_events{"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(regions.len(), MAX_REGIONS + 1);
    assert!(text.contains("edgeroute_center_region_outbox_events{region=\"other\"} 10"));
    assert!(text.contains("edgeroute_center_nodes{region=\"other\",state=\"online\"} 10"));
    // A later scrape with fewer regions drops the ones that are gone.
    metrics.refresh_fleet(&records[..1], 1_000, &Settings::default(), &|_| {
        RolloutSpec::default()
    });
    let text = metrics.encode().unwrap();
    assert!(!text.contains("region=\"other\""));
    assert!(!text.contains("r0001"));
}

#[test]
fn counters_are_named_by_their_samples_in_the_text_format() {
    let metrics = CenterMetrics::new();
    metrics.sync_answered("report", StatusCode::OK, false);
    let text = open_metrics_to_text(&metrics.encode().unwrap());
    assert!(text.contains("# HELP edgeroute_center_sync_reports_total Sync reports"));
    assert!(text.contains("# TYPE edgeroute_center_sync_reports_total counter"));
    assert!(text.contains("edgeroute_center_sync_reports_total{result=\"ok\"} 1"));
    assert!(text.contains("# TYPE edgeroute_center_sync_ingest_duration_seconds histogram"));
    assert!(!text.contains("# EOF"));
}

fn window(requests: u64, server_errors: u64, latency_ms: &[f64]) -> MetricsWindow {
    let mut window = MetricsWindow {
        window_ms: 5_000,
        ..MetricsWindow::default()
    };
    window.endpoints.insert(
        "route".into(),
        EndpointCounts {
            requests,
            server_errors,
            ..EndpointCounts::default()
        },
    );
    for ms in latency_ms {
        window.latency.observe(*ms);
    }
    window
}

#[test]
fn region_service_figures_come_from_online_nodes_beside_the_policy() {
    let metrics = CenterMetrics::new();
    let mut records = vec![
        record("a", "porto", 0),
        record("b", "porto", 0),
        record("c", "porto", 0),
    ];
    records[0].report.metrics = window(100, 2, &[3.0; 98]);
    records[1].report.metrics = window(300, 4, &[900.0; 2]);
    // Silent for longer than the stale threshold: its window is history, not service.
    records[2].report.metrics = window(1_000, 1_000, &[5_000.0]);
    records[2].received_at_ms = 0;
    let strict = RolloutSpec {
        max_error_rate: 0.01,
        max_p99_latency_ms: 250,
        ..RolloutSpec::default()
    };
    let now = 16_000;
    for r in &mut records[..2] {
        r.received_at_ms = now;
    }
    metrics.refresh_fleet(&records, now, &Settings::default(), &|region| {
        assert_eq!(region, "porto");
        strict.clone()
    });
    let text = metrics.encode().unwrap();
    // (100 + 300) requests in two 5 s windows; 6 of them 5xx.
    assert!(
        text.contains(r#"edgeroute_center_region_requests_per_second{region="porto"} 80.0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"edgeroute_center_region_error_ratio{region="porto"} 0.015"#),
        "{text}"
    );
    // 100 observations, the 99th of them in the 900 ms one's bucket (1 s).
    assert!(
        text.contains(r#"edgeroute_center_region_p99_seconds{region="porto"} 1.0"#),
        "{text}"
    );
    assert!(text.contains(r#"edgeroute_center_region_max_error_ratio{region="porto"} 0.01"#));
    assert!(text.contains(r#"edgeroute_center_region_max_p99_seconds{region="porto"} 0.25"#));
}
