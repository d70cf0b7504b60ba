//! Where a snapped point enters and leaves the hierarchy: the directed edges it lies on and
//! the hierarchy nodes at their ends.

use super::Graph;
use crate::network::{EdgeId, Road};
use crate::snap::Snap;
use crate::weight::Weight;

impl Graph {
    /// The road a snap lies on, if the snap was made by this graph. A snap from another
    /// graph (say, one taken before a version swap) has no meaning here; it is treated as
    /// unroutable rather than indexing into the wrong road.
    pub(super) fn road_of(&self, s: &Snap) -> Option<&Road> {
        if s.graph == self.id {
            self.net.roads.get(s.road as usize)
        } else {
            None
        }
    }

    /// The directed edges a snapped point lies on, each with the cost of the part of it
    /// driven: from the point to the edge's end when `leaving`, from the edge's start to
    /// the point otherwise. The hierarchy and the oracle both start and end searches here.
    pub(crate) fn edge_seeds(&self, s: &Snap, leaving: bool) -> Vec<(EdgeId, Weight)> {
        let Some(r) = self.road_of(s) else {
            return Vec::new();
        };
        let mut seeds = Vec::with_capacity(2);
        if !r.forward.is_infinite() {
            let share = if leaving {
                1.0 - s.fraction
            } else {
                s.fraction
            };
            seeds.push((EdgeId::new(s.road, false), r.forward.scale(share)));
        }
        if !r.backward.is_infinite() {
            let share = if leaving {
                s.fraction
            } else {
                1.0 - s.fraction
            };
            seeds.push((EdgeId::new(s.road, true), r.backward.scale(share)));
        }
        seeds
    }

    /// Seeds for leaving a snapped point: the node each drivable direction of its road
    /// arrives at (a split node when a restriction starts on that edge), with the cost of
    /// the rest of the road.
    pub(crate) fn source_seeds(&self, s: &Snap) -> Vec<(u32, Weight)> {
        self.edge_seeds(s, true)
            .into_iter()
            .filter_map(|(e, w)| Some((self.turns.arrive(e)?, w)))
            .collect()
    }

    /// Seeds for arriving at a snapped point: every node its road's drivable directions
    /// leave from (the junction and any split node that allows the edge).
    pub(crate) fn target_seeds(&self, t: &Snap) -> Vec<(u32, Weight)> {
        self.edge_seeds(t, false)
            .into_iter()
            .flat_map(|(e, w)| self.turns.departures(e).map(move |n| (n, w)))
            .collect()
    }

    /// Cost of driving from `s` to `t` along their shared road without leaving it, if they
    /// are on the same road and the direction allows it.
    pub(crate) fn same_road(&self, s: &Snap, t: &Snap) -> Option<(Weight, bool)> {
        if s.road != t.road {
            return None;
        }
        let r = self.road_of(s)?;
        self.road_of(t)?;
        let forward = (!r.forward.is_infinite() && t.fraction >= s.fraction)
            .then(|| (r.forward.scale(t.fraction - s.fraction), false));
        let backward = (!r.backward.is_infinite() && t.fraction <= s.fraction)
            .then(|| (r.backward.scale(s.fraction - t.fraction), true));
        match (forward, backward) {
            (Some(f), Some(b)) => Some(if b.0 < f.0 { b } else { f }),
            (f, b) => f.or(b),
        }
    }
}
