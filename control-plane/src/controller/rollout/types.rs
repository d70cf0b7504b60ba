//! What the rollout state machine reads and answers: its input, its plan and events, the
//! verdict as the reconcile got it, and the operator's action annotation.

use edgeroute_protocol::crd::RolloutSpec;
use edgeroute_protocol::rollout::{RolloutAction, RolloutStatus, Verdict};

/// Reason of a rollout paused because the region's `spec.paused` is set; clearing it
/// resumes the rollout (any other pause needs a `resume` action).
pub const SPEC_PAUSED: &str = "the region is paused (spec.paused)";

/// The stable DaemonSet as observed before this reconcile writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableObserved {
    /// The agent version its pod template runs.
    pub version: String,
    /// Whether every scheduled pod runs that template and is ready.
    pub complete: bool,
}

/// What the center said about the last analysis window, if it said anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgment {
    /// A verdict.
    Verdict(Verdict),
    /// No verdict: the center was not configured, unreachable or answered an error. Counts
    /// as silence: the rollout holds, never moves forward or back on it.
    Unavailable(String),
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct RolloutInput<'a> {
    /// The region's name (salts the canary choice).
    pub region: &'a str,
    /// `spec.agent.version`.
    pub spec_version: &'a str,
    /// `spec.rollout`.
    pub policy: &'a RolloutSpec,
    /// `spec.paused`.
    pub paused: bool,
    /// `status.rollout`.
    pub previous: Option<&'a RolloutStatus>,
    /// `status.rolloutNextAnalysisAtMs`.
    pub next_analysis_at_ms: Option<u64>,
    /// The rollout-action annotation, when its value has not been acknowledged yet.
    pub action: Option<&'a str>,
    /// The region's nodes, sorted by name.
    pub nodes: &'a [String],
    /// The stable DaemonSet; `None` before the region's first version is applied.
    pub stable: Option<&'a StableObserved>,
    /// The center's answer, when an analysis was due and asked for.
    pub judgment: Option<Judgment>,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

/// A Kubernetes Event the reconcile should publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEvent {
    /// Warning rather than Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// What happened, for a human.
    pub note: String,
}

/// What the region should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// The new `status.rollout`.
    pub status: Option<RolloutStatus>,
    /// The new `status.rolloutNextAnalysisAtMs`.
    pub next_analysis_at_ms: Option<u64>,
    /// The action value to record as acknowledged, if one was handled.
    pub acknowledged: Option<String>,
    /// Agent version of the stable DaemonSet.
    pub stable_version: String,
    /// Agent version of the canary DaemonSet; `None` means it must not exist.
    pub canary_version: Option<String>,
    /// Nodes that must carry the canary label, sorted; every other node of the region must
    /// not.
    pub canary_nodes: Vec<String>,
    /// Events to publish.
    pub events: Vec<RolloutEvent>,
}

/// An action annotation that names no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rollout action {0:?}: expected promote, abort, pause or resume")]
pub struct ActionError(pub String);

/// Parses an action annotation value: `promote`, `abort`, `pause` or `resume`, optionally
/// followed by `:` and a nonce.
pub fn parse_action(value: &str) -> Result<RolloutAction, ActionError> {
    let verb = value.split(':').next().unwrap_or_default().trim();
    match verb.to_ascii_lowercase().as_str() {
        "promote" => Ok(RolloutAction::Promote),
        "abort" => Ok(RolloutAction::Abort),
        "pause" => Ok(RolloutAction::Pause),
        "resume" => Ok(RolloutAction::Resume),
        _ => Err(ActionError(value.to_owned())),
    }
}
