//! Retry delays: exponential with "equal jitter", so a fleet that lost the center at the
//! same moment does not come back in lockstep, yet no agent waits less than half its step.

use std::time::Duration;

/// Exponential backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays start at `base` and double per failure up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Count a failure and return how long to wait; `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let lows: Vec<_> = (0..6).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(lows, [50, 100, 200, 400, 500, 500]);
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.next_delay(0.999_999).as_millis(), 99);
        assert_eq!(b.next_delay(1.0).as_millis(), 200);
        // Many failures never overflow.
        for _ in 0..100 {
            assert!(b.next_delay(0.5) <= Duration::from_secs(1));
        }
    }
}
