use super::*;

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_764_700_000_123), "2025-12-02T18:26:40.123Z");
    assert_eq!(rfc3339(u64::MAX), "");
}

#[test]
fn histogram_quantiles_read_bucket_bounds() {
    let mut h = Histogram::default();
    assert_eq!(h.quantile_ms(0.99), None);
    for _ in 0..98 {
        h.observe(0.8);
    }
    h.observe(4.0);
    h.observe(60_000.0);
    assert_eq!(h.total(), 100);
    assert_eq!(h.quantile_ms(0.5), Some(1.0));
    assert_eq!(h.quantile_ms(0.99), Some(5.0));
    assert_eq!(h.quantile_ms(1.0), Some(10_000.0));
    assert_eq!(h.quantile_ms(1.5), None);
    let mut sum = Histogram::default();
    sum.merge(&h);
    sum.merge(&h);
    assert_eq!(sum.total(), 200);
    // A histogram from a peer with fewer buckets adds what fits, never panics.
    sum.merge(&Histogram { counts: vec![1] });
    assert_eq!(sum.total(), 201);
}

#[test]
fn raw_events_keep_their_bytes_and_headers_read_cheaply() {
    let event = Event {
        seq: 3,
        at_ms: 1,
        kind: EventKind::GraphFailed {
            version: "v".into(),
            error: "cut".into(),
        },
    };
    let typed = Report {
        node: "n".into(),
        stream: "s".into(),
        region: "r".into(),
        boot_id: "b".into(),
        agent_version: "0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health::default(),
        advertise_url: None,
        location: None,
        metrics: MetricsWindow::default(),
        outbox_depth: 1,
        events: vec![event.clone()],
    };
    let json = serde_json::to_string(&typed).unwrap();
    let raw: Report<RawEvent> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        serde_json::to_string(&raw).unwrap(),
        json,
        "the same wire format"
    );
    assert_eq!(
        EventHeader::of(&raw.events[0]).unwrap(),
        EventHeader { seq: 3, plan: None }
    );
    let back: Event = serde_json::from_str(raw.events[0].get()).unwrap();
    assert_eq!(back, event);
    let bare: Report<RawEvent> = raw.without_events();
    assert!(bare.events.is_empty());
}

#[test]
fn events_round_trip_with_their_type_tag() {
    let event = Event {
        seq: 7,
        at_ms: 1,
        kind: EventKind::GraphActivated {
            version: "v2".into(),
            sha256: "ab".into(),
            previous: Some("v1".into()),
            reason: "directive".into(),
        },
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["type"], "graph_activated");
    assert_eq!(json["seq"], 7);
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
}

#[test]
fn windows_merge_by_endpoint_and_bucket() {
    let mut a = MetricsWindow {
        window_ms: 5_000,
        ..MetricsWindow::default()
    };
    let route = a.endpoints.entry("route".into()).or_default();
    route.requests = 10;
    route.server_errors = 1;
    route.codes.insert("NoRoute".into(), 2);
    a.latency.observe(0.3);
    let mut b = a.clone();
    b.merge(&a);
    assert_eq!(b.window_ms, 10_000);
    assert_eq!(b.requests(), 20);
    assert_eq!(b.server_errors(), 2);
    assert_eq!(b.endpoints["route"].codes["NoRoute"], 4);
    assert_eq!(b.latency.total(), 2);
}

fn directive(version: &str) -> GraphDirective {
    GraphDirective {
        version: version.into(),
        sha256: "ab".repeat(32),
        size_bytes: 10,
        url: format!("/sync/v1/graphs/{version}"),
    }
}

#[test]
fn directives_without_profiles_keep_the_old_wire_format() {
    // A center without profiles sends exactly what an old agent expects.
    let plain = Directives {
        graph: Some(directive("porto-car")),
        ..Directives::default()
    };
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("profile_graphs").is_none(), "{json}");
    // An old center's answer (no field) reads as "no profiles" on a new agent.
    let old = serde_json::json!({
        "graph": {"version": "porto-car", "sha256": "ab".repeat(32), "size_bytes": 10,
                  "url": "/sync/v1/graphs/porto-car"},
        "sync_interval_ms": 500
    });
    let read: Directives = serde_json::from_value(old).unwrap();
    assert!(read.profile_graphs.is_empty());
    assert_eq!(read.graph, plain.graph);
}

#[test]
fn profile_graphs_travel_and_old_readers_ignore_them() {
    let mut new = Directives {
        graph: Some(directive("porto-car")),
        ..Directives::default()
    };
    new.profile_graphs
        .insert("truck".into(), directive("porto-truck"));
    let json = serde_json::to_value(&new).unwrap();
    assert_eq!(json["profile_graphs"]["truck"]["version"], "porto-truck");
    assert_eq!(
        serde_json::from_value::<Directives>(json.clone()).unwrap(),
        new
    );

    /// What an agent before profiles decoded directives into.
    #[derive(Debug, serde::Deserialize)]
    struct OldDirectives {
        graph: Option<GraphDirective>,
        #[allow(dead_code)]
        sync_interval_ms: Option<u64>,
    }
    let old: OldDirectives = serde_json::from_value(json).unwrap();
    assert_eq!(old.graph, new.graph);
}

#[test]
fn reports_carry_profiles_only_when_there_are_some() {
    let mut report: Report = serde_json::from_value(serde_json::json!({
        "node": "n", "stream": "s", "region": "r", "boot_id": "b", "agent_version": "0",
        "health": {"ready": true}, "metrics": {"window_ms": 0}, "outbox_depth": 0
    }))
    .unwrap();
    assert!(report.profiles.is_empty(), "an old agent's report reads");
    assert!(
        serde_json::to_value(&report)
            .unwrap()
            .get("profiles")
            .is_none(),
        "an old center sees no new field"
    );
    report.profiles.insert(
        "truck".into(),
        GraphRef {
            version: "porto-truck".into(),
            sha256: "cd".repeat(32),
            bbox: None,
        },
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["profiles"]["truck"]["version"], "porto-truck");
    assert_eq!(serde_json::from_value::<Report>(json).unwrap(), report);
}
