use edgeroute_protocol::sync::{EndpointCounts, Health, Histogram, MetricsWindow, Report};

use super::*;

fn settings() -> Settings {
    Settings {
        stale_after_ms: 15_000,
        offline_after_ms: 60_000,
        ..Settings::default()
    }
}

fn window(requests: u64, server_errors: u64, latency_ms: f64) -> MetricsWindow {
    let mut latency = Histogram::default();
    for _ in 0..requests {
        latency.observe(latency_ms);
    }
    MetricsWindow {
        window_ms: 1000,
        endpoints: [(
            "route".to_owned(),
            EndpointCounts {
                requests,
                server_errors,
                ..EndpointCounts::default()
            },
        )]
        .into(),
        latency,
        ..MetricsWindow::default()
    }
}

fn report(node: &str, region: &str, metrics: MetricsWindow) -> Report<RawEvent> {
    Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: region.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health {
            ready: true,
            ..Health::default()
        },
        advertise_url: None,
        location: None,
        metrics,
        outbox_depth: 0,
        events: Vec::new(),
    }
}

fn view(config: HistoryConfig) -> FleetView {
    FleetView::load([], &settings(), config)
}

fn names(page: &NodePage) -> Vec<&str> {
    page.nodes.iter().map(|n| n.status.node.as_str()).collect()
}

fn filter() -> NodeFilter {
    NodeFilter {
        limit: 100,
        ..NodeFilter::default()
    }
}

const NOW: u64 = 1_000_000;

/// a, b, c in region north (c silent 20 s: stale), d in south (silent 2 min: offline),
/// e in south with errors.
fn fleet() -> FleetView {
    let v = view(HistoryConfig::default());
    v.record(Seen::of(&report("a", "north", window(10, 0, 1.0))), NOW, 1);
    v.record(Seen::of(&report("b", "north", window(50, 0, 40.0))), NOW, 1);
    v.record(
        Seen::of(&report("c", "north", window(0, 0, 0.0))),
        NOW - 20_000,
        1,
    );
    v.record(
        Seen::of(&report("d", "south", window(5, 0, 1.0))),
        NOW - 120_000,
        1,
    );
    v.record(Seen::of(&report("e", "south", window(20, 5, 3.0))), NOW, 1);
    v
}

#[test]
fn filters_count_and_page_the_fleet() {
    let v = fleet();
    let all = v.page(&filter(), NOW);
    assert_eq!(names(&all), ["a", "b", "c", "d", "e"]);
    assert_eq!(all.total, 5);
    let c = &all.counts;
    assert_eq!(
        (c.all.online, c.all.stale, c.all.offline, c.all.attention),
        (3, 1, 1, 1)
    );
    assert_eq!(c.regions["north"].total(), 3);
    assert_eq!(c.regions["south"].offline, 1);

    let north = v.page(
        &NodeFilter {
            region: Some("north".into()),
            ..filter()
        },
        NOW,
    );
    assert_eq!(names(&north), ["a", "b", "c"]);
    assert_eq!(north.counts, all.counts, "counts ignore the filters");

    let silent = v.page(
        &NodeFilter {
            states: vec![NodeState::Stale, NodeState::Offline],
            ..filter()
        },
        NOW,
    );
    assert_eq!(names(&silent), ["c", "d"]);
    let c = &silent.nodes[0];
    assert_eq!(c.status.state, NodeState::Stale);
    assert_eq!(
        c.state_for_ms, 5_000,
        "stale since 15 s after its last report"
    );
    assert_eq!(silent.nodes[1].state_for_ms, 60_000);

    let attention = v.page(
        &NodeFilter {
            attention: true,
            ..filter()
        },
        NOW,
    );
    assert_eq!(names(&attention), ["e"]);
    assert!((attention.nodes[0].last_window.error_rate - 0.25).abs() < 1e-9);

    let search = v.page(
        &NodeFilter {
            name_contains: Some("B".into()),
            ..filter()
        },
        NOW,
    );
    assert_eq!(names(&search), ["b"]);

    let page = v.page(
        &NodeFilter {
            offset: 2,
            limit: 2,
            ..filter()
        },
        NOW,
    );
    assert_eq!(
        (names(&page), page.total, page.offset),
        (vec!["c", "d"], 5, 2)
    );
    let past = v.page(
        &NodeFilter {
            offset: 10,
            ..filter()
        },
        NOW,
    );
    assert!(past.nodes.is_empty());
    assert_eq!(past.total, 5);
}

#[test]
fn sorts_keep_name_order_among_ties() {
    let v = fleet();
    let sorted = |sort, descending| {
        let page = v.page(
            &NodeFilter {
                sort,
                descending,
                ..filter()
            },
            NOW,
        );
        names(&page)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(sorted(SortKey::Node, true), ["e", "d", "c", "b", "a"]);
    assert_eq!(sorted(SortKey::Rate, true), ["b", "e", "a", "d", "c"]);
    assert_eq!(sorted(SortKey::Errors, true), ["e", "a", "b", "c", "d"]);
    assert_eq!(sorted(SortKey::State, false), ["a", "b", "e", "c", "d"]);
    assert_eq!(sorted(SortKey::Age, true), ["d", "c", "a", "b", "e"]);
    assert_eq!(sorted(SortKey::P99, true), ["b", "e", "a", "d", "c"]);
    assert_eq!(SortKey::parse("-p99"), Some((SortKey::P99, true)));
    assert_eq!(SortKey::parse("bogus"), None);
}

#[test]
fn percentiles_come_from_the_histogram() {
    let mut w = window(98, 0, 0.8);
    w.latency.observe(4.0);
    w.latency.observe(60_000.0);
    w.endpoints.get_mut("route").unwrap().requests = 100;
    let s = window_stats(&w);
    assert_eq!(s.p50_ms, Some(1.0), "the median's bucket bound");
    assert_eq!(s.p99_ms, Some(5.0));
    assert_eq!(s.request_rate, 100.0);
    let empty = window_stats(&MetricsWindow::default());
    assert_eq!(
        (empty.p50_ms, empty.p99_ms, empty.request_rate),
        (None, None, 0.0)
    );
}

#[test]
fn history_merges_reports_per_point_and_keeps_a_bounded_ring() {
    let config = HistoryConfig {
        points: 4,
        point_ms: 10_000,
        max_nodes: 10,
    };
    let mut h = History::new(config);
    assert!(h.is_empty());
    // Three reports in the first 10 s merge into one point.
    h.add(0, &window(10, 0, 1.0), 3, 1);
    h.add(4_000, &window(10, 1, 1.0), 2, 2);
    h.add(9_999, &window(10, 0, 100.0), 1, 3);
    let points = h.points();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(
        (p.reports, p.at_ms, p.outbox_depth, p.acked_seq),
        (3, 9_999, 1, 3)
    );
    assert_eq!(p.window.requests, 30);
    assert_eq!(p.window.window_ms, 3_000);
    assert_eq!(p.window.request_rate, 10.0);
    assert!((p.window.error_rate - 1.0 / 30.0).abs() < 1e-9);
    assert_eq!(p.window.p50_ms, Some(1.0));
    assert_eq!(
        p.window.p99_ms,
        Some(100.0),
        "percentiles over the merged histogram"
    );
    // Later reports open new points; only the last four are kept.
    for i in 1..=10u64 {
        h.add(i * 10_000, &window(i, 0, 2.0), 0, 3 + i);
    }
    let points = h.points();
    assert_eq!(points.len(), 4);
    let at: Vec<u64> = points.iter().map(|p| p.at_ms).collect();
    assert_eq!(at, [70_000, 80_000, 90_000, 100_000]);
    assert_eq!(points[3].window.requests, 10);
    assert_eq!(points[3].window.p99_ms, Some(2.0));
}

#[test]
fn memory_stays_bounded_in_total() {
    let v = view(HistoryConfig {
        points: 2,
        point_ms: 1,
        max_nodes: 2,
    });
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        for t in 0..5 {
            v.record(
                Seen::of(&report(name, "r", window(1, 0, 1.0))),
                NOW + t,
                i as u64,
            );
        }
    }
    let len = |n| v.detail(n, NOW).unwrap().history.len();
    assert_eq!((len("a"), len("b"), len("c")), (2, 2, 0));
    assert!(v.detail("nobody", NOW).is_none());
}

#[test]
fn state_since_follows_silences_and_late_reports_are_ignored() {
    let v = view(HistoryConfig::default());
    let r = || Seen::of(&report("a", "r", window(1, 0, 1.0)));
    v.record(r(), 1_000, 1);
    v.record(r(), 6_000, 2);
    let detail = v.detail("a", 6_000).unwrap();
    assert_eq!(
        detail.node.state_for_ms, 5_000,
        "online since its first report"
    );
    // Silent past the stale threshold: back online from the new report on.
    v.record(r(), 30_000, 3);
    assert_eq!(v.detail("a", 31_000).unwrap().node.state_for_ms, 1_000);
    // A report that lost a race through the store does not overwrite a later one.
    v.record(r(), 29_000, 2);
    assert_eq!(v.detail("a", 31_000).unwrap().node.status.acked_seq, 3);
    // Loaded from the store at start: listed, without history.
    let loaded = FleetView::load(v.records(), &settings(), HistoryConfig::default());
    let d = loaded.detail("a", 31_000).unwrap();
    assert!(d.history.is_empty());
    assert_eq!(d.node.status.acked_seq, 3);
}

#[test]
fn nodes_another_replica_forgot_are_dropped_unless_newer_than_the_names() {
    let v = view(HistoryConfig::default());
    for (node, at) in [("a", 1_000), ("b", 2_000), ("c", 9_000)] {
        v.record(Seen::of(&report(node, "r", window(1, 0, 1.0))), at, 0);
    }
    let known: std::collections::BTreeSet<String> = ["a".to_owned()].into();
    // Names read at 5,000: "b" is gone from the store; "c" reported after the read and
    // may only be missing because it is new.
    assert_eq!(v.forget_unknown(&known, 5_000), 1);
    let left: Vec<String> = v.records().into_iter().map(|r| r.report.node).collect();
    assert_eq!(left, ["a", "c"]);
    assert!(v.forget("c"));
    assert!(!v.forget("c"));
    assert_eq!(v.records().len(), 1);
}
