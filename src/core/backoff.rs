//! Capped exponential backoff with jitter, pure: the caller passes the random number, so
//! tests are tables. Used for device reopen ([`Backoff::DEVICE_REOPEN`], 50 ms .. 2 s) and
//! outbox delivery ([`Backoff::OUTBOX_DELIVERY`], 1 s .. 60 s).
//!
//! **Equal jitter**: attempt `n` waits between half and all of its step
//! `min(cap, base * 2^n)`, uniformly. Chosen over "full jitter" (anywhere in `0..=step`)
//! because a retry never comes sooner than half the step: an unlucky run of small draws
//! cannot turn into a tight loop against a dead device or a down controller, while retries
//! of a fleet of boxes still spread over half the step after an outage.
//!
//! Reset after a success ([`Backoff::reset`]): the next failure starts again from `base`.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Failures since the last success: the exponent of the next step.
    attempt: u32,
}

impl Backoff {
    /// Reopening a lost capture device: fast at first (a replug takes ~100 ms), never
    /// slower than every 2 s (the gap in the recording grows while we wait).
    pub const DEVICE_REOPEN: Backoff =
        Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

    /// Delivering outbox rows to the controller.
    pub const OUTBOX_DELIVERY: Backoff =
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

    /// A cap below `base` is raised to `base`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        let cap = if cap.as_nanos() < base.as_nanos() {
            base
        } else {
            cap
        };
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The same backoff after `attempt` failures, e.g. rebuilt from an outbox row's
    /// journaled attempt count after a restart.
    pub const fn with_attempt(self, attempt: u32) -> Backoff {
        Backoff { attempt, ..self }
    }

    pub const fn base(&self) -> Duration {
        self.base
    }

    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// Failures since the last success.
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next step before jitter: `min(cap, base * 2^attempt)`, saturating.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt, and counts the failure. `jitter_unit` is a random
    /// number in `0..=1` (out of range is clamped; NaN counts as 1, the longest wait).
    pub fn next_delay(&mut self, jitter_unit: f64) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if jitter_unit.is_nan() {
            1.0
        } else {
            jitter_unit.clamp(0.0, 1.0)
        };
        let half = step / 2;
        // `step - half`, not `half`: an odd step in nanoseconds still reaches `step` at 1.0.
        half + (step - half).mul_f64(jitter)
    }

    /// After a success the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        // One backoff driven through the table: (jitter, expected delay).
        let mut b = Backoff::new(ms(50), ms(2000));
        let table = [
            (0.0, ms(25)),   // step 50
            (1.0, ms(100)),  // step 100
            (0.5, ms(150)),  // step 200: 100 + 50
            (0.0, ms(200)),  // step 400
            (1.0, ms(800)),  // step 800
            (1.0, ms(1600)), // step 1600
            (1.0, ms(2000)), // step capped
            (0.0, ms(1000)), // capped, least jitter: half the cap
            (7.0, ms(2000)), // out-of-range jitter is clamped
            (-3.0, ms(1000)),
            (f64::NAN, ms(2000)), // NaN waits longest, never panics
        ];
        for (i, (jitter, want)) in table.into_iter().enumerate() {
            assert_eq!(b.next_delay(jitter), want, "attempt {i}");
        }
        assert_eq!(b.attempt(), 11);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(1.0), ms(50));
    }

    #[test]
    fn bounds_per_attempt() {
        // (backoff, attempt, least delay, greatest delay)
        let table = [
            (Backoff::DEVICE_REOPEN, 0, ms(25), ms(50)),
            (Backoff::DEVICE_REOPEN, 5, ms(800), ms(1600)),
            (Backoff::DEVICE_REOPEN, 6, ms(1000), ms(2000)),
            (Backoff::DEVICE_REOPEN, 1000, ms(1000), ms(2000)),
            (Backoff::OUTBOX_DELIVERY, 0, ms(500), ms(1000)),
            (Backoff::OUTBOX_DELIVERY, 5, ms(16_000), ms(32_000)),
            (Backoff::OUTBOX_DELIVERY, 6, ms(30_000), ms(60_000)),
            (Backoff::OUTBOX_DELIVERY, u32::MAX, ms(30_000), ms(60_000)),
            // A cap below the base is raised to it.
            (Backoff::new(ms(100), ms(10)), 3, ms(50), ms(100)),
            // Odd nanosecond steps still reach the whole step.
            (
                Backoff::new(Duration::from_nanos(3), Duration::from_nanos(3)),
                0,
                Duration::from_nanos(1),
                Duration::from_nanos(3),
            ),
            (
                Backoff::new(Duration::ZERO, ms(10)),
                9,
                Duration::ZERO,
                Duration::ZERO,
            ),
        ];
        for (b, attempt, least, most) in table {
            let b = b.with_attempt(attempt);
            let label = format!("{b:?}");
            assert_eq!(b.with_attempt(attempt).next_delay(0.0), least, "{label}");
            assert_eq!(b.with_attempt(attempt).next_delay(1.0), most, "{label}");
            let mid = b.with_attempt(attempt).next_delay(0.37);
            assert!(least <= mid && mid <= most, "{label}: {mid:?}");
        }
    }

    #[test]
    fn attempt_counter_never_overflows() {
        let mut b = Backoff::OUTBOX_DELIVERY.with_attempt(u32::MAX);
        assert_eq!(b.next_delay(1.0), Duration::from_secs(60));
        assert_eq!(b.attempt(), u32::MAX);
        let huge = Backoff::new(Duration::MAX, Duration::MAX).with_attempt(40);
        assert_eq!(huge.step(), Duration::MAX);
    }

    #[test]
    fn constants_are_what_the_design_says() {
        assert_eq!(
            (Backoff::DEVICE_REOPEN.base(), Backoff::DEVICE_REOPEN.cap()),
            (ms(50), ms(2000))
        );
        assert_eq!(
            (
                Backoff::OUTBOX_DELIVERY.base(),
                Backoff::OUTBOX_DELIVERY.cap()
            ),
            (ms(1000), ms(60_000))
        );
    }
}
