//! Progressive delivery: a region's rollout of a new agent or graph version, as the
//! center's API (`GET /api/v1/regions/{region}/rollout`), the `rollout` CLI, the fleet
//! dashboard and the `EdgeRegion` status show it.
//!
//! One rollout moves a region from `from_version` to `to_version` in steps (a share of the
//! region's nodes each), judging each step by comparing the canary nodes with the stable
//! nodes of the same region on the agents' own reports. Timestamps are milliseconds since
//! the Unix epoch, so that every party reads them the same way without a date library.

use serde::{Deserialize, Serialize};

/// What a rollout changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum RolloutTarget {
    /// The agent's image version (a new DaemonSet; Kubernetes only).
    Agent,
    /// The road graph the agents serve (through sync directives; works without Kubernetes).
    Graph,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum RolloutPhase {
    /// A step is running and being judged.
    Progressing,
    /// Stopped by an operator (`spec.paused`) or after staying inconclusive too long; a
    /// human must promote, abort or resume it.
    Paused,
    /// Waiting without judging: canary nodes went silent (a partition) or the arms have too
    /// few requests yet. Never rolls forward or back on silence.
    Holding,
    /// Every node runs the new version; the rollout is over.
    Promoted,
    /// The canary nodes were sent back to the previous version; the rollout is over.
    RolledBack,
}

impl RolloutPhase {
    /// Whether the rollout is over (nothing more will change until a new version).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Promoted | Self::RolledBack)
    }

    /// The name used in metrics labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progressing => "Progressing",
            Self::Paused => "Paused",
            Self::Holding => "Holding",
            Self::Promoted => "Promoted",
            Self::RolledBack => "RolledBack",
        }
    }
}

/// The outcome of judging one analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum VerdictKind {
    /// The canary is not worse than stable: go to the next step.
    Pass,
    /// The canary is worse with statistical confidence: roll back at once.
    Fail,
    /// Too few requests in either arm to tell: hold (and pause after a set time).
    Inconclusive,
    /// Canary nodes stopped reporting: hold; silence is neither a pass nor a fail.
    Silent,
}

impl VerdictKind {
    /// The name used in metrics labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::Inconclusive => "Inconclusive",
            Self::Silent => "Silent",
        }
    }
}

/// What one arm (canary or stable) served during an analysis window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ArmFigures {
    /// Nodes in the arm.
    pub nodes: u32,
    /// Nodes of the arm that reported during the window.
    pub reporting_nodes: u32,
    /// Requests answered.
    pub requests: u64,
    /// Requests counted as errors (5xx; for graph rollouts also `NoRoute`/`NoSegment`).
    pub errors: u64,
    /// p99 latency in milliseconds (bucket upper bound), when there were requests.
    #[serde(default)]
    pub p99_ms: Option<f64>,
    /// Requests re-answered on the previous graph (graph rollouts, canary arm only).
    #[serde(default)]
    pub shadow_compared: u64,
    /// Of those, answers that differed materially.
    #[serde(default)]
    pub shadow_differ: u64,
}

/// One judged analysis window, with the figures it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The outcome.
    pub kind: VerdictKind,
    /// Why, in words an operator reads (the statistic and threshold that decided).
    pub reason: String,
    /// When the window was judged (ms since the epoch).
    pub at_ms: u64,
    /// The canary arm.
    pub canary: ArmFigures,
    /// The stable arm.
    pub stable: ArmFigures,
}

/// The state of a region's current (or last) rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// What is rolled out.
    pub target: RolloutTarget,
    /// The version the region ran before (what a rollback returns to); `None` for a
    /// region's first version, which is not rolled out progressively.
    #[serde(default)]
    pub from_version: Option<String>,
    /// The version being rolled out.
    pub to_version: String,
    /// Where the rollout is.
    pub phase: RolloutPhase,
    /// Index of the current step in the policy's steps.
    pub step: u32,
    /// Share of the region's nodes, in percent, the current step puts on the new version.
    pub step_percent: u8,
    /// Nodes running the new version during this step.
    #[serde(default)]
    pub canary_nodes: Vec<String>,
    /// When the rollout started (ms since the epoch).
    pub started_at_ms: u64,
    /// When the current step (or hold) started: its analysis window counts from here.
    pub step_started_at_ms: u64,
    /// Since when the verdicts have been inconclusive or silent, if they are.
    #[serde(default)]
    pub holding_since_ms: Option<u64>,
    /// The last judged window.
    #[serde(default)]
    pub last_verdict: Option<Verdict>,
    /// Why the rollout is in its phase (the last transition's cause).
    #[serde(default)]
    pub reason: String,
    /// When the status last changed (ms since the epoch).
    pub updated_at_ms: u64,
}

/// An operator's command to a rollout (`POST /api/v1/regions/{region}/rollout/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// Skip the remaining steps: every node gets the new version now.
    Promote,
    /// Roll back now.
    Abort,
    /// Stop judging and stepping until resumed.
    Pause,
    /// Continue a paused rollout from its current step.
    Resume,
}

/// The controller's question to the center (`POST /api/v1/regions/{region}/analysis`, admin
/// key): how do these canary nodes compare with the rest of the region since a time? The
/// center holds the agents' reports, so it judges; the controller only acts on the verdict.
#[cfg(feature = "kube")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRequest {
    /// What is rolled out (graph rollouts also count `NoRoute`/`NoSegment` and shadow
    /// differences).
    pub target: RolloutTarget,
    /// The canary arm; every other node of the region is the stable arm.
    pub canary_nodes: Vec<String>,
    /// Only windows reported after this time count (ms since the epoch): the step's start.
    pub since_ms: u64,
    /// The region's policy (thresholds, minimum sample).
    pub policy: crate::crd::RolloutSpec,
}
