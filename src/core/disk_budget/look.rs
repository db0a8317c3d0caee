//! When the writer next looks at the free space. Each look is a `statvfs` (and, below
//! the reclaim mark, a reclaim pass); far from the marks nothing can change before the
//! disk has filled down to the first of them, so the look waits until then.
//!
//! The fill rate is a worst case the caller supplies (its own write rate with a margin,
//! or faster when the free space was seen falling faster); a fill nobody predicted (an
//! other process taking the disk at once) still pauses at the next write, on `ENOSPC`.

use std::time::Duration;

use super::{DiskBudget, DiskState};

/// The longest the free space goes unlooked-at while writing far from the marks.
pub const MAX_LOOK_EVERY: Duration = Duration::from_secs(10);

impl DiskBudget {
    /// Pure: how long after a look at `free_bytes` (in `state`) the next one is due, if
    /// the disk fills at most at `fill_rate` bytes a second: when the reclaim mark (the
    /// first mark that asks for anything while writing) could first be reached, at most
    /// `max`. Zero, a look at every turn, while paused (waiting to resume) or below the
    /// reclaim mark (reclaim and the reserve need every look).
    pub fn look_again_in(
        &self,
        state: DiskState,
        free_bytes: u64,
        fill_rate: u64,
        max: Duration,
    ) -> Duration {
        if state == DiskState::Paused || free_bytes < self.reclaim_below {
            return Duration::ZERO;
        }
        let headroom = free_bytes - self.reclaim_below;
        match fill_rate {
            0 => max,
            rate => Duration::from_secs_f64(headroom as f64 / rate as f64).min(max),
        }
    }
}

/// Pure: the rate the free space fell at between two looks (bytes a second; 0 when it
/// grew or no time passed).
pub fn observed_fill_rate(before: u64, after: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0;
    }
    (before.saturating_sub(after) as f64 / secs) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn far_from_the_marks_the_look_waits_until_the_reclaim_mark_could_be_reached() {
        let b = DiskBudget::new(100, 200, 400).unwrap();
        // (state, free, rate, next look)
        let table = [
            (DiskState::Writing, 1_400, 100, S(10)),
            (DiskState::Writing, 1_400, 200, S(5)),
            (DiskState::Writing, 100_000, 100, MAX_LOOK_EVERY),
            (DiskState::Writing, 1_400, 0, MAX_LOOK_EVERY),
            (DiskState::Writing, 400, 100, Duration::ZERO),
            (DiskState::Writing, 399, 100, Duration::ZERO),
            (DiskState::Writing, 50, 100, Duration::ZERO),
            (DiskState::Paused, 100_000, 100, Duration::ZERO),
        ];
        for (state, free, rate, want) in table {
            assert_eq!(
                b.look_again_in(state, free, rate, S(30))
                    .min(MAX_LOOK_EVERY),
                want,
                "{state:?} {free} B free at {rate} B/s"
            );
        }
        assert_eq!(b.look_again_in(DiskState::Writing, 1_400, 1, S(3)), S(3));
    }

    #[test]
    fn the_observed_rate_counts_only_a_fall() {
        assert_eq!(observed_fill_rate(10_000, 4_000, S(2)), 3_000);
        assert_eq!(observed_fill_rate(4_000, 10_000, S(2)), 0);
        assert_eq!(observed_fill_rate(10_000, 4_000, Duration::ZERO), 0);
    }
}
