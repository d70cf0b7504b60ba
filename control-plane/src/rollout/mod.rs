//! Progressive delivery at the center: graph versions roll out to a region's nodes step by
//! step, each step judged by comparing the canary nodes' reports with the stable nodes'.
//!
//! # Layout
//! - [`analysis`]: the pure judge of one window (also serves the controller's agent
//!   rollouts through `POST /api/v1/regions/{region}/analysis`).
//! - [`machine`]: the pure state machine of a rollout and its stored record.
//! - [`windows`]: the agents' recent metrics windows, in bounded memory.
//! - [`graph`]: the graph rollout driver: starts rollouts, judges due windows, shapes
//!   the directives, applies operators' actions.
//! - [`api`]: the HTTP endpoints; [`cli`]: `rollout status|promote|abort|pause|resume`; [`metrics`]: rollouts by phase, verdicts by kind.
//!
//! The state that matters lives in the store ([`crate::sync::store::CenterStore::rollout`]);
//! what is here in memory is a cache of it and the recent windows.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod graph;
pub mod machine;
pub mod metrics;
pub mod windows;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use edgeroute_protocol::crd::RolloutSpec;

use self::{machine::RolloutRecord, metrics::RolloutMetrics, windows::Windows};

/// Where the center reads the time: the system clock, or a hand-moved one in tests (so a
/// five-minute window takes no five minutes).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that shows `start_ms` until moved.
    pub fn manual(start_ms: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(start_ms))),
        }
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => crate::graphs::registry::now_ms(),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, ms: u64) {
        if let Some(t) = &self.manual {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// The center's rollouts in memory: a cache of the stored records, the recent windows,
/// and the policies.
#[derive(Debug)]
pub struct Rollouts {
    /// Recent metrics windows of every node.
    pub windows: Windows,
    /// The time.
    pub clock: Clock,
    /// Counters and gauges.
    pub metrics: RolloutMetrics,
    default_policy: RolloutSpec,
    policies: Mutex<HashMap<String, RolloutSpec>>,
    records: Mutex<HashMap<String, RolloutRecord>>,
    loaded: Mutex<HashSet<String>>,
    /// Whether the regions known at start have been read from the store.
    scanned: std::sync::atomic::AtomicBool,
    /// One change at a time: a judgement, an action and a new version never interleave.
    ops: tokio::sync::Mutex<()>,
}

impl Rollouts {
    /// Rollouts judged by `default_policy` where no region policy is known.
    pub fn new(default_policy: RolloutSpec, metrics: RolloutMetrics, clock: Clock) -> Self {
        Self {
            windows: Windows::new(windows::WindowConfig::default()),
            clock,
            metrics,
            default_policy,
            policies: Mutex::default(),
            records: Mutex::default(),
            loaded: Mutex::default(),
            scanned: std::sync::atomic::AtomicBool::new(false),
            ops: tokio::sync::Mutex::new(()),
        }
    }

    /// The policy a new rollout of `region` runs under: its EdgeRegion's `spec.rollout`
    /// when one is watched, else the center's default.
    pub fn policy(&self, region: &str) -> RolloutSpec {
        let policies = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        policies
            .get(region)
            .cloned()
            .unwrap_or_else(|| self.default_policy.clone())
    }

    /// Set `region`'s policy (from its EdgeRegion).
    pub fn set_policy(&self, region: &str, policy: RolloutSpec) {
        let mut policies = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        policies.insert(region.to_owned(), policy);
    }

    fn cached(&self, region: &str) -> Option<Option<RolloutRecord>> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if !loaded.contains(region) {
            return None;
        }
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        Some(records.get(region).cloned())
    }

    fn remember(&self, region: &str, record: Option<RolloutRecord>) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        match record {
            Some(r) => {
                records.insert(region.to_owned(), r);
            }
            None => {
                records.remove(region);
            }
        }
        self.metrics
            .set_phases(records.values().map(|r| r.status.phase));
        // A running rollout keeps its region's reports; an ended one stops that.
        match records.get(region) {
            Some(r) if !r.status.phase.is_terminal() => self.windows.watch(region, u64::MAX),
            _ => self.windows.end_watch(region, self.clock.now_ms()),
        }
        drop(records);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.insert(region.to_owned());
    }

    /// Regions with a cached rollout that is not over.
    fn active_regions(&self) -> Vec<String> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .filter(|(_, r)| !r.status.phase.is_terminal())
            .map(|(k, _)| k.clone())
            .collect()
    }
}
