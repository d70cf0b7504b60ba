//! Rollout metrics on the center's `/metrics`: `edgeroute_center_rollouts{phase}` (regions
//! whose current or last rollout is in each phase), `edgeroute_center_rollout_transitions_total{phase}`
//! and `edgeroute_center_rollout_verdicts_total{kind}`. Labels come from fixed sets only.

use edgeroute_protocol::rollout::{RolloutPhase, VerdictKind};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Every phase, in label order.
pub const PHASES: [RolloutPhase; 5] = [
    RolloutPhase::Progressing,
    RolloutPhase::Paused,
    RolloutPhase::Holding,
    RolloutPhase::Promoted,
    RolloutPhase::RolledBack,
];
/// Every verdict kind.
pub const KINDS: [VerdictKind; 4] = [
    VerdictKind::Pass,
    VerdictKind::Fail,
    VerdictKind::Inconclusive,
    VerdictKind::Silent,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The rollout series (clones share them).
#[derive(Debug, Clone, Default)]
pub struct RolloutMetrics {
    phases: Family<PhaseLabels, Gauge>,
    transitions: Family<PhaseLabels, Counter>,
    verdicts: Family<KindLabels, Counter>,
}

impl RolloutMetrics {
    /// Register the series in `registry`, every label value at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "rollouts",
            "Regions whose current or last rollout is in each phase (known to this center)",
            m.phases.clone(),
        );
        registry.register(
            "rollout_transitions",
            "Rollout phase changes, by the phase entered",
            m.transitions.clone(),
        );
        registry.register(
            "rollout_verdicts",
            "Judged rollout analysis windows, by verdict",
            m.verdicts.clone(),
        );
        for phase in PHASES {
            let labels = PhaseLabels {
                phase: phase.as_str(),
            };
            let _ = m.phases.get_or_create(&labels);
            let _ = m.transitions.get_or_create(&labels);
        }
        for kind in KINDS {
            let _ = m.verdicts.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        m
    }

    /// Count a judged window.
    pub fn verdict(&self, kind: VerdictKind) {
        self.verdicts
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Count a phase change.
    pub fn transition(&self, to: RolloutPhase) {
        self.transitions
            .get_or_create(&PhaseLabels { phase: to.as_str() })
            .inc();
    }

    /// Set the gauge from the phases of every known region's rollout.
    pub fn set_phases(&self, phases: impl Iterator<Item = RolloutPhase>) {
        let mut counts = [0i64; PHASES.len()];
        for p in phases {
            if let Some(i) = PHASES.iter().position(|q| *q == p) {
                counts[i] += 1;
            }
        }
        for (phase, n) in PHASES.iter().zip(counts) {
            self.phases
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(n);
        }
    }
}
