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

use std::{cmp::Ordering, collections::BTreeMap, sync::RwLock};

use edgeroute_protocol::{
    fleet::{FleetCounts, FleetNode, NodeDetail, NodePage, WindowStats},
    sync::{NodeState, RawEvent, Report, rfc3339},
};

use super::{node_status, state_of};
use crate::{serve::Settings, sync::store::NodeRecord};

mod history;

pub use history::{History, HistoryConfig, window_stats};

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
            profiles: report.profiles.clone(),
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

    /// Drop a node (forgotten through the API); whether it was held.
    pub fn forget(&self, node: &str) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        Self::remove(&mut nodes, node)
    }

    /// Drop the nodes not in `known` (the shared store's names, read at `read_at_ms`)
    /// whose last report is older than that read: another replica forgot them. A node
    /// whose report arrived after the read may be missing from it only because it is new.
    /// Returns how many were dropped.
    pub fn forget_unknown(
        &self,
        known: &std::collections::BTreeSet<String>,
        read_at_ms: u64,
    ) -> usize {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = nodes
            .by_name
            .iter()
            .filter(|(name, e)| !known.contains(*name) && e.record.received_at_ms < read_at_ms)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            Self::remove(&mut nodes, name);
        }
        gone.len()
    }

    fn remove(nodes: &mut Nodes, node: &str) -> bool {
        match nodes.by_name.remove(node) {
            Some(entry) => {
                if entry.history.is_some() {
                    nodes.histories -= 1;
                }
                true
            }
            None => false,
        }
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
