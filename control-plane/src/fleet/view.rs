//! The fleet in memory: every node's last report and a bounded history of its reports,
//! loaded from the store once at start and updated by every ingested report.
//!
//! The node list is read every couple of seconds by every open dashboard, and discovery
//! reads it for every redirect; decoding every node record from the store for each of those
//! would grow with fleet size times viewers. The store stays the durable truth (a restart
//! reloads the last reports from it); the history is memory only and starts empty when the
//! center restarts.
//!
//! Memory is bounded: a node keeps at most [`HistoryConfig::points`] compact points, and
//! only the first [`HistoryConfig::max_nodes`] nodes seen get a history at all.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, VecDeque},
    sync::RwLock,
};

use edgeroute_protocol::{
    fleet::{FleetCounts, FleetNode, HistoryPoint, NodeDetail, NodePage, WindowStats},
    sync::{MetricsWindow, NodeState, RawEvent, Report, rfc3339},
};

use super::{node_status, state_of};
use crate::{serve::Settings, sync::store::NodeRecord};

/// How much history the view keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Points kept per node, the one still filling included.
    pub points: usize,
    /// Time one point covers at most: reports arriving within it are merged.
    pub point_ms: u64,
    /// Nodes that get a history; later ones are listed without one.
    pub max_nodes: usize,
}

impl Default for HistoryConfig {
    /// 120 points of 30 s: the last hour. About 6 KB per node, 60 MB for 10,000 nodes.
    fn default() -> Self {
        Self {
            points: 120,
            point_ms: 30_000,
            max_nodes: 10_000,
        }
    }
}

/// A closed history point, kept small because there are `points × nodes` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    at_ms: u64,
    reports: u32,
    window_ms: u32,
    requests: u32,
    client_errors: u32,
    server_errors: u32,
    p50_ms: Option<f32>,
    p99_ms: Option<f32>,
    outbox_depth: u64,
    acked_seq: u64,
}

/// The point still filling: full counts and a histogram, so its percentiles are exact
/// over every report merged into it.
#[derive(Debug, Clone)]
struct OpenPoint {
    started_ms: u64,
    at_ms: u64,
    reports: u32,
    window: MetricsWindow,
    outbox_depth: u64,
    acked_seq: u64,
}

fn narrow(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl OpenPoint {
    fn new(at_ms: u64) -> Self {
        Self {
            started_ms: at_ms,
            at_ms,
            reports: 0,
            window: MetricsWindow::default(),
            outbox_depth: 0,
            acked_seq: 0,
        }
    }

    fn add(&mut self, at_ms: u64, window: &MetricsWindow, outbox_depth: u64, acked_seq: u64) {
        self.at_ms = at_ms;
        self.reports = self.reports.saturating_add(1);
        // Only the totals are charted: keep them, not a map entry per endpoint.
        self.window.window_ms += window.window_ms;
        let totals = self.window.endpoints.entry(String::new()).or_default();
        for counts in window.endpoints.values() {
            totals.requests += counts.requests;
            totals.client_errors += counts.client_errors;
            totals.server_errors += counts.server_errors;
        }
        self.window.latency.merge(&window.latency);
        self.outbox_depth = outbox_depth;
        self.acked_seq = acked_seq;
    }

    fn close(&self) -> Point {
        let stats = window_stats(&self.window);
        Point {
            at_ms: self.at_ms,
            reports: self.reports,
            window_ms: narrow(stats.window_ms),
            requests: narrow(stats.requests),
            client_errors: narrow(stats.client_errors),
            server_errors: narrow(stats.server_errors),
            p50_ms: stats.p50_ms.map(|v| v as f32),
            p99_ms: stats.p99_ms.map(|v| v as f32),
            outbox_depth: self.outbox_depth,
            acked_seq: self.acked_seq,
        }
    }
}

impl Point {
    fn wire(&self) -> HistoryPoint {
        let mut window = counts_stats(
            u64::from(self.window_ms),
            u64::from(self.requests),
            u64::from(self.client_errors),
            u64::from(self.server_errors),
        );
        window.p50_ms = self.p50_ms.map(f64::from);
        window.p99_ms = self.p99_ms.map(f64::from);
        HistoryPoint {
            at_ms: self.at_ms,
            reports: self.reports,
            window,
            outbox_depth: self.outbox_depth,
            acked_seq: self.acked_seq,
        }
    }
}

/// A node's recent reports: closed points, oldest first, and the one filling.
#[derive(Debug, Clone)]
pub struct History {
    closed: VecDeque<Point>,
    open: Option<OpenPoint>,
    config: HistoryConfig,
}

impl History {
    /// An empty history.
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            closed: VecDeque::new(),
            open: None,
            config,
        }
    }

    /// Merge one report received at `at_ms` into the history.
    pub fn add(&mut self, at_ms: u64, window: &MetricsWindow, outbox_depth: u64, acked_seq: u64) {
        let open = match self.open.take() {
            Some(open) if at_ms < open.started_ms.saturating_add(self.config.point_ms) => open,
            Some(full) => {
                self.closed.push_back(full.close());
                OpenPoint::new(at_ms)
            }
            None => OpenPoint::new(at_ms),
        };
        let open = self.open.insert(open);
        open.add(at_ms, window, outbox_depth, acked_seq);
        let keep_closed = self.config.points.saturating_sub(1);
        while self.closed.len() > keep_closed {
            self.closed.pop_front();
        }
    }

    /// Points, oldest first, the one filling last.
    pub fn points(&self) -> Vec<HistoryPoint> {
        let open = self.open.iter().map(|o| o.close().wire());
        self.closed.iter().map(Point::wire).chain(open).collect()
    }

    /// Points held (the one filling included).
    pub fn len(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    /// Whether no report was merged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn counts_stats(
    window_ms: u64,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
) -> WindowStats {
    WindowStats {
        window_ms,
        requests,
        request_rate: if window_ms == 0 {
            0.0
        } else {
            requests as f64 * 1000.0 / window_ms as f64
        },
        client_errors,
        server_errors,
        error_rate: if requests == 0 {
            0.0
        } else {
            server_errors as f64 / requests as f64
        },
        p50_ms: None,
        p99_ms: None,
    }
}

/// The rates and percentiles of one metrics window. Percentiles are the upper bound of the
/// histogram bucket they fall in, as `histogram_quantile` reads them without interpolation.
pub fn window_stats(window: &MetricsWindow) -> WindowStats {
    let client_errors = window.endpoints.values().map(|e| e.client_errors).sum();
    let mut stats = counts_stats(
        window.window_ms,
        window.requests(),
        client_errors,
        window.server_errors(),
    );
    stats.p50_ms = window.latency.quantile_ms(0.5);
    stats.p99_ms = window.latency.quantile_ms(0.99);
    stats
}

/// What the view keeps of one ingested report: the report without its events.
#[derive(Debug, Clone)]
pub struct Seen(Report<RawEvent>);

impl Seen {
    /// Copy what the view needs before the report moves into the store (the events, which
    /// can be megabytes, are not copied).
    pub fn of(report: &Report<RawEvent>) -> Self {
        Seen(Report {
            node: report.node.clone(),
            stream: report.stream.clone(),
            region: report.region.clone(),
            boot_id: report.boot_id.clone(),
            agent_version: report.agent_version.clone(),
            graph: report.graph.clone(),
            health: report.health.clone(),
            advertise_url: report.advertise_url.clone(),
            location: report.location,
            metrics: report.metrics.clone(),
            outbox_depth: report.outbox_depth,
            events: Vec::new(),
        })
    }
}

#[derive(Debug, Default)]
struct Nodes {
    by_name: BTreeMap<String, Entry>,
    /// Entries with a history, against [`HistoryConfig::max_nodes`].
    histories: usize,
}

#[derive(Debug)]
struct Entry {
    record: NodeRecord,
    /// When it last came back after being silent past the stale threshold.
    online_since_ms: u64,
    history: Option<History>,
}

/// Sort orders of the node list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By node name.
    #[default]
    Node,
    /// By region, then name.
    Region,
    /// Online, stale, offline, then name.
    State,
    /// By age of the last report, youngest first.
    Age,
    /// By request rate of the last window.
    Rate,
    /// By error rate of the last window.
    Errors,
    /// By p99 latency of the last window (nodes without requests first).
    P99,
    /// By outbox depth.
    Outbox,
}

impl SortKey {
    /// Parse `name` or `-name` (descending).
    pub fn parse(raw: &str) -> Option<(SortKey, bool)> {
        let (desc, name) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let key = match name {
            "node" => SortKey::Node,
            "region" => SortKey::Region,
            "state" => SortKey::State,
            "age" => SortKey::Age,
            "rate" => SortKey::Rate,
            "errors" => SortKey::Errors,
            "p99" => SortKey::P99,
            "outbox" => SortKey::Outbox,
            _ => return None,
        };
        Some((key, desc))
    }

    /// The accepted names, for error messages.
    pub const NAMES: &'static str =
        "node, region, state, age, rate, errors, p99, outbox (prefix - to reverse)";
}

/// Which nodes to list and in what order.
#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    /// Only this region.
    pub region: Option<String>,
    /// Only these states (empty: every state).
    pub states: Vec<NodeState>,
    /// Only nodes whose name contains this (case-insensitive).
    pub name_contains: Option<String>,
    /// Only nodes needing attention.
    pub attention: bool,
    /// Order.
    pub sort: SortKey,
    /// Reverse the order.
    pub descending: bool,
    /// Skip this many matching nodes.
    pub offset: usize,
    /// At most this many.
    pub limit: usize,
}

/// Cheap facts about an entry at `now`, for filtering, counting and sorting.
struct Facts<'a> {
    entry: &'a Entry,
    state: NodeState,
    attention: bool,
    stats: WindowStats,
}

/// The fleet in memory. Reads take a shared lock for the length of one page's work.
#[derive(Debug)]
pub struct FleetView {
    nodes: RwLock<Nodes>,
    settings: Settings,
    config: HistoryConfig,
}

impl FleetView {
    /// A view of `records` (the store's nodes at start), judging states by `settings`.
    pub fn load(
        records: impl IntoIterator<Item = NodeRecord>,
        settings: &Settings,
        config: HistoryConfig,
    ) -> Self {
        let view = Self {
            nodes: RwLock::new(Nodes::default()),
            settings: settings.clone(),
            config,
        };
        for record in records {
            view.put(record, false);
        }
        view
    }

    /// Record a report the store accepted at `received_at_ms` with watermark `acked_seq`.
    pub fn record(&self, seen: Seen, received_at_ms: u64, acked_seq: u64) {
        self.put(
            NodeRecord {
                report: seen.0,
                received_at_ms,
                acked_seq,
            },
            true,
        );
    }

    /// Fold in a report another replica ingested (read back from the shared store): the
    /// record only, no history point, and only if it is not older than the one held.
    pub fn merge(&self, seen: Seen, received_at_ms: u64, acked_seq: u64) {
        self.put(
            NodeRecord {
                report: seen.0,
                received_at_ms,
                acked_seq,
            },
            false,
        );
    }

    fn put(&self, record: NodeRecord, with_history: bool) {
        let mut guard = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let nodes = &mut *guard;
        let new_history = with_history && nodes.histories < self.config.max_nodes;
        let at = record.received_at_ms;
        match nodes.by_name.get_mut(&record.report.node) {
            Some(entry) => {
                // Two reports of one node racing through the store: keep the later one.
                if at < entry.record.received_at_ms {
                    return;
                }
                let silence = at - entry.record.received_at_ms;
                if silence > self.settings.stale_after_ms {
                    entry.online_since_ms = at;
                }
                if with_history {
                    if entry.history.is_none() && new_history {
                        entry.history = Some(History::new(self.config));
                        nodes.histories += 1;
                    }
                    if let Some(h) = &mut entry.history {
                        h.add(
                            at,
                            &record.report.metrics,
                            record.report.outbox_depth,
                            record.acked_seq,
                        );
                    }
                }
                entry.record = record;
            }
            None => {
                let mut history = new_history.then(|| History::new(self.config));
                if let Some(h) = &mut history {
                    h.add(
                        at,
                        &record.report.metrics,
                        record.report.outbox_depth,
                        record.acked_seq,
                    );
                    nodes.histories += 1;
                }
                nodes.by_name.insert(
                    record.report.node.clone(),
                    Entry {
                        record,
                        online_since_ms: at,
                        history,
                    },
                );
            }
        }
    }

    fn facts<'a>(&self, entry: &'a Entry, now_ms: u64) -> Facts<'a> {
        let age = now_ms.saturating_sub(entry.record.received_at_ms);
        let stats = window_stats(&entry.record.report.metrics);
        let health = &entry.record.report.health;
        let attention = stats.server_errors > 0 || health.graph_error.is_some() || !health.ready;
        Facts {
            entry,
            state: state_of(age, &self.settings),
            attention,
            stats,
        }
    }

    fn fleet_node(&self, facts: Facts<'_>, now_ms: u64) -> FleetNode {
        let e = facts.entry;
        let since = match facts.state {
            NodeState::Online => e.online_since_ms,
            NodeState::Stale => e
                .record
                .received_at_ms
                .saturating_add(self.settings.stale_after_ms),
            NodeState::Offline => e
                .record
                .received_at_ms
                .saturating_add(self.settings.offline_after_ms),
        };
        FleetNode {
            status: node_status(e.record.clone(), now_ms, &self.settings),
            state_since: rfc3339(since),
            state_for_ms: now_ms.saturating_sub(since),
            last_window: facts.stats,
            attention: facts.attention,
        }
    }

    /// One page of the nodes matching `filter` at `now_ms`, and counts of the whole fleet.
    pub fn page(&self, filter: &NodeFilter, now_ms: u64) -> NodePage {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut counts = FleetCounts::default();
        let needle = filter.name_contains.as_deref().map(str::to_lowercase);
        let mut matching: Vec<Facts<'_>> = Vec::new();
        for entry in nodes.by_name.values() {
            let facts = self.facts(entry, now_ms);
            let region = &entry.record.report.region;
            counts.all.add(facts.state, facts.attention);
            match counts.regions.get_mut(region) {
                Some(c) => c.add(facts.state, facts.attention),
                None => {
                    let mut c = edgeroute_protocol::fleet::StateCounts::default();
                    c.add(facts.state, facts.attention);
                    counts.regions.insert(region.clone(), c);
                }
            }
            let keep = filter.region.as_ref().is_none_or(|r| r == region)
                && (filter.states.is_empty() || filter.states.contains(&facts.state))
                && (!filter.attention || facts.attention)
                && needle
                    .as_ref()
                    .is_none_or(|n| entry.record.report.node.to_lowercase().contains(n));
            if keep {
                matching.push(facts);
            }
        }
        sort(&mut matching, filter.sort, filter.descending);
        let total = matching.len();
        let page = matching
            .into_iter()
            .skip(filter.offset)
            .take(filter.limit)
            .map(|f| self.fleet_node(f, now_ms))
            .collect();
        NodePage {
            nodes: page,
            total,
            offset: filter.offset,
            limit: filter.limit,
            counts,
        }
    }

    /// One node with its history, if it ever reported.
    pub fn detail(&self, node: &str, now_ms: u64) -> Option<NodeDetail> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let entry = nodes.by_name.get(node)?;
        let history = entry
            .history
            .as_ref()
            .map(History::points)
            .unwrap_or_default();
        Some(NodeDetail {
            node: self.fleet_node(self.facts(entry, now_ms), now_ms),
            history,
            history_point_ms: self.config.point_ms,
        })
    }

    /// A copy of every node's last record, by name.
    pub fn records(&self) -> Vec<NodeRecord> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.by_name.values().map(|e| e.record.clone()).collect()
    }
}

fn by_option(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn sort(facts: &mut [Facts<'_>], key: SortKey, descending: bool) {
    facts.sort_by(|a, b| {
        let (ra, rb) = (&a.entry.record, &b.entry.record);
        let primary = match key {
            SortKey::Node => Ordering::Equal,
            SortKey::Region => ra.report.region.cmp(&rb.report.region),
            SortKey::State => a.state.cmp(&b.state),
            // Oldest report = largest age = smallest receive time.
            SortKey::Age => rb.received_at_ms.cmp(&ra.received_at_ms),
            SortKey::Rate => a.stats.request_rate.total_cmp(&b.stats.request_rate),
            SortKey::Errors => a.stats.error_rate.total_cmp(&b.stats.error_rate),
            SortKey::P99 => by_option(a.stats.p99_ms, b.stats.p99_ms),
            SortKey::Outbox => ra.report.outbox_depth.cmp(&rb.report.outbox_depth),
        };
        let primary = if descending {
            primary.reverse()
        } else {
            primary
        };
        // Ties keep name order whatever the direction, so pages never shuffle.
        primary.then_with(|| {
            let names = ra.report.node.cmp(&rb.report.node);
            if descending && key == SortKey::Node {
                names.reverse()
            } else {
                names
            }
        })
    });
}

#[cfg(test)]
mod tests;
