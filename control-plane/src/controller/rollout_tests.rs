//! Unit tests of the rollout state machine.

use super::*;
use edgeroute_protocol::rollout::ArmFigures;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("edge-{i:02}")).collect()
}

fn verdict(kind: VerdictKind, at_ms: u64) -> Verdict {
    Verdict {
        kind,
        reason: format!("{} by the test", kind.as_str()),
        at_ms,
        canary: ArmFigures::default(),
        stable: ArmFigures::default(),
    }
}

/// A scenario: the region's observable world, advanced by applying each plan.
struct World {
    policy: RolloutSpec,
    spec_version: String,
    paused: bool,
    nodes: Vec<String>,
    stable: Option<StableObserved>,
    status: Option<RolloutStatus>,
    next: Option<u64>,
    ack: Option<String>,
    action: Option<String>,
    now: u64,
}

impl World {
    fn new(nodes: usize) -> Self {
        Self {
            policy: RolloutSpec {
                analysis_window_seconds: 60,
                max_inconclusive_seconds: 300,
                ..RolloutSpec::default()
            },
            spec_version: "0.1.0".into(),
            paused: false,
            nodes: names(nodes),
            stable: Some(StableObserved {
                version: "0.1.0".into(),
                complete: true,
            }),
            status: None,
            next: None,
            ack: None,
            action: None,
            now: 1_000_000,
        }
    }

    fn input(&self, judgment: Option<Judgment>) -> RolloutInput<'_> {
        RolloutInput {
            region: "porto",
            spec_version: &self.spec_version,
            policy: &self.policy,
            paused: self.paused,
            previous: self.status.as_ref(),
            next_analysis_at_ms: self.next,
            action: self
                .action
                .as_deref()
                .filter(|a| self.ack.as_deref() != Some(a)),
            nodes: &self.nodes,
            stable: self.stable.as_ref(),
            judgment,
            now_ms: self.now,
        }
    }

    /// One reconcile: asks the judge when an analysis is due, decides and applies the plan
    /// (the stable DaemonSet completes at once).
    fn step(&mut self, judge: impl FnOnce(&AnalysisRequest) -> Judgment) -> RolloutPlan {
        let judgment = analysis_due(&self.input(None)).map(|req| judge(&req));
        let plan = decide(&self.input(judgment));
        self.status = plan.status.clone();
        self.next = plan.next_analysis_at_ms;
        if plan.acknowledged.is_some() {
            self.ack = plan.acknowledged.clone();
        }
        self.stable = Some(StableObserved {
            version: plan.stable_version.clone(),
            complete: true,
        });
        plan
    }

    fn phase(&self) -> Option<RolloutPhase> {
        self.status.as_ref().map(|s| s.phase)
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
    }
}

fn pass(req: &AnalysisRequest) -> Judgment {
    Judgment::Verdict(verdict(VerdictKind::Pass, req.since_ms))
}

fn never(_: &AnalysisRequest) -> Judgment {
    panic!("no analysis expected")
}

#[test]
fn canary_counts_round_up_and_keep_at_least_one_node() {
    assert_eq!(canary_count(0, 5), 0);
    assert_eq!(canary_count(1, 5), 1);
    assert_eq!(canary_count(20, 5), 1);
    assert_eq!(canary_count(21, 5), 2);
    assert_eq!(canary_count(8, 25), 2);
    assert_eq!(canary_count(8, 50), 4);
    assert_eq!(canary_count(8, 100), 8);
}

#[test]
fn canary_choice_is_deterministic_nested_and_spread() {
    let nodes = names(40);
    let mut previous: Vec<String> = Vec::new();
    for percent in [5, 25, 50, 100] {
        let chosen = choose_canaries("porto", &nodes, &previous, percent);
        assert_eq!(chosen.len(), canary_count(40, percent));
        assert_eq!(chosen, choose_canaries("porto", &nodes, &previous, percent));
        assert!(previous.iter().all(|p| chosen.contains(p)), "nested");
        previous = chosen;
    }
    // Spread: the first half of the steps is not simply the alphabetically first nodes,
    // and another region picks other nodes.
    let half = choose_canaries("porto", &nodes, &[], 50);
    let early = half.iter().filter(|n| nodes[..20].contains(n)).count();
    assert!(
        (5..=15).contains(&early),
        "{early} of 20 from the first half: {half:?}"
    );
    assert_ne!(half, choose_canaries("lisbon", &nodes, &[], 50));
    // Kept nodes that left the region are not chosen.
    let kept = choose_canaries("porto", &names(3), &["gone".into()], 5);
    assert_eq!(kept.len(), 1);
    assert!(!kept.contains(&"gone".to_string()));
}

#[test]
fn the_first_version_of_a_region_is_not_a_rollout() {
    let mut w = World::new(4);
    w.stable = None;
    w.spec_version = "0.2.0".into();
    let plan = w.step(never);
    assert_eq!(plan.status, None);
    assert_eq!(plan.stable_version, "0.2.0");
    assert_eq!(plan.canary_version, None);
    assert!(plan.canary_nodes.is_empty());
}

#[test]
fn a_healthy_canary_passes_every_step_then_promotes_and_cleans_up() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    let plan = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Progressing));
    assert_eq!(plan.stable_version, "0.1.0");
    assert_eq!(plan.canary_version.as_deref(), Some("0.2.0"));
    assert_eq!(plan.canary_nodes.len(), 1);
    assert_eq!(plan.events[0].reason, "RolloutStarted");
    // Nothing is judged before the window ends.
    w.advance(59_000);
    let same = w.step(never);
    assert_eq!(same.canary_nodes.len(), 1);
    assert!(same.events.is_empty());
    let mut sizes = vec![1];
    for _ in 0..3 {
        w.advance(1_000);
        let plan = w.step(pass);
        sizes.push(plan.canary_nodes.len());
        assert_eq!(plan.events[0].reason, "RolloutStepAdvanced");
        w.advance(59_000);
    }
    assert_eq!(sizes, [1, 2, 4, 8]);
    // The last step passes: the stable DaemonSet moves first, labels stay until it is done.
    w.advance(1_000);
    w.stable = Some(StableObserved {
        version: "0.1.0".into(),
        complete: true,
    });
    let judgment = analysis_due(&w.input(None)).map(|r| pass(&r));
    let plan = decide(&w.input(judgment));
    assert_eq!(plan.status.as_ref().unwrap().phase, RolloutPhase::Promoted);
    assert_eq!(plan.stable_version, "0.2.0");
    assert_eq!(plan.canary_version.as_deref(), Some("0.2.0"));
    assert_eq!(plan.canary_nodes.len(), 8);
    w.status = plan.status;
    w.stable = Some(StableObserved {
        version: "0.2.0".into(),
        complete: false,
    });
    assert_eq!(decide(&w.input(None)).canary_nodes.len(), 8);
    w.stable = Some(StableObserved {
        version: "0.2.0".into(),
        complete: true,
    });
    let done = w.step(never);
    assert!(done.canary_nodes.is_empty());
    assert_eq!(done.canary_version, None);
    assert_eq!(done.stable_version, "0.2.0");
    assert_eq!(done.events[0].reason, "CanaryRemoved");
    // And it stays quiet afterwards, even when the stable DaemonSet loses a pod.
    w.advance(600_000);
    w.stable = Some(StableObserved {
        version: "0.2.0".into(),
        complete: false,
    });
    let quiet = decide(&w.input(None));
    assert!(quiet.events.is_empty());
    assert_eq!(quiet.status, w.status);
    assert_eq!(quiet.canary_version, None);
}

#[test]
fn a_failing_canary_rolls_back_at_once() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.advance(60_000);
    let plan = w.step(|r| Judgment::Verdict(verdict(VerdictKind::Fail, r.since_ms)));
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.phase, RolloutPhase::RolledBack);
    assert!(s.reason.contains("Fail by the test"), "{}", s.reason);
    assert_eq!(s.last_verdict.as_ref().unwrap().kind, VerdictKind::Fail);
    assert_eq!(plan.stable_version, "0.1.0");
    assert_eq!(plan.canary_version, None);
    assert!(plan.canary_nodes.is_empty());
    assert!(plan.events[0].warning);
    // The spec still says 0.2.0, but the rollout is over: stable keeps 0.1.0.
    w.advance(600_000);
    let after = w.step(never);
    assert_eq!(after.stable_version, "0.1.0");
    assert_eq!(after.canary_version, None);
}

#[test]
fn inconclusive_holds_then_pauses_and_never_rolls_back() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    let canaries = w.status.as_ref().unwrap().canary_nodes.clone();
    let idle =
        |r: &AnalysisRequest| Judgment::Verdict(verdict(VerdictKind::Inconclusive, r.since_ms));
    w.advance(60_000);
    let plan = w.step(idle);
    assert_eq!(w.phase(), Some(RolloutPhase::Holding));
    assert_eq!(plan.events[0].reason, "RolloutHolding");
    assert_eq!(plan.canary_nodes, canaries);
    for _ in 0..4 {
        w.advance(60_000);
        w.step(idle);
        assert_eq!(w.phase(), Some(RolloutPhase::Holding));
    }
    w.advance(60_000);
    let paused = w.step(idle);
    assert_eq!(w.phase(), Some(RolloutPhase::Paused));
    assert!(
        paused
            .events
            .iter()
            .any(|e| e.reason == "RolloutPaused" && e.warning)
    );
    assert_eq!(paused.canary_nodes, canaries, "paused, not rolled back");
    assert_eq!(paused.canary_version.as_deref(), Some("0.2.0"));
    // Paused: no more analyses.
    w.advance(600_000);
    w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Paused));
    // A resume starts a fresh window of the same step.
    w.action = Some("resume:1".into());
    let resumed = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Progressing));
    assert_eq!(resumed.acknowledged.as_deref(), Some("resume:1"));
    assert_eq!(w.status.as_ref().unwrap().step_started_at_ms, w.now);
}

#[test]
fn silence_and_judge_errors_hold_and_a_pass_afterwards_moves_on() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.advance(60_000);
    w.step(|r| Judgment::Verdict(verdict(VerdictKind::Silent, r.since_ms)));
    assert_eq!(w.phase(), Some(RolloutPhase::Holding));
    let since = w.status.as_ref().unwrap().holding_since_ms;
    w.advance(60_000);
    w.step(|_| Judgment::Unavailable("center unreachable".into()));
    let s = w.status.clone().unwrap();
    assert_eq!(s.phase, RolloutPhase::Holding);
    assert_eq!(s.holding_since_ms, since, "the hold keeps its start");
    assert!(s.reason.contains("center unreachable"));
    assert_eq!(s.step, 0);
    w.advance(60_000);
    w.step(pass);
    let s = w.status.clone().unwrap();
    assert_eq!(
        (s.phase, s.step, s.holding_since_ms),
        (RolloutPhase::Progressing, 1, None)
    );
}

#[test]
fn operators_promote_abort_and_pause_through_the_action() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.action = Some("pause".into());
    w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Paused));
    w.action = Some("promote:2".into());
    let plan = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Promoted));
    assert_eq!(plan.stable_version, "0.2.0");
    // The same value again is not a new command.
    let again = w.step(never);
    assert_eq!(again.acknowledged, None);

    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.action = Some("Abort:x".into());
    let plan = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::RolledBack));
    assert_eq!(plan.status.unwrap().reason, "aborted by an operator");
    assert!(plan.canary_nodes.is_empty());
    // Nonsense is acknowledged with a warning and changes nothing.
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.action = Some("yolo".into());
    let plan = w.step(never);
    assert_eq!(plan.acknowledged.as_deref(), Some("yolo"));
    assert_eq!(plan.events[0].reason, "RolloutActionInvalid");
    assert_eq!(w.phase(), Some(RolloutPhase::Progressing));
}

#[test]
fn spec_paused_freezes_and_unpausing_resumes() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.paused = true;
    w.action = Some("abort".into());
    w.advance(120_000);
    let plan = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Paused));
    assert_eq!(
        plan.acknowledged, None,
        "actions wait for the region to resume"
    );
    w.paused = false;
    w.action = None;
    w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::Progressing));
}

#[test]
fn nodes_joining_mid_step_stay_stable_and_leaving_canaries_are_replaced() {
    let mut w = World::new(4);
    w.spec_version = "0.2.0".into();
    let first = w.step(never).canary_nodes;
    assert_eq!(first.len(), 1);
    w.nodes.extend([
        "new-a".to_string(),
        "new-b".to_string(),
        "new-c".to_string(),
    ]);
    w.nodes.sort();
    let plan = w.step(never);
    assert_eq!(
        plan.canary_nodes, first,
        "joiners stay stable within the step"
    );
    w.nodes.retain(|n| !first.contains(n));
    let plan = w.step(never);
    assert_eq!(plan.canary_nodes.len(), 1);
    assert_ne!(plan.canary_nodes, first);
}

#[test]
fn spec_changes_mid_rollout_restart_or_roll_back() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    w.step(never);
    w.spec_version = "0.3.0".into();
    let plan = w.step(never);
    let s = plan.status.unwrap();
    assert_eq!(
        (s.from_version.as_deref(), s.to_version.as_str()),
        (Some("0.1.0"), "0.3.0")
    );
    assert_eq!(plan.events[0].reason, "RolloutRestarted");
    w.spec_version = "0.1.0".into();
    let plan = w.step(never);
    assert_eq!(w.phase(), Some(RolloutPhase::RolledBack));
    assert_eq!(plan.stable_version, "0.1.0");
}

#[test]
fn wake_at_is_the_next_analysis_or_the_end_of_the_hold() {
    let mut w = World::new(8);
    w.spec_version = "0.2.0".into();
    let plan = w.step(never);
    assert_eq!(wake_at(&plan, &w.policy), Some(w.now + 60_000));
    w.policy.max_inconclusive_seconds = 30;
    w.advance(60_000);
    let plan = w.step(|_| Judgment::Unavailable("no center configured".into()));
    assert_eq!(wake_at(&plan, &w.policy), Some(w.now + 30_000));
}
