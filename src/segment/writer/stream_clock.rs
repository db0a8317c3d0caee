//! The stream clock: when a run's frames were captured, in wall time, estimated without
//! the capture thread's scheduling delay. It dates the run's first frame (and closes the
//! gap the run resumes after) and the timeline's last frame.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{GapSince, Writer, WriterError, now_ms};
use crate::core::timeline::TimelineEvent;

impl Writer {
    /// Monotonic capture time of ring frame 0: one stream-length before the last push.
    fn ring_origin(&self) -> Instant {
        let (pushed, at) = self.source.stats.pushed_at();
        at.checked_sub(self.cfg.spec.duration_of(pushed))
            .unwrap_or(at)
    }

    /// Dates the run's first frame and closes the gap it resumes after, if any.
    pub(super) fn first_frames_arrived(&mut self) -> Result<(), WriterError> {
        self.origin_known = true;
        let origin = self.ring_origin();
        let origin_wall = wall_ms_at(origin);
        if let Some(gap) = self.cfg.resume_gap.take() {
            let gap_ms = match gap.since {
                GapSince::Monotonic(since) => {
                    origin.saturating_duration_since(since).as_millis() as i64
                }
                GapSince::WallMs(since) => (origin_wall - since).max(0),
            };
            let mut frames = self
                .cfg
                .spec
                .frames_in(Duration::from_millis(gap_ms as u64));
            if let Some(stop) = self.cfg.stop_at {
                frames = frames.min(stop.saturating_sub(self.timeline_pos));
            }
            let ev = TimelineEvent::new(gap.kind, self.timeline_pos, origin_wall)
                .with_detail(gap.detail)
                .with_gap(frames);
            self.add_event(&ev)?;
            self.timeline_pos += frames;
            self.progress
                .timeline_frames
                .store(self.timeline_pos, Ordering::Release);
        }
        self.progress
            .origin_wall_ms
            .store(origin_wall.max(1) as u64, Ordering::Release);
        // The supervisor journals the start now: no audio is written before it is.
        self.progress.wake.ring();
        Ok(())
    }

    /// Monotonic capture time of the timeline's end (the last frame written): the run's
    /// offset over its last second, plus the frames written.
    pub(super) fn end_instant(&self) -> Option<Instant> {
        if !self.origin_known {
            return None;
        }
        let offset = self.clock.recent().unwrap_or_else(|| self.ring_origin());
        Some(offset + self.cfg.spec.duration_of(self.ring_pos))
    }

    /// Feeds the stream clock one observation; refines the published origin during the
    /// run's first second.
    pub(super) fn observe_clock(&mut self) {
        let (pushed, at) = self.source.stats.pushed_at();
        if pushed == 0 {
            return;
        }
        let offset = at
            .checked_sub(self.cfg.spec.duration_of(pushed))
            .unwrap_or(at);
        let early = pushed <= self.cfg.spec.rate as u64;
        if let Some(origin) = self.clock.observe(pushed, offset, early)
            && self.origin_known
        {
            self.progress
                .origin_wall_ms
                .store(wall_ms_at(origin).max(1) as u64, Ordering::Release);
        }
    }

    /// The timeline's last frame was captured before whatever is still in the ring.
    pub(super) fn note_end_time(&self) {
        if let Some(end) = self.end_instant() {
            self.progress
                .end_wall_ms
                .store(wall_ms_at(end).max(1) as u64, Ordering::Release);
        }
    }
}

/// The wall-clock time (ms since the epoch) of a past monotonic instant.
fn wall_ms_at(at: Instant) -> i64 {
    now_ms() - at.elapsed().as_millis() as i64
}

/// When a run's frame 0 was captured, estimated without the capture thread's scheduling
/// delay. Each observation `(time of the last push) - (audio pushed so far)` is the
/// device's true origin plus that push's delay (the thread woke late, or the device held
/// frames in its buffer); the smallest observation over a window is the least delayed.
/// The start is the minimum over the run's first second; the end uses the minimum over
/// the last 10 to 20 s. The capture thread publishes only its last push, so the writer
/// sees one observation per wake-up (about two a second, twenty in the first second): a
/// window of a second or two held too few to filter a loaded box's delay out (a device
/// loss was dated up to 277 ms late). Over 20 s a device clock 100 ppm off the monotonic
/// clock moves the estimate by 2 ms. A gap in the stream restarts the window: frames
/// missing from the ring move every later observation later.
#[derive(Debug, Default)]
pub(super) struct StreamClock {
    first: Option<Instant>,
    window_start: Option<Instant>,
    window_min: Option<Instant>,
    previous_window_min: Option<Instant>,
    /// Observations of this many pushed frames or fewer are from before the last gap.
    gap_at: u64,
}

/// The length of the windows the end offset is taken over.
const CLOCK_WINDOW: Duration = Duration::from_secs(10);

impl StreamClock {
    /// Takes one observation (of `pushed` frames); returns the refined origin while
    /// `early` (first second).
    fn observe(&mut self, pushed: u64, offset: Instant, early: bool) -> Option<Instant> {
        if pushed <= self.gap_at {
            return None;
        }
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|t| now.duration_since(t) >= CLOCK_WINDOW)
        {
            self.previous_window_min = self.window_min;
            self.window_min = None;
            self.window_start = Some(now);
        }
        self.window_min = Some(self.window_min.map_or(offset, |m| m.min(offset)));
        if early {
            self.first = Some(self.first.map_or(offset, |m| m.min(offset)));
            return self.first;
        }
        None
    }

    /// A gap at ring frame `at`: observations up to it no longer date the frames after.
    pub(super) fn restart_window(&mut self, at: u64) {
        (self.window_start, self.window_min, self.previous_window_min) = (None, None, None);
        self.gap_at = at;
    }

    /// The least-delayed offset of the last one or two windows.
    fn recent(&self) -> Option<Instant> {
        match (self.window_min, self.previous_window_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_delayed_observation_wins() {
        let base = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        let mut clock = StreamClock::default();
        // (delay of the observation, still in the first second?)
        let table = [
            (ms(30), true),
            (ms(2), true),
            (ms(18), true),
            (ms(25), false),
        ];
        let mut origin = None;
        for (delay, early) in table {
            if let Some(o) = clock.observe(1, base + delay, early) {
                origin = Some(o);
            }
        }
        assert_eq!(
            origin,
            Some(base + ms(2)),
            "the start filters out scheduling delay"
        );
        assert_eq!(
            clock.recent(),
            Some(base + ms(2)),
            "the end window sees the same minimum"
        );
    }

    #[test]
    fn a_gap_restarts_the_end_window() {
        let base = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        let mut clock = StreamClock::default();
        clock.observe(100, base + ms(2), false);
        // 300 ms of frames went missing at ring frame 4800: later offsets are 300 ms on.
        clock.restart_window(4_800);
        clock.observe(4_800, base + ms(1), false); // the last push before the gap
        clock.observe(9_600, base + ms(305), false);
        clock.observe(14_400, base + ms(330), false);
        assert_eq!(clock.recent(), Some(base + ms(305)));
    }
}
