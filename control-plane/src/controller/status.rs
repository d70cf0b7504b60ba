//! The status a region should report, computed from its node plan and its DaemonSet, and the
//! condition transitions that become Kubernetes Events.

use edgeroute_protocol::crd::{
    ConditionStatus, ConditionType, EdgeRegion, EdgeRegionStatus, RegionCondition,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use edgeroute_protocol::rollout::RolloutPhase;

use super::nodes::NodePlan;
use super::rollout::RolloutPlan;

/// Where the DaemonSet's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rollout {
    desired: i32,
    ready: i32,
    complete: bool,
}

fn rollout(ds: Option<&DaemonSet>) -> Option<Rollout> {
    let ds = ds?;
    let status = ds.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= ds.metadata.generation.unwrap_or(0);
    let desired = status.desired_number_scheduled;
    Some(Rollout {
        desired,
        ready: status.number_ready,
        complete: observed && status.updated_number_scheduled.unwrap_or(0) >= desired,
    })
}

/// Whether the DaemonSet has observed its latest spec and runs it, ready, on every node it
/// should: the point after which a promotion may take the canary labels away.
pub fn daemon_set_complete(ds: &DaemonSet) -> bool {
    rollout(Some(ds)).is_some_and(|r| r.complete && r.ready >= r.desired)
}

/// Builds a condition, keeping the previous transition time when the status did not change
/// so an unchanged region produces an identical status (and therefore no write).
fn condition(
    old: &EdgeRegionStatus,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: &Time,
) -> RegionCondition {
    let last_transition_time = match old.condition(type_) {
        Some(prev) if prev.status == status => prev.last_transition_time.clone(),
        _ => now.clone(),
    };
    RegionCondition {
        type_,
        status,
        reason: reason.to_owned(),
        message,
        last_transition_time,
    }
}

fn flag(b: bool) -> ConditionStatus {
    if b {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    }
}

/// The status `region` should have, given its node plan, its stable DaemonSet `ds` and
/// the rollout plan. `now` stamps conditions whose status changes.
pub fn compute_status(
    region: &EdgeRegion,
    plan: &NodePlan,
    ds: Option<&DaemonSet>,
    now: &Time,
    rollout_plan: &RolloutPlan,
) -> EdgeRegionStatus {
    let old = region.status.clone().unwrap_or_default();
    let spec = &region.spec;
    let roll = rollout(ds);
    let (desired, ready) = roll.map_or((0, 0), |r| (r.desired, r.ready));
    let complete = roll.is_some_and(|r| r.complete);

    let canary = rollout_plan
        .status
        .as_ref()
        .filter(|r| matches!(r.phase, RolloutPhase::Progressing | RolloutPhase::Holding));
    let (progressing, p_reason, p_msg) = if spec.paused {
        (false, "Paused", "the region is paused".to_owned())
    } else if let Some(r) = canary {
        (
            true,
            "CanaryStep",
            format!(
                "agent {} -> {}: step {} at {}% on {} node(s)",
                r.from_version.as_deref().unwrap_or("?"),
                r.to_version,
                r.step + 1,
                r.step_percent,
                r.canary_nodes.len()
            ),
        )
    } else if roll.is_none() {
        (true, "Creating", "creating the agent DaemonSet".to_owned())
    } else if !complete {
        (
            true,
            "RollingOut",
            format!("rolling out agent {}", rollout_plan.stable_version),
        )
    } else {
        (
            false,
            "RolloutComplete",
            format!("agent {} rolled out", rollout_plan.stable_version),
        )
    };
    let (stalled, s_reason, s_msg) = match &rollout_plan.status {
        Some(r) if matches!(r.phase, RolloutPhase::Holding | RolloutPhase::Paused) => {
            (true, r.phase.as_str(), r.reason.clone())
        }
        Some(r) => (false, r.phase.as_str(), r.reason.clone()),
        None => (false, "NoRollout", String::new()),
    };
    let (is_ready, r_reason) = match () {
        _ if desired == 0 => (false, "NoAgentsScheduled"),
        _ if ready >= desired && complete => (true, "AgentsReady"),
        _ => (false, "AgentsNotReady"),
    };
    let degraded = complete && ready < desired;
    let conflicts = &plan.conflicts;

    let conditions = vec![
        condition(
            &old,
            ConditionType::Ready,
            flag(is_ready),
            r_reason,
            format!("{ready}/{desired} agents ready"),
            now,
        ),
        condition(
            &old,
            ConditionType::Progressing,
            flag(progressing),
            p_reason,
            p_msg,
            now,
        ),
        condition(
            &old,
            ConditionType::Degraded,
            flag(degraded),
            if degraded {
                "AgentsUnavailable"
            } else {
                "AsExpected"
            },
            if degraded {
                format!("{} agents unavailable", desired - ready)
            } else {
                String::new()
            },
            now,
        ),
        condition(
            &old,
            ConditionType::NodeConflict,
            flag(!conflicts.is_empty()),
            if conflicts.is_empty() {
                "NoConflict"
            } else {
                "NodesHeldElsewhere"
            },
            if conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    "matched nodes held by another region: {}",
                    conflicts.join(", ")
                )
            },
            now,
        ),
        condition(
            &old,
            ConditionType::RolloutStalled,
            flag(stalled),
            s_reason,
            s_msg,
            now,
        ),
    ];

    EdgeRegionStatus {
        observed_generation: region.metadata.generation,
        matched_nodes: i32::try_from(plan.matched()).unwrap_or(i32::MAX),
        ready_agents: ready,
        desired_agents: desired,
        // Versions are reported once the DaemonSet has rolled them out everywhere.
        current_version: if complete && !spec.paused {
            Some(rollout_plan.stable_version.clone())
        } else {
            old.current_version.clone()
        },
        graph_version: if complete && !spec.paused {
            Some(spec.graph.version.clone())
        } else {
            old.graph_version.clone()
        },
        conditions,
        conflicting_nodes: conflicts.clone(),
        rollout: rollout_plan.status.clone(),
        rollout_next_analysis_at_ms: rollout_plan.next_analysis_at_ms,
        rollout_action_ack: rollout_plan
            .acknowledged
            .clone()
            .or(old.rollout_action_ack.clone()),
    }
}

/// Conditions whose status differs between `old` and `new` (new ones included).
pub fn transitions<'a>(
    old: Option<&EdgeRegionStatus>,
    new: &'a EdgeRegionStatus,
) -> Vec<&'a RegionCondition> {
    new.conditions
        .iter()
        .filter(|c| old.and_then(|o| o.condition(c.type_)).map(|p| p.status) != Some(c.status))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::region;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;

    fn steady() -> RolloutPlan {
        RolloutPlan {
            status: None,
            next_analysis_at_ms: None,
            acknowledged: None,
            stable_version: "0.1.0".into(),
            canary_version: None,
            canary_nodes: Vec::new(),
            events: Vec::new(),
        }
    }

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn ds(generation: i64, observed: i64, desired: i32, updated: i32, ready: i32) -> DaemonSet {
        let mut ds = DaemonSet::default();
        ds.metadata.generation = Some(generation);
        ds.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            updated_number_scheduled: Some(updated),
            number_ready: ready,
            ..DaemonSetStatus::default()
        });
        ds
    }

    fn plan(held: &[&str], conflicts: &[&str]) -> NodePlan {
        NodePlan {
            held: held.iter().map(|s| s.to_string()).collect(),
            conflicts: conflicts.iter().map(|s| s.to_string()).collect(),
            ..NodePlan::default()
        }
    }

    #[test]
    fn fresh_region_is_progressing_and_not_ready() {
        let r = region("porto", "porto");
        let s = compute_status(
            &r,
            &plan(&["a"], &[]),
            None,
            &at("2026-01-01T00:00:00Z"),
            &steady(),
        );
        assert_eq!(s.matched_nodes, 1);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            s.condition(ConditionType::Progressing).unwrap().status,
            ConditionStatus::True
        );
        assert_eq!(
            s.condition(ConditionType::Ready).unwrap().status,
            ConditionStatus::False
        );
        assert!(s.current_version.is_none());
    }

    #[test]
    fn complete_rollout_is_ready_and_reports_versions() {
        let r = region("porto", "porto");
        let s = compute_status(
            &r,
            &plan(&["a", "b"], &[]),
            Some(&ds(2, 2, 2, 2, 2)),
            &at("2026-01-01T00:00:00Z"),
            &steady(),
        );
        assert_eq!(
            s.condition(ConditionType::Ready).unwrap().status,
            ConditionStatus::True
        );
        assert_eq!(
            s.condition(ConditionType::Degraded).unwrap().status,
            ConditionStatus::False
        );
        assert_eq!(s.current_version.as_deref(), Some("0.1.0"));
        assert_eq!(s.graph_version.as_deref(), Some("v1"));
        assert_eq!((s.ready_agents, s.desired_agents), (2, 2));
    }

    #[test]
    fn unavailable_agents_outside_a_rollout_are_degraded() {
        let r = region("porto", "porto");
        let s = compute_status(
            &r,
            &plan(&["a", "b"], &[]),
            Some(&ds(1, 1, 2, 2, 1)),
            &at("2026-01-01T00:00:00Z"),
            &steady(),
        );
        assert_eq!(
            s.condition(ConditionType::Degraded).unwrap().status,
            ConditionStatus::True
        );
        let rolling = compute_status(
            &r,
            &plan(&["a"], &[]),
            Some(&ds(2, 1, 2, 1, 1)),
            &at("2026-01-01T00:00:00Z"),
            &steady(),
        );
        assert_eq!(
            rolling.condition(ConditionType::Degraded).unwrap().status,
            ConditionStatus::False
        );
        assert_eq!(
            rolling
                .condition(ConditionType::Progressing)
                .unwrap()
                .reason,
            "RollingOut"
        );
    }

    #[test]
    fn a_holding_rollout_is_stalled_and_a_step_is_progressing() {
        use edgeroute_protocol::rollout::{RolloutStatus, RolloutTarget};
        let r = region("porto", "porto");
        let mut rollout = RolloutStatus {
            target: RolloutTarget::Agent,
            from_version: Some("0.1.0".into()),
            to_version: "0.2.0".into(),
            phase: RolloutPhase::Progressing,
            step: 1,
            step_percent: 25,
            canary_nodes: vec!["a".into()],
            started_at_ms: 1,
            step_started_at_ms: 2,
            holding_since_ms: None,
            last_verdict: None,
            reason: "step 2/4 (25%) started".into(),
            updated_at_ms: 2,
        };
        let mut rp = steady();
        rp.status = Some(rollout.clone());
        rp.next_analysis_at_ms = Some(300_002);
        rp.acknowledged = Some("resume:1".into());
        let d = ds(1, 1, 1, 1, 1);
        let now = at("2026-01-01T00:00:00Z");
        let s = compute_status(&r, &plan(&["a", "b"], &[]), Some(&d), &now, &rp);
        let progressing = s.condition(ConditionType::Progressing).unwrap();
        assert_eq!(progressing.status, ConditionStatus::True);
        assert_eq!(progressing.reason, "CanaryStep");
        assert!(progressing.message.contains("0.1.0 -> 0.2.0"));
        let stalled = s.condition(ConditionType::RolloutStalled).unwrap();
        assert_eq!(stalled.status, ConditionStatus::False);
        assert_eq!(s.rollout, rp.status);
        assert_eq!(s.rollout_next_analysis_at_ms, Some(300_002));
        assert_eq!(s.rollout_action_ack.as_deref(), Some("resume:1"));
        // The stable DaemonSet still runs the old version: that is the current version.
        assert_eq!(s.current_version.as_deref(), Some("0.1.0"));

        rollout.phase = RolloutPhase::Holding;
        rollout.reason = "silent: canary nodes stopped reporting".into();
        rp.status = Some(rollout);
        rp.acknowledged = None;
        let mut r2 = r.clone();
        r2.status = Some(s);
        let held = compute_status(&r2, &plan(&["a", "b"], &[]), Some(&d), &now, &rp);
        let stalled = held.condition(ConditionType::RolloutStalled).unwrap();
        assert_eq!(stalled.status, ConditionStatus::True);
        assert_eq!(stalled.reason, "Holding");
        assert!(stalled.message.contains("stopped reporting"));
        assert_eq!(held.rollout_action_ack.as_deref(), Some("resume:1"), "kept");
    }

    #[test]
    fn conflicts_are_named_in_the_condition() {
        let r = region("porto", "porto");
        let s = compute_status(
            &r,
            &plan(&[], &["x", "y"]),
            None,
            &at("2026-01-01T00:00:00Z"),
            &steady(),
        );
        let c = s.condition(ConditionType::NodeConflict).unwrap();
        assert_eq!(c.status, ConditionStatus::True);
        assert!(c.message.contains("x, y"));
        assert_eq!(s.conflicting_nodes, ["x", "y"]);
    }

    #[test]
    fn unchanged_inputs_give_an_identical_status_and_no_transitions() {
        let mut r = region("porto", "porto");
        let p = plan(&["a"], &[]);
        let d = ds(1, 1, 1, 1, 1);
        let first = compute_status(&r, &p, Some(&d), &at("2026-01-01T00:00:00Z"), &steady());
        assert_eq!(transitions(None, &first).len(), 5);
        r.status = Some(first.clone());
        let second = compute_status(&r, &p, Some(&d), &at("2026-01-02T00:00:00Z"), &steady());
        assert_eq!(first, second);
        assert!(transitions(Some(&first), &second).is_empty());
        // A change of status moves only that condition's transition time.
        let d2 = ds(1, 1, 1, 1, 0);
        let third = compute_status(&r, &p, Some(&d2), &at("2026-01-03T00:00:00Z"), &steady());
        let moved: Vec<_> = transitions(Some(&first), &third)
            .iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(moved, [ConditionType::Ready, ConditionType::Degraded]);
        let progressing = third.condition(ConditionType::Progressing).unwrap();
        assert_eq!(progressing.last_transition_time, at("2026-01-01T00:00:00Z"));
    }
}
