//! The agent-version rollout of a region as a pure state machine: [`decide`] takes what
//! the controller observed (the region's spec and status, its nodes, the stable DaemonSet,
//! the latest verdict, the time) and answers what the world should look like (which nodes
//! are canaries, which version each DaemonSet runs, the new rollout status and the events).
//!
//! # Ordering
//! The reconcile carries a plan out in an order that never leaves a node without an agent
//! for longer than one pod replacement:
//! 1. the new rollout status is written first (it is the intent: a controller that dies
//!    half-way converges to it after a restart or a leader change);
//! 2. the canary DaemonSet is applied *before* any node gets the canary label, so a node
//!    that leaves the stable DaemonSet is immediately wanted by the canary one;
//! 3. labels are added and removed; each labelled node swaps one pod;
//! 4. the canary DaemonSet is deleted only once no node carries the canary label.
//!
//! On promotion the stable DaemonSet moves to the new version first, and the canary labels
//! are removed only once it reports every pod updated and ready: the canary nodes then swap
//! a new-version canary pod for a new-version stable pod. On rollback the stable DaemonSet
//! never changed, so the labels go at once and the canary nodes get their old agent back.
//!
//! Canary nodes are chosen in the order of a hash of region and node name: deterministic (a restarted
//! controller picks the same ones), spread (not the alphabetically first rack) and nested
//! (each step keeps the previous step's canaries and adds some). Within a step the set only
//! shrinks (nodes that leave the region); nodes that join mid-rollout stay stable until a
//! later step picks them.

use std::collections::BTreeSet;

use edgeroute_protocol::crd::RolloutSpec;

pub use super::canaries::{canary_count, choose_canaries};
use edgeroute_protocol::rollout::{
    AnalysisRequest, RolloutAction, RolloutPhase, RolloutStatus, RolloutTarget, Verdict,
    VerdictKind,
};

mod types;

pub use types::*;

fn steps(policy: &RolloutSpec) -> Vec<u8> {
    // The CRD requires at least one step; an empty list (a hand-written status, an old
    // object) means "everything at once, judged once".
    if policy.steps.is_empty() {
        vec![100]
    } else {
        policy.steps.clone()
    }
}

fn window_ms(policy: &RolloutSpec) -> u64 {
    u64::from(policy.analysis_window_seconds.max(1)) * 1000
}

fn is_active(status: &RolloutStatus) -> bool {
    !status.phase.is_terminal()
}

/// The analysis the controller must ask the center for now, if any: the rollout is
/// progressing or holding on the spec's version, the region is not paused, and the step's
/// window has ended.
pub fn analysis_due(input: &RolloutInput<'_>) -> Option<AnalysisRequest> {
    let status = input.previous?;
    let due = matches!(
        status.phase,
        RolloutPhase::Progressing | RolloutPhase::Holding
    ) && !input.paused
        && input.action.is_none()
        && status.to_version == input.spec_version
        && !status.canary_nodes.is_empty()
        && input.now_ms >= next_analysis(input, status);
    due.then(|| AnalysisRequest {
        target: RolloutTarget::Agent,
        canary_nodes: status.canary_nodes.clone(),
        since_ms: status.step_started_at_ms,
        policy: input.policy.clone(),
    })
}

fn next_analysis(input: &RolloutInput<'_>, status: &RolloutStatus) -> u64 {
    input.next_analysis_at_ms.unwrap_or_else(|| {
        status
            .step_started_at_ms
            .saturating_add(window_ms(input.policy))
    })
}

/// When the reconcile should look at the region again for the rollout's sake (ms since
/// the epoch): the next analysis or the end of the allowed hold, whichever comes first.
pub fn wake_at(plan: &RolloutPlan, policy: &RolloutSpec) -> Option<u64> {
    let status = plan.status.as_ref()?;
    let hold_end = status
        .holding_since_ms
        .filter(|_| status.phase == RolloutPhase::Holding)
        .map(|since| since.saturating_add(u64::from(policy.max_inconclusive_seconds) * 1000));
    match (plan.next_analysis_at_ms, hold_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides the rollout: see the module documentation.
pub fn decide(input: &RolloutInput<'_>) -> RolloutPlan {
    let mut d = Decision {
        input,
        events: Vec::new(),
        acknowledged: None,
    };
    let (status, next, stable, canary) = match input.previous {
        Some(prev) if is_active(prev) => d.active(prev.clone()),
        // A finished rollout whose labels are not cleaned up yet finishes first, whatever
        // the spec says now; the next reconcile starts the next rollout.
        Some(prev) if prev.to_version == input.spec_version || !prev.canary_nodes.is_empty() => {
            d.refuse_action("the rollout is over");
            d.finish(prev.clone())
        }
        prev => d.idle(prev),
    };
    let status = status.map(|mut s| {
        let changed = input.previous.is_none_or(|p| {
            let mut p = p.clone();
            p.updated_at_ms = s.updated_at_ms;
            p != s
        });
        if changed {
            s.updated_at_ms = input.now_ms;
        }
        s
    });
    let canary_nodes = status
        .as_ref()
        .map(|s| s.canary_nodes.clone())
        .unwrap_or_default();
    RolloutPlan {
        status,
        next_analysis_at_ms: next,
        acknowledged: d.acknowledged,
        stable_version: stable,
        canary_version: canary,
        canary_nodes,
        events: d.events,
    }
}

/// New status, next analysis time, stable version, canary version.
type Outcome = (Option<RolloutStatus>, Option<u64>, String, Option<String>);

struct Decision<'i, 'a> {
    input: &'i RolloutInput<'a>,
    events: Vec<RolloutEvent>,
    acknowledged: Option<String>,
}

impl Decision<'_, '_> {
    fn event(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(RolloutEvent {
            warning,
            reason,
            note,
        });
    }

    /// Acknowledges a pending action that cannot apply, with a warning saying why.
    fn refuse_action(&mut self, why: &str) {
        if let Some(action) = self.input.action {
            self.acknowledged = Some(action.to_owned());
            self.event(
                true,
                "RolloutActionIgnored",
                format!("ignored rollout action {action:?}: {why}"),
            );
        }
    }

    /// No rollout in progress: start one if the spec asks for a version the stable
    /// DaemonSet does not run.
    fn idle(&mut self, prev: Option<&RolloutStatus>) -> Outcome {
        let input = self.input;
        let spec = input.spec_version.to_owned();
        let keep = prev.cloned();
        let Some(stable) = input.stable else {
            // The region's first version is not a rollout: there is nothing to compare with.
            self.refuse_action("no rollout in progress");
            return (keep, None, spec, None);
        };
        if stable.version == spec {
            self.refuse_action("no rollout in progress");
            return (keep, None, spec, None);
        }
        if input.nodes.is_empty() {
            // No node runs an agent: there is nothing to protect or to judge.
            self.refuse_action("no rollout in progress");
            return (keep, None, spec, None);
        }
        if input.paused {
            // Frozen: the rollout starts when the region is resumed.
            return (keep, None, stable.version.clone(), None);
        }
        self.refuse_action("no rollout in progress");
        let status = self.start(&stable.version, Vec::new());
        self.event(
            false,
            "RolloutStarted",
            format!(
                "agent {} -> {}: {}% of the nodes ({}) first",
                stable.version,
                spec,
                status.step_percent,
                status.canary_nodes.join(", ")
            ),
        );
        self.progressing(status)
    }

    /// A fresh rollout from `from` to the spec's version at its first step, keeping `keep`
    /// canaries where the step's count allows.
    fn start(&self, from: &str, keep: Vec<String>) -> RolloutStatus {
        let input = self.input;
        let percent = steps(input.policy)[0];
        let steps_n = steps(input.policy).len();
        RolloutStatus {
            target: RolloutTarget::Agent,
            from_version: Some(from.to_owned()),
            to_version: input.spec_version.to_owned(),
            phase: RolloutPhase::Progressing,
            step: 0,
            step_percent: percent,
            canary_nodes: choose_canaries(input.region, input.nodes, &keep, percent),
            started_at_ms: input.now_ms,
            step_started_at_ms: input.now_ms,
            holding_since_ms: None,
            last_verdict: None,
            reason: format!("step 1/{steps_n} ({percent}%) started"),
            updated_at_ms: input.now_ms,
        }
    }

    /// The outcome of a rollout that goes on: stable on the old version, canary on the new.
    fn progressing(&self, status: RolloutStatus) -> Outcome {
        let next = matches!(
            status.phase,
            RolloutPhase::Progressing | RolloutPhase::Holding
        )
        .then(|| next_analysis(self.input, &status));
        let from = status
            .from_version
            .clone()
            .unwrap_or_else(|| status.to_version.clone());
        let to = status.to_version.clone();
        (Some(status), next, from, Some(to))
    }

    /// A rollout that is not over.
    fn active(&mut self, mut s: RolloutStatus) -> Outcome {
        let input = self.input;
        if input.spec_version != s.to_version {
            if s.from_version.as_deref() == Some(input.spec_version) {
                return self.roll_back(
                    s,
                    format!("spec.agent.version reverted to {}", input.spec_version),
                );
            }
            let from = s
                .from_version
                .clone()
                .unwrap_or_else(|| s.to_version.clone());
            let old_to = s.to_version.clone();
            let restarted = self.start(&from, s.canary_nodes);
            self.event(
                false,
                "RolloutRestarted",
                format!(
                    "spec.agent.version changed from {old_to} to {} mid-rollout; starting over from step 1",
                    input.spec_version
                ),
            );
            return self.progressing_fresh(restarted);
        }
        // Nodes that left the region stop being canaries; if none is left, pick again so a
        // step always has at least one canary.
        let nodes: BTreeSet<&str> = input.nodes.iter().map(String::as_str).collect();
        s.canary_nodes.retain(|n| nodes.contains(n.as_str()));
        if s.canary_nodes.is_empty() && !input.nodes.is_empty() && s.phase != RolloutPhase::Paused {
            s.canary_nodes = choose_canaries(input.region, input.nodes, &[], s.step_percent);
        }
        if input.paused {
            if s.phase != RolloutPhase::Paused {
                s.phase = RolloutPhase::Paused;
                s.reason = SPEC_PAUSED.into();
                self.event(false, "RolloutPaused", SPEC_PAUSED.into());
            }
            // Actions wait until the region is resumed: a frozen region changes nothing.
            return self.progressing(s);
        }
        if let Some(action) = input.action {
            self.acknowledged = Some(action.to_owned());
            return match parse_action(action) {
                Err(e) => {
                    self.event(true, "RolloutActionInvalid", e.to_string());
                    self.progressing(s)
                }
                Ok(RolloutAction::Promote) => self.promote(s, "promoted by an operator".into()),
                Ok(RolloutAction::Abort) => self.roll_back(s, "aborted by an operator".into()),
                Ok(RolloutAction::Pause) => {
                    if s.phase != RolloutPhase::Paused {
                        s.phase = RolloutPhase::Paused;
                        s.reason = "paused by an operator".into();
                        self.event(false, "RolloutPaused", s.reason.clone());
                    }
                    self.progressing(s)
                }
                Ok(RolloutAction::Resume) => {
                    if matches!(s.phase, RolloutPhase::Paused | RolloutPhase::Holding) {
                        self.resume(s, "resumed by an operator".into())
                    } else {
                        self.event(
                            true,
                            "RolloutActionIgnored",
                            format!("ignored {action:?}: the rollout is not paused"),
                        );
                        self.progressing(s)
                    }
                }
            };
        }
        if s.phase == RolloutPhase::Paused {
            if s.reason == SPEC_PAUSED {
                return self.resume(s, "the region was resumed (spec.paused cleared)".into());
            }
            return self.progressing(s);
        }
        match input.judgment.clone() {
            Some(Judgment::Verdict(v)) => self.judged(s, v),
            Some(Judgment::Unavailable(why)) => {
                let next = input.now_ms.saturating_add(window_ms(input.policy));
                self.hold(s, format!("no verdict: {why}"), next)
            }
            None => {
                let next = next_analysis(input, &s);
                self.check_hold_deadline(s, next)
            }
        }
    }

    /// Like [`progressing`](Self::progressing) for a step that starts now.
    fn progressing_fresh(&self, status: RolloutStatus) -> Outcome {
        let next = self
            .input
            .now_ms
            .saturating_add(window_ms(self.input.policy));
        let (s, _, stable, canary) = self.progressing(status);
        (s, Some(next), stable, canary)
    }

    fn resume(&mut self, mut s: RolloutStatus, why: String) -> Outcome {
        s.phase = RolloutPhase::Progressing;
        s.holding_since_ms = None;
        // A fresh window: what happened while paused is not this step's evidence.
        s.step_started_at_ms = self.input.now_ms;
        s.reason = why.clone();
        self.event(false, "RolloutResumed", why);
        self.progressing_fresh(s)
    }

    fn judged(&mut self, mut s: RolloutStatus, v: Verdict) -> Outcome {
        let input = self.input;
        let next = input.now_ms.saturating_add(window_ms(input.policy));
        let why = v.reason.clone();
        let kind = v.kind;
        s.last_verdict = Some(v);
        match kind {
            VerdictKind::Pass => {
                let all = steps(input.policy);
                let step = usize::try_from(s.step).unwrap_or(usize::MAX);
                match all.get(step.saturating_add(1)) {
                    Some(&percent) => {
                        let grown =
                            choose_canaries(input.region, input.nodes, &s.canary_nodes, percent);
                        s.step = s.step.saturating_add(1);
                        s.step_percent = percent;
                        s.canary_nodes = grown;
                        s.phase = RolloutPhase::Progressing;
                        s.holding_since_ms = None;
                        s.step_started_at_ms = input.now_ms;
                        s.reason = format!(
                            "step {}/{} ({percent}%) started after a pass: {why}",
                            s.step + 1,
                            all.len()
                        );
                        self.event(
                            false,
                            "RolloutStepAdvanced",
                            format!(
                                "{percent}% of the nodes on agent {}: {}",
                                s.to_version,
                                s.canary_nodes.join(", ")
                            ),
                        );
                        self.progressing_fresh(s)
                    }
                    None => self.promote(s, format!("every step passed: {why}")),
                }
            }
            VerdictKind::Fail => self.roll_back(s, format!("the canary failed: {why}")),
            VerdictKind::Inconclusive | VerdictKind::Silent => {
                self.hold(s, format!("{}: {why}", kind.as_str().to_lowercase()), next)
            }
        }
    }

    /// Holds the rollout (no step forward or back), pausing it once it has held longer
    /// than the policy allows.
    fn hold(&mut self, mut s: RolloutStatus, why: String, next: u64) -> Outcome {
        if s.phase != RolloutPhase::Holding {
            s.phase = RolloutPhase::Holding;
            s.holding_since_ms = Some(s.holding_since_ms.unwrap_or(self.input.now_ms));
            self.event(false, "RolloutHolding", why.clone());
        }
        s.reason = why;
        self.check_hold_deadline(s, next)
    }

    fn check_hold_deadline(&mut self, mut s: RolloutStatus, next: u64) -> Outcome {
        let input = self.input;
        let limit = u64::from(input.policy.max_inconclusive_seconds) * 1000;
        if s.phase == RolloutPhase::Holding
            && let Some(since) = s.holding_since_ms
            && input.now_ms.saturating_sub(since) >= limit
        {
            s.phase = RolloutPhase::Paused;
            s.reason = format!(
                "held for {}s without a verdict ({}); promote, abort or resume it",
                input.now_ms.saturating_sub(since) / 1000,
                s.reason
            );
            self.event(true, "RolloutPaused", s.reason.clone());
            return self.progressing(s);
        }
        let (s, _, stable, canary) = self.progressing(s);
        let next = s
            .as_ref()
            .filter(|s| matches!(s.phase, RolloutPhase::Progressing | RolloutPhase::Holding))
            .map(|_| next);
        (s, next, stable, canary)
    }

    fn promote(&mut self, mut s: RolloutStatus, why: String) -> Outcome {
        s.phase = RolloutPhase::Promoted;
        s.holding_since_ms = None;
        s.reason = why.clone();
        self.event(
            false,
            "RolloutPromoted",
            format!("agent {} promoted to every node: {why}", s.to_version),
        );
        self.finish(s)
    }

    fn roll_back(&mut self, mut s: RolloutStatus, why: String) -> Outcome {
        s.phase = RolloutPhase::RolledBack;
        s.holding_since_ms = None;
        s.reason = why.clone();
        self.event(
            true,
            "RolloutRolledBack",
            format!(
                "agent {} rolled back to {}: {why}",
                s.to_version,
                s.from_version.as_deref().unwrap_or("the previous version")
            ),
        );
        self.finish(s)
    }

    /// A finished rollout: converge to its end state.
    fn finish(&mut self, mut s: RolloutStatus) -> Outcome {
        let input = self.input;
        let had_canaries = !s.canary_nodes.is_empty();
        let to = s.to_version.clone();
        if s.phase == RolloutPhase::Promoted {
            // The stable DaemonSet takes the new version first; the canary labels go only
            // once it runs it everywhere, so a canary node swaps one new-version pod for
            // another.
            let stable_done = input
                .stable
                .is_some_and(|st| st.version == to && st.complete);
            // Once the labels are gone the rollout is over for good: a stable DaemonSet that
            // later loses a pod must not bring the canary DaemonSet back.
            if !stable_done && had_canaries {
                let nodes: BTreeSet<&str> = input.nodes.iter().map(String::as_str).collect();
                s.canary_nodes.retain(|n| nodes.contains(n.as_str()));
                return (Some(s), None, to.clone(), Some(to));
            }
            s.canary_nodes.clear();
            if had_canaries {
                self.event(
                    false,
                    "CanaryRemoved",
                    format!("every node runs agent {to} from the stable DaemonSet"),
                );
            }
            return (Some(s), None, to, None);
        }
        // Rolled back: the stable DaemonSet never left the old version.
        s.canary_nodes.clear();
        let from = s.from_version.clone().unwrap_or(to);
        (Some(s), None, from, None)
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
