//! The rollout state machine, pure: what a verdict, an operator's action or a new version
//! does to a region's [`RolloutRecord`]. The driver ([`super::graph`]) feeds it and acts on
//! the result (directives follow the record; the store keeps it).
//!
//! - Each step puts `ceil(steps[i]% of the nodes)` (at least one) on the new version. The
//!   choice is deterministic and spread: nodes are ordered by a hash of the target version
//!   and their name, and a node that is a canary stays one in later steps.
//! - A window is judged once `analysis_window_seconds` passed since the step started (or
//!   since the last judgement while holding). Pass: next step, or `Promoted` after the last
//!   one. Fail: `RolledBack` at once. Inconclusive or Silent: `Holding`, and `Paused` once
//!   the hold lasted `max_inconclusive_seconds`: a human decides.
//! - Paused rollouts are not judged; `resume` starts the step's window afresh.

use edgeroute_protocol::{
    crd::RolloutSpec,
    rollout::{RolloutAction, RolloutPhase, RolloutStatus, RolloutTarget, Verdict, VerdictKind},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the center stores per region: the rollout's status and the policy it runs under
/// (fixed at its start, so a restart judges by the same rules). One JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// What the API and the dashboard show.
    pub status: RolloutStatus,
    /// The thresholds and steps.
    pub policy: RolloutSpec,
}

/// A phase change, for logs, events and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The phase before.
    pub from: RolloutPhase,
    /// The phase after.
    pub to: RolloutPhase,
    /// Why, in words.
    pub reason: String,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Nodes ordered for canary choice: by a hash of `salt` and the name, ties by name.
fn spread_order<'a>(nodes: &'a [String], salt: &str) -> Vec<&'a String> {
    let mut keyed: Vec<([u8; 8], &String)> = nodes
        .iter()
        .map(|n| {
            let mut h = Sha256::new();
            h.update(salt.as_bytes());
            h.update([0]);
            h.update(n.as_bytes());
            let d = h.finalize();
            let mut k = [0u8; 8];
            k.copy_from_slice(&d[..8]);
            (k, n)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, n)| n).collect()
}

/// How many of `total` nodes a step of `percent` puts on the new version (at least one).
pub fn step_size(total: usize, percent: u8) -> usize {
    let wanted = (total * usize::from(percent.min(100))).div_ceil(100);
    wanted.max(1).min(total)
}

/// The canary nodes of a step: `current` canaries still in the region, topped up in
/// spread order to [`step_size`].
pub fn choose_canaries(
    nodes: &[String],
    current: &[String],
    percent: u8,
    salt: &str,
) -> Vec<String> {
    let want = step_size(nodes.len(), percent);
    let mut chosen: Vec<String> = current
        .iter()
        .filter(|c| nodes.contains(c))
        .cloned()
        .collect();
    for n in spread_order(nodes, salt) {
        if chosen.len() >= want {
            break;
        }
        if !chosen.contains(n) {
            chosen.push(n.clone());
        }
    }
    chosen.sort();
    chosen
}

fn percent_of(policy: &RolloutSpec, step: u32) -> u8 {
    policy
        .steps
        .get(step as usize)
        .copied()
        .unwrap_or(100)
        .clamp(1, 100)
}

impl RolloutRecord {
    /// A rollout of `target` from `from` to `to` over `nodes` (the region's nodes now),
    /// at its first step.
    pub fn start(
        target: RolloutTarget,
        from: Option<String>,
        to: String,
        policy: RolloutSpec,
        nodes: &[String],
        now_ms: u64,
    ) -> Self {
        let step_percent = percent_of(&policy, 0);
        let canary_nodes = choose_canaries(nodes, &[], step_percent, &to);
        let reason = format!(
            "rolling out {to} to {} of {} nodes ({step_percent}%)",
            canary_nodes.len(),
            nodes.len()
        );
        RolloutRecord {
            status: RolloutStatus {
                target,
                from_version: from,
                to_version: to,
                phase: RolloutPhase::Progressing,
                step: 0,
                step_percent,
                canary_nodes,
                started_at_ms: now_ms,
                step_started_at_ms: now_ms,
                holding_since_ms: None,
                last_verdict: None,
                reason,
                updated_at_ms: now_ms,
            },
            policy,
        }
    }

    /// Whether a node serves the new version now (terminal rollouts have no canaries).
    pub fn is_canary(&self, node: &str) -> bool {
        !self.status.phase.is_terminal() && self.status.canary_nodes.iter().any(|n| n == node)
    }

    /// When the current window ends and is judged, if the rollout is being judged.
    pub fn next_judgement_ms(&self) -> Option<u64> {
        let s = &self.status;
        if !matches!(s.phase, RolloutPhase::Progressing | RolloutPhase::Holding) {
            return None;
        }
        let last = s
            .last_verdict
            .as_ref()
            .map_or(s.step_started_at_ms, |v| v.at_ms.max(s.step_started_at_ms));
        let window = u64::from(self.policy.analysis_window_seconds.max(1)) * 1000;
        Some(last.saturating_add(window))
    }

    /// Whether a window is due for judgement at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.next_judgement_ms().is_some_and(|t| now_ms >= t)
    }

    fn go(&mut self, to: RolloutPhase, reason: String, now_ms: u64) -> Transition {
        let from = self.status.phase;
        self.status.phase = to;
        self.status.reason.clone_from(&reason);
        self.status.updated_at_ms = now_ms;
        if to.is_terminal() {
            self.status.canary_nodes.clear();
            self.status.holding_since_ms = None;
        }
        Transition { from, to, reason }
    }

    fn is_last_step(&self) -> bool {
        let next = self.status.step as usize + 1;
        self.status.step_percent >= 100 || next >= self.policy.steps.len()
    }

    /// Apply a judged window; `nodes` are the region's nodes now (for the next step).
    /// `None` when the rollout is not being judged (paused or over): the verdict is ignored.
    pub fn on_verdict(
        &mut self,
        verdict: Verdict,
        nodes: &[String],
        now_ms: u64,
    ) -> Option<Transition> {
        if !matches!(
            self.status.phase,
            RolloutPhase::Progressing | RolloutPhase::Holding
        ) {
            return None;
        }
        let kind = verdict.kind;
        let why = verdict.reason.clone();
        self.status.last_verdict = Some(verdict);
        let t = match kind {
            VerdictKind::Pass if self.is_last_step() => self.go(
                RolloutPhase::Promoted,
                format!(
                    "step {} passed; every node runs {}: {why}",
                    self.status.step + 1,
                    self.status.to_version
                ),
                now_ms,
            ),
            VerdictKind::Pass => {
                let step = self.status.step + 1;
                let percent = percent_of(&self.policy, step);
                self.status.canary_nodes = choose_canaries(
                    nodes,
                    &self.status.canary_nodes,
                    percent,
                    &self.status.to_version,
                );
                self.status.step = step;
                self.status.step_percent = percent;
                self.status.step_started_at_ms = now_ms;
                self.status.holding_since_ms = None;
                let reason = format!(
                    "step {step} passed; step {} puts {} of {} nodes ({percent}%) on {}: {why}",
                    step + 1,
                    self.status.canary_nodes.len(),
                    nodes.len(),
                    self.status.to_version
                );
                self.go(RolloutPhase::Progressing, reason, now_ms)
            }
            VerdictKind::Fail => self.go(
                RolloutPhase::RolledBack,
                format!(
                    "step {} failed, rolled back to {}: {why}",
                    self.status.step + 1,
                    self.status
                        .from_version
                        .as_deref()
                        .unwrap_or("the previous version")
                ),
                now_ms,
            ),
            VerdictKind::Inconclusive | VerdictKind::Silent => {
                let since = *self.status.holding_since_ms.get_or_insert(now_ms);
                let limit = u64::from(self.policy.max_inconclusive_seconds) * 1000;
                if now_ms.saturating_sub(since) >= limit {
                    self.go(
                        RolloutPhase::Paused,
                        format!(
                            "no conclusion for {} s (limit {} s): paused for a human to \
                             promote, abort or resume: {why}",
                            now_ms.saturating_sub(since) / 1000,
                            self.policy.max_inconclusive_seconds
                        ),
                        now_ms,
                    )
                } else {
                    self.go(RolloutPhase::Holding, format!("holding: {why}"), now_ms)
                }
            }
        };
        Some(t)
    }

    /// Apply an operator's action. Refused on a rollout that is over.
    pub fn act(&mut self, action: RolloutAction, now_ms: u64) -> Result<Transition, Refused> {
        let phase = self.status.phase;
        if phase.is_terminal() {
            return Err(Refused(format!(
                "the rollout of {} is over ({}); nothing to {}",
                self.status.to_version,
                phase.as_str(),
                action_name(action)
            )));
        }
        Ok(match action {
            RolloutAction::Promote => self.go(
                RolloutPhase::Promoted,
                format!(
                    "promoted by an operator at step {}: every node runs {}",
                    self.status.step + 1,
                    self.status.to_version
                ),
                now_ms,
            ),
            RolloutAction::Abort => self.go(
                RolloutPhase::RolledBack,
                format!(
                    "aborted by an operator at step {}: every node back on {}",
                    self.status.step + 1,
                    self.status
                        .from_version
                        .as_deref()
                        .unwrap_or("the previous version")
                ),
                now_ms,
            ),
            RolloutAction::Pause => {
                self.go(RolloutPhase::Paused, "paused by an operator".into(), now_ms)
            }
            RolloutAction::Resume => {
                if phase != RolloutPhase::Paused {
                    return Err(Refused(format!(
                        "the rollout is {}, not paused; nothing to resume",
                        phase.as_str()
                    )));
                }
                self.status.step_started_at_ms = now_ms;
                self.status.holding_since_ms = None;
                self.go(
                    RolloutPhase::Progressing,
                    format!(
                        "resumed by an operator: step {} is judged afresh",
                        self.status.step + 1
                    ),
                    now_ms,
                )
            }
        })
    }

    /// End this rollout because the region was asked for `version` meanwhile: back to
    /// `from_version` (the new rollout, if any, starts from there).
    pub fn supersede(&mut self, version: &str, now_ms: u64) -> Option<Transition> {
        if self.status.phase.is_terminal() {
            return None;
        }
        Some(self.go(
            RolloutPhase::RolledBack,
            format!(
                "superseded by version {version} at step {}: canary nodes back on {}",
                self.status.step + 1,
                self.status.from_version.as_deref().unwrap_or("the previous version")
            ),
            now_ms,
        ))
    }
}

fn action_name(action: RolloutAction) -> &'static str {
    match action {
        RolloutAction::Promote => "promote",
        RolloutAction::Abort => "abort",
        RolloutAction::Pause => "pause",
        RolloutAction::Resume => "resume",
    }
}

#[cfg(test)]
mod tests;
