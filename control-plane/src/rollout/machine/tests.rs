use edgeroute_protocol::rollout::ArmFigures;

use super::*;

fn nodes(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("edge-{i:02}")).collect()
}

fn policy() -> RolloutSpec {
    RolloutSpec {
        steps: vec![5, 25, 50, 100],
        analysis_window_seconds: 60,
        max_inconclusive_seconds: 300,
        ..RolloutSpec::default()
    }
}

fn verdict(kind: VerdictKind, at_ms: u64) -> Verdict {
    Verdict {
        kind,
        reason: format!("{} figures", kind.as_str()),
        at_ms,
        canary: ArmFigures::default(),
        stable: ArmFigures::default(),
    }
}

fn start(n: usize) -> RolloutRecord {
    RolloutRecord::start(
        RolloutTarget::Graph,
        Some("v1".into()),
        "v2".into(),
        policy(),
        &nodes(n),
        1_000,
    )
}

#[test]
fn steps_choose_at_least_one_node_and_keep_earlier_canaries() {
    assert_eq!(step_size(20, 5), 1);
    assert_eq!(step_size(3, 5), 1);
    assert_eq!(step_size(20, 25), 5);
    assert_eq!(step_size(21, 25), 6);
    assert_eq!(step_size(0, 50), 0);
    assert_eq!(step_size(7, 100), 7);
    let all = nodes(20);
    let mut previous: Vec<String> = Vec::new();
    for p in [5, 25, 50, 100] {
        let chosen = choose_canaries(&all, &previous, p, "v2");
        assert_eq!(chosen.len(), step_size(20, p));
        assert!(previous.iter().all(|n| chosen.contains(n)), "{p}%");
        // Deterministic.
        assert_eq!(chosen, choose_canaries(&all, &previous, p, "v2"));
        previous = chosen;
    }
    // Spread: another version picks other first canaries (with 20 nodes, by hash).
    let firsts: std::collections::BTreeSet<Vec<String>> = (0..8)
        .map(|v| choose_canaries(&all, &[], 5, &format!("v{v}")))
        .collect();
    assert!(firsts.len() > 1, "{firsts:?}");
}

#[test]
fn a_healthy_rollout_promotes_through_every_step() {
    let all = nodes(20);
    let mut r = start(20);
    assert_eq!(r.status.canary_nodes.len(), 1);
    assert!(!r.due(1_000 + 59_999));
    let mut now = 1_000;
    for (i, want) in [5usize, 10, 20].into_iter().enumerate() {
        now += 60_000;
        assert!(r.due(now));
        let t = r
            .on_verdict(verdict(VerdictKind::Pass, now), &all, now)
            .unwrap();
        assert_eq!(t.to, RolloutPhase::Progressing);
        assert_eq!(r.status.step as usize, i + 1);
        assert_eq!(r.status.canary_nodes.len(), want);
        assert_eq!(r.status.step_started_at_ms, now);
    }
    assert_eq!(r.status.step_percent, 100);
    now += 60_000;
    let t = r
        .on_verdict(verdict(VerdictKind::Pass, now), &all, now)
        .unwrap();
    assert_eq!(t.to, RolloutPhase::Promoted);
    assert!(r.status.canary_nodes.is_empty());
    assert!(!r.is_canary("edge-01"));
    assert!(!r.due(now + 1_000_000));
}

#[test]
fn a_failed_window_rolls_back_at_once() {
    let mut r = start(20);
    let canary = r.status.canary_nodes[0].clone();
    assert!(r.is_canary(&canary));
    let t = r
        .on_verdict(verdict(VerdictKind::Fail, 61_000), &nodes(20), 61_000)
        .unwrap();
    assert_eq!(t.to, RolloutPhase::RolledBack);
    assert!(t.reason.contains("rolled back to v1"), "{}", t.reason);
    assert!(t.reason.contains("Fail figures"), "{}", t.reason);
    assert!(!r.is_canary(&canary));
    assert!(r.act(RolloutAction::Promote, 62_000).is_err());
}

#[test]
fn inconclusive_windows_hold_then_pause() {
    let all = nodes(4);
    let mut r = start(4);
    let mut now = 61_000;
    let t = r
        .on_verdict(verdict(VerdictKind::Inconclusive, now), &all, now)
        .unwrap();
    assert_eq!(t.to, RolloutPhase::Holding);
    assert_eq!(r.status.holding_since_ms, Some(now));
    // Judged again a window after the last judgement, not on every tick.
    assert!(!r.due(now + 59_000));
    assert!(r.due(now + 60_000));
    for _ in 0..4 {
        now += 60_000;
        let t = r
            .on_verdict(verdict(VerdictKind::Silent, now), &all, now)
            .unwrap();
        assert_eq!(t.to, RolloutPhase::Holding);
    }
    now += 60_000;
    let t = r
        .on_verdict(verdict(VerdictKind::Silent, now), &all, now)
        .unwrap();
    assert_eq!(t.to, RolloutPhase::Paused, "{}", t.reason);
    assert!(!r.due(now + 1_000_000), "a paused rollout is not judged");
    assert!(
        r.on_verdict(verdict(VerdictKind::Fail, now), &all, now)
            .is_none()
    );
    // Resume: a fresh window, no longer holding.
    let t = r.act(RolloutAction::Resume, now + 5).unwrap();
    assert_eq!(t.to, RolloutPhase::Progressing);
    assert_eq!(r.status.holding_since_ms, None);
    assert_eq!(r.next_judgement_ms(), Some(now + 5 + 60_000));
    // A pass after a hold goes on.
    let t = r
        .on_verdict(verdict(VerdictKind::Pass, now + 60_005), &all, now + 60_005)
        .unwrap();
    assert_eq!(t.to, RolloutPhase::Progressing);
    assert_eq!(r.status.step, 1);
}

#[test]
fn operators_promote_abort_pause_and_resume() {
    let mut r = start(10);
    assert!(r.act(RolloutAction::Resume, 2).is_err(), "not paused");
    assert_eq!(
        r.act(RolloutAction::Pause, 2).unwrap().to,
        RolloutPhase::Paused
    );
    assert_eq!(
        r.act(RolloutAction::Resume, 3).unwrap().to,
        RolloutPhase::Progressing
    );
    assert_eq!(
        r.act(RolloutAction::Promote, 4).unwrap().to,
        RolloutPhase::Promoted
    );
    assert!(r.act(RolloutAction::Abort, 5).is_err(), "over");
    let mut r = start(10);
    assert_eq!(
        r.act(RolloutAction::Abort, 4).unwrap().to,
        RolloutPhase::RolledBack
    );
    let err = r.act(RolloutAction::Pause, 5).unwrap_err();
    assert!(err.0.contains("over"), "{err}");
}

#[test]
fn a_node_added_mid_rollout_stays_stable_until_a_step_takes_it() {
    let mut r = start(20);
    let before = r.status.canary_nodes.clone();
    let mut more = nodes(20);
    more.push("edge-new".into());
    assert!(!r.is_canary("edge-new"));
    r.on_verdict(verdict(VerdictKind::Pass, 61_000), &more, 61_000);
    assert!(before.iter().all(|n| r.status.canary_nodes.contains(n)));
    assert_eq!(r.status.canary_nodes.len(), step_size(21, 25));
}

#[test]
fn the_record_survives_a_round_trip_through_json() {
    let mut r = start(20);
    r.on_verdict(verdict(VerdictKind::Pass, 61_000), &nodes(20), 61_000);
    let json = serde_json::to_vec(&r).unwrap();
    let back: RolloutRecord = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.next_judgement_ms(), Some(121_000));
}

#[test]
fn supersede_ends_a_running_rollout_only() {
    let mut r = start(5);
    let t = r.supersede("v3", 9).unwrap();
    assert_eq!(t.to, RolloutPhase::RolledBack);
    assert!(t.reason.contains("superseded by version v3"));
    assert!(r.supersede("v4", 10).is_none());
}
