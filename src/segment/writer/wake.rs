//! When the writer thread wakes. It never polls: it parks on the capture events channel
//! (a gap or the stream's end wakes it at once) until its next deadline, the earliest of
//! - its turn (`turn`: drain, disk check, meter, progress, and the header and the sync
//!   when due, in one wake-up; twice per sync interval),
//! - the ring reaching its fill mark at the stream's rate (so a short ring never fills),
//! - the job's last frame arriving (the job ends on its frame, not a second late),
//! - the stream going silent for the stall guard (the supervisor is rung then, and ends
//!   the run: it does not wake to look for stalls itself),
//!
//! or when the stream ends (the capture thread unparks it once, leaving its loop).
//! For frames the capture thread never notifies: it stays a ring push and atomics, with
//! no syscall but the device's; the writer works out from the stream's rate when frames
//! will be there instead. Work due within [`COALESCE`] is served on the same wake-up.
//! During the stream's first second it looks more often, so the first frame is dated
//! and journaled promptly.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringbuf::traits::Observer as _;

use super::Writer;

/// The ring is drained once it is this full (the rest absorbs a slow write).
const FILL_MARK: f64 = 0.5;
/// Work due this soon is done now rather than after another wake-up.
pub(super) const COALESCE: Duration = Duration::from_millis(100);
/// How often the writer looks while the stream's first second arrives.
const EARLY_LOOK: Duration = Duration::from_millis(50);

/// Pure: the earliest of the deadlines, from what the writer knows now.
#[derive(Clone, Copy, Debug)]
pub(super) struct WakePlan {
    /// Until the writer's next turn.
    pub turn: Duration,
    /// Frames waiting in the ring, and its capacity in frames.
    pub occupied: u64,
    pub capacity: u64,
    /// Frames until the job's end, if it has one.
    pub until_stop: Option<u64>,
    /// Until the silence since the last frame is a stall (`None`: the stream ended).
    pub until_stall: Option<Duration>,
    pub rate: u32,
}

impl WakePlan {
    pub(super) fn timeout(&self) -> Duration {
        let rate = f64::from(self.rate.max(1));
        let frames_to = |frames: u64| Duration::from_secs_f64(frames as f64 / rate);
        let mark = (self.capacity as f64 * FILL_MARK) as u64;
        let fill = frames_to(mark.saturating_sub(self.occupied));
        let stop = self.until_stop.map_or(Duration::MAX, |s| {
            frames_to(s.saturating_sub(self.occupied))
        });
        let stall = self.until_stall.unwrap_or(Duration::MAX);
        self.turn.min(fill).min(stop).min(stall)
    }
}

impl Writer {
    /// Parks until the next deadline, or until the stream's end unparks it. A gap
    /// event waits for the next deadline: it is applied in stream order anyway.
    pub(super) fn park(&mut self) {
        if !self.source.events.is_empty() {
            return;
        }
        // Spurious wake-ups only cost a look; the park token makes an end that comes
        // between the check above and here return at once.
        std::thread::park_timeout(self.next_wake().max(Duration::from_millis(1)));
    }

    fn next_wake(&self) -> Duration {
        let pushed = self.source.stats.frames_pushed.load(Ordering::Acquire);
        if !self.origin_known || pushed <= u64::from(self.cfg.spec.rate) {
            return EARLY_LOOK;
        }
        let bpf = self.cfg.spec.bytes_per_frame() as u64;
        WakePlan {
            turn: self.turn_due_in(),
            occupied: self.source.frames_available() as u64,
            capacity: self.source.cons.capacity().get() as u64 / bpf,
            until_stop: self
                .cfg
                .stop_at
                .map(|s| s.saturating_sub(self.timeline_pos)),
            until_stall: self.until_stall(),
            rate: self.cfg.spec.rate,
        }
        .timeout()
    }

    /// Until the stream's silence becomes a stall, unless that one was rung already or
    /// the stream has ended (its end rings the supervisor itself).
    fn until_stall(&self) -> Option<Duration> {
        let stats = &self.source.stats;
        let last = stats.last_frames_at();
        if stats.ended.load(Ordering::Acquire) || self.stall_rung_for == Some(last) {
            return None;
        }
        Some((last + self.cfg.stall_guard).saturating_duration_since(Instant::now()))
    }

    /// Rings the supervisor once the stream has been silent for the stall guard.
    pub(super) fn ring_on_stall(&mut self) {
        if self.until_stall().is_some_and(|left| left.is_zero()) {
            self.stall_rung_for = Some(self.source.stats.last_frames_at());
            self.progress.wake.ring();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> WakePlan {
        WakePlan {
            turn: Duration::from_millis(679),
            occupied: 0,
            capacity: 480_000, // 10 s at 48 kHz
            until_stop: None,
            until_stall: Some(Duration::from_secs(5)),
            rate: 48_000,
        }
    }

    #[test]
    fn a_long_ring_wakes_on_the_turn() {
        assert_eq!(plan().timeout(), Duration::from_millis(679));
    }

    #[test]
    fn a_short_ring_wakes_before_it_is_half_full() {
        // 1.36 s of ring (128 ch x 96 kHz S32 in 64 MiB), 0.2 s already waiting.
        let p = WakePlan {
            capacity: 130_000,
            occupied: 19_200,
            rate: 96_000,
            ..plan()
        };
        let t = p.timeout().as_secs_f64();
        assert!((t - (65_000.0 - 19_200.0) / 96_000.0).abs() < 1e-6, "{t}");
        let past_mark = WakePlan {
            occupied: 100_000,
            ..p
        };
        assert_eq!(past_mark.timeout(), Duration::ZERO);
    }

    #[test]
    fn the_jobs_last_frame_is_awaited_to_the_frame() {
        let p = WakePlan {
            until_stop: Some(12_000),
            occupied: 2_400,
            ..plan()
        };
        assert_eq!(p.timeout(), Duration::from_millis(200));
        let arrived = WakePlan {
            occupied: 12_000,
            ..p
        };
        assert_eq!(arrived.timeout(), Duration::ZERO);
    }

    #[test]
    fn a_silence_wakes_the_writer_when_it_becomes_a_stall() {
        let silent = WakePlan {
            until_stall: Some(Duration::from_millis(120)),
            ..plan()
        };
        assert_eq!(silent.timeout(), Duration::from_millis(120));
        let ended = WakePlan {
            until_stall: None,
            ..plan()
        };
        assert_eq!(ended.timeout(), Duration::from_millis(679));
    }
}
