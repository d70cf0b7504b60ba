//! The packed search weight: duration first, distance as the tie-breaker.

/// Duration in milliseconds in the high 32 bits, distance in decimetres in the low 32 bits.
///
/// Adding two packed weights adds both parts as long as the distance sum stays below 2^32 dm
/// (429,000 km), which no route on Earth reaches; comparing them compares durations and then
/// distances. That makes a single `u64` the whole state of a shortest-path search while
/// keeping the answer's distance well defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Weight(pub(crate) u64);

impl Weight {
    pub(crate) const ZERO: Weight = Weight(0);
    pub(crate) const INFINITY: Weight = Weight(u64::MAX);

    pub(crate) fn new(duration_ms: u32, distance_dm: u32) -> Self {
        Weight(((duration_ms as u64) << 32) | distance_dm as u64)
    }

    pub(crate) fn duration_ms(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub(crate) fn distance_dm(self) -> u32 {
        (self.0 & 0xffff_ffff) as u32
    }

    pub(crate) fn duration_s(self) -> f64 {
        f64::from(self.duration_ms()) / 1000.0
    }

    pub(crate) fn distance_m(self) -> f64 {
        f64::from(self.distance_dm()) / 10.0
    }

    pub(crate) fn is_infinite(self) -> bool {
        self == Self::INFINITY
    }

    /// Saturating so an "unreachable" weight stays unreachable when offsets are added.
    pub(crate) fn add(self, other: Weight) -> Weight {
        Weight(self.0.saturating_add(other.0))
    }

    /// The share of this weight covered by `fraction` of an edge, each part rounded on its
    /// own. Both the CH query and the oracle use this, so partial edges agree exactly.
    pub(crate) fn scale(self, fraction: f64) -> Weight {
        let f = fraction.clamp(0.0, 1.0);
        let d = (f64::from(self.duration_ms()) * f).round() as u32;
        let m = (f64::from(self.distance_dm()) * f).round() as u32;
        Weight::new(d, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_orders_lexicographically() {
        let a = Weight::new(1000, 50);
        let b = Weight::new(1000, 40);
        let c = Weight::new(999, 9_000_000);
        assert!(b < a && c < b);
        let s = a.add(b);
        assert_eq!(s.duration_ms(), 2000);
        assert_eq!(s.distance_dm(), 90);
        assert!(Weight::INFINITY.add(a).is_infinite());
        assert_eq!(Weight::new(1000, 10).scale(0.25), Weight::new(250, 3));
    }
}
