//! Capped exponential backoff with jitter, pure: the caller passes the random number, so
//! tests are tables. Used for device reopen (50 ms .. 2 s) and outbox delivery (1 s .. 60 s).
//!
//! "Equal jitter": half the exponential step is fixed, half random, so retries never
//! collapse to zero delay (a storm) yet spread out across a fleet.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Failures since the last success.
    pub attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `jitter_unit` is a random number in 0..1.
    pub fn next_delay(&mut self, jitter_unit: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(jitter_unit.clamp(0.0, 1.0))
    }

    /// After a success the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(2000));
        // (jitter, expected delay)
        let table = [
            (0.0, ms(25)),
            (1.0, ms(100)),
            (0.5, ms(150)),
            (0.0, ms(200)),
            (1.0, ms(800)),
            (1.0, ms(1600)),
            (1.0, ms(2000)),
            (0.0, ms(1000)),
            (7.0, ms(2000)), // out-of-range jitter is clamped
        ];
        for (i, (jitter, want)) in table.into_iter().enumerate() {
            assert_eq!(b.next_delay(jitter), want, "attempt {i}");
        }
        b.reset();
        assert_eq!(b.next_delay(1.0), ms(50));
    }

    #[test]
    fn attempt_counter_never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        b.attempt = u32::MAX;
        assert_eq!(b.next_delay(1.0), Duration::from_secs(60));
    }
}
