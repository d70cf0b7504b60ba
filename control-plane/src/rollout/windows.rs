//! The agents' recent metrics windows, per node, in memory: what the analysis sums into a
//! canary arm and a stable arm.
//!
//! Each report's window is kept with its arrival time and the graph the node served, in a
//! bounded ring per node (at most [`WindowConfig::per_node`] windows, none older than
//! [`WindowConfig::retention_ms`]), but only for *watched* regions: those with a running
//! rollout, and those the controller asked about recently. So memory grows with the nodes
//! under analysis, not with the fleet. After a center restart the rings are empty, so a
//! step's window effectively restarts: a verdict needs fresh reports (the rollout holds
//! meanwhile).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use edgeroute_protocol::sync::{MetricsWindow, RawEvent, Report};

use super::analysis::Arm;
use crate::sync::store::WindowSample;

/// Most windows waiting to be written to a shared store; past it the oldest are dropped
/// (the store is away: the judge then lacks some windows, and holds on too few requests).
pub const MAX_UNSHARED: usize = 100_000;

/// How much is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Windows kept per node.
    pub per_node: usize,
    /// Windows older than this are dropped (milliseconds).
    pub retention_ms: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        // An hour of reports every 5 s.
        Self {
            per_node: 720,
            retention_ms: 3_600_000,
        }
    }
}

#[derive(Debug)]
struct Sample {
    at_ms: u64,
    graph: Option<String>,
    window: MetricsWindow,
}

#[derive(Debug, Default)]
struct NodeRing {
    samples: VecDeque<Sample>,
}

/// Every node's recent windows.
#[derive(Debug, Default)]
pub struct Windows {
    config: WindowConfig,
    nodes: Mutex<HashMap<String, NodeRing>>,
    /// Region -> until when (ms) its reports are kept.
    watched: Mutex<HashMap<String, u64>>,
    /// With several replicas: the windows recorded here and not yet written to the store
    /// (`None` with one replica, which judges from memory).
    unshared: Mutex<Option<VecDeque<WindowSample>>>,
}

/// Which reports an arm counts: only those of nodes serving this graph version (a canary
/// that has not switched yet is not the new version), or every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving<'a> {
    /// Any graph.
    Any,
    /// Only this graph version.
    Graph(&'a str),
}

impl Windows {
    /// An empty set of rings.
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            nodes: Mutex::default(),
            watched: Mutex::default(),
            unshared: Mutex::default(),
        }
    }

    /// Rings holding exactly `samples` (the windows every replica wrote to the store), to
    /// judge from.
    pub fn of_samples(config: WindowConfig, samples: Vec<WindowSample>) -> Self {
        let windows = Self::new(config);
        let mut samples = samples;
        samples.sort_by_key(|s| s.at_ms);
        for s in samples {
            windows.watch(&s.region, u64::MAX);
            windows.record_window(&s.region, &s.node, s.graph, s.window, s.at_ms);
        }
        windows
    }

    /// Also queue every recorded window for the store ([`Self::take_unshared`]): several
    /// replicas judge from what all of them received.
    pub fn share(&self) {
        let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        unshared.get_or_insert_with(VecDeque::new);
    }

    /// The windows recorded since the last call, for the store.
    pub fn take_unshared(&self) -> Vec<WindowSample> {
        let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        unshared
            .as_mut()
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Put back windows the store did not take (oldest first), within the bound.
    pub fn requeue_unshared(&self, samples: Vec<WindowSample>) {
        let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = unshared.as_mut() {
            for s in samples.into_iter().rev() {
                q.push_front(s);
            }
            while q.len() > MAX_UNSHARED {
                q.pop_front();
            }
        }
    }

    /// The retention: windows older than this are of no use to a judge.
    pub fn config(&self) -> WindowConfig {
        self.config
    }

    /// Keep the reports of `region` until `until_ms` (a later time extends, an earlier one
    /// shortens: a rollout that ends stops the recording).
    pub fn watch(&self, region: &str, until_ms: u64) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.insert(region.to_owned(), until_ms);
    }

    /// Keep the reports of `region` at least until `until_ms`.
    pub fn watch_at_least(&self, region: &str, until_ms: u64) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let slot = watched.entry(region.to_owned()).or_insert(0);
        *slot = (*slot).max(until_ms);
    }

    /// End an open-ended watch (a rollout's) at `now_ms`; a watch with an end (the
    /// controller's) stays as it is.
    pub fn end_watch(&self, region: &str, now_ms: u64) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = watched.get_mut(region)
            && *until == u64::MAX
        {
            *until = now_ms;
        }
    }

    /// Whether reports of `region` arriving at `at_ms` are kept.
    pub fn is_watched(&self, region: &str, at_ms: u64) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.get(region).is_some_and(|until| at_ms <= *until)
    }

    /// Keep a report's window, received at `at_ms`, if its region is watched.
    pub fn record(&self, report: &Report<RawEvent>, at_ms: u64) {
        self.record_window(
            &report.region,
            &report.node,
            report.graph.as_ref().map(|g| g.version.clone()),
            report.metrics.clone(),
            at_ms,
        );
    }

    /// Keep `node`'s window, served on `graph`, received at `at_ms`, if `region` is watched.
    pub fn record_window(
        &self,
        region: &str,
        node: &str,
        graph: Option<String>,
        window: MetricsWindow,
        at_ms: u64,
    ) {
        if !self.is_watched(region, at_ms) {
            return;
        }
        {
            let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(q) = unshared.as_mut() {
                q.push_back(WindowSample {
                    region: region.to_owned(),
                    node: node.to_owned(),
                    at_ms,
                    graph: graph.clone(),
                    window: window.clone(),
                });
                if q.len() > MAX_UNSHARED {
                    q.pop_front();
                }
            }
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let ring = nodes.entry(node.to_owned()).or_default();
        ring.samples.push_back(Sample {
            at_ms,
            graph,
            window,
        });
        while ring.samples.len() > self.config.per_node {
            ring.samples.pop_front();
        }
        let horizon = at_ms.saturating_sub(self.config.retention_ms);
        while ring.samples.front().is_some_and(|s| s.at_ms < horizon) {
            ring.samples.pop_front();
        }
    }

    /// Drop what is older than the retention, nodes left without windows, and watches
    /// that ended.
    pub fn prune(&self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.config.retention_ms);
        {
            let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            watched.retain(|_, until| *until >= horizon);
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|_, ring| {
            while ring.samples.front().is_some_and(|s| s.at_ms < horizon) {
                ring.samples.pop_front();
            }
            !ring.samples.is_empty()
        });
    }

    /// Sum the windows of `nodes` that arrived after `since_ms` while serving `serving`.
    /// A node counts as reporting when one of those arrived after `recent_ms` too.
    pub fn arm(
        &self,
        nodes: &[String],
        serving: Serving<'_>,
        since_ms: u64,
        recent_ms: u64,
    ) -> Arm {
        let rings = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut arm = Arm {
            nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
            ..Arm::default()
        };
        for name in nodes {
            let Some(ring) = rings.get(name) else {
                continue;
            };
            let mut reported = false;
            for s in ring.samples.iter().filter(|s| s.at_ms > since_ms) {
                let matches = match serving {
                    Serving::Any => true,
                    Serving::Graph(v) => s.graph.as_deref() == Some(v),
                };
                if matches {
                    arm.window.merge(&s.window);
                    reported |= s.at_ms > recent_ms;
                }
            }
            arm.reporting_nodes += u32::from(reported);
        }
        arm
    }

    /// Windows held, over every node (for tests and the memory bound).
    pub fn len(&self) -> usize {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.values().map(|r| r.samples.len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use edgeroute_protocol::sync::{EndpointCounts, GraphRef, Health};

    use super::*;

    fn report(node: &str, graph: &str, requests: u64) -> Report<RawEvent> {
        let mut metrics = MetricsWindow::default();
        metrics.endpoints.insert(
            "route".into(),
            EndpointCounts {
                requests,
                ..EndpointCounts::default()
            },
        );
        Report {
            node: node.into(),
            stream: "s".into(),
            region: "r".into(),
            boot_id: "b".into(),
            agent_version: "0".into(),
            profiles: Default::default(),
            graph: Some(GraphRef {
                version: graph.into(),
                sha256: String::new(),
                bbox: None,
            }),
            health: Health::default(),
            advertise_url: None,
            location: None,
            metrics,
            outbox_depth: 0,
            events: Vec::new(),
        }
    }

    #[test]
    fn arms_sum_the_windows_after_since_of_the_right_graph() {
        let w = Windows::new(WindowConfig::default());
        w.watch("r", u64::MAX);
        w.record(&report("a", "v1", 5), 1_000);
        w.record(&report("a", "v2", 7), 2_000);
        w.record(&report("a", "v2", 11), 3_000);
        w.record(&report("b", "v1", 13), 3_000);
        let nodes = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let arm = w.arm(&nodes, Serving::Graph("v2"), 1_500, 2_500);
        assert_eq!(arm.window.requests(), 18);
        assert_eq!((arm.nodes, arm.reporting_nodes), (3, 1));
        let arm = w.arm(&nodes, Serving::Any, 0, 0);
        assert_eq!(arm.window.requests(), 36);
        assert_eq!(arm.reporting_nodes, 2);
        // Reported, but not recently: silent.
        let arm = w.arm(&nodes, Serving::Any, 0, 3_000);
        assert_eq!(arm.reporting_nodes, 0);
    }

    #[test]
    fn memory_is_bounded_by_count_and_age() {
        let w = Windows::new(WindowConfig {
            per_node: 3,
            retention_ms: 10_000,
        });
        w.watch("r", u64::MAX);
        for t in 0..10 {
            w.record(&report("a", "v1", 1), t * 100);
        }
        assert_eq!(w.len(), 3);
        w.record(&report("b", "v1", 1), 100);
        w.record(&report("a", "v1", 1), 50_000);
        assert_eq!(w.len(), 2, "a's old windows age out on its next report");
        w.prune(60_000);
        assert_eq!(w.len(), 1, "b's window ages out on a prune");
        w.prune(1_000_000);
        assert!(w.is_empty());
    }

    #[test]
    fn only_watched_regions_are_kept() {
        let w = Windows::new(WindowConfig::default());
        w.record(&report("a", "v1", 5), 1_000);
        assert!(w.is_empty(), "nobody asked about region r");
        w.watch("r", 2_000);
        w.record(&report("a", "v1", 5), 1_500);
        w.record(&report("a", "v1", 5), 2_500);
        assert_eq!(w.len(), 1, "the watch ended at 2000");
        w.watch_at_least("r", 1_000);
        assert!(w.is_watched("r", 2_000), "at_least never shortens");
        w.watch("r", 0);
        assert!(!w.is_watched("r", 1), "a plain watch does");
        w.watch("r", u64::MAX);
        w.end_watch("r", 10);
        assert!(!w.is_watched("r", 11));
        w.watch("r", 50);
        w.end_watch("r", 10);
        assert!(w.is_watched("r", 50), "a bounded watch is not ended");
    }
}
