//! Real-time pacing for generated sources (synth, file): one period per period of wall
//! time on the monotonic clock, without drift (deadlines are absolute, not slept deltas).

use std::time::{Duration, Instant};

pub struct Pacer {
    start: Instant,
    rate: u32,
    /// Frames released so far: the next period is due when its last frame is.
    released: u64,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        Pacer {
            start: Instant::now(),
            rate,
            released: 0,
        }
    }

    /// When the frame at `position` is due, relative to the start.
    fn due(&self, position: u64) -> Instant {
        self.start
            + Duration::from_nanos((position as u128 * 1_000_000_000 / self.rate as u128) as u64)
    }

    /// Sleeps until `frames` more frames are due (at most `max_wait`); returns whether
    /// they are due now. A `false` means "not yet: check the stop flag and call again".
    pub fn wait_for(&mut self, frames: u64, max_wait: Duration) -> bool {
        let due = self.due(self.released + frames);
        let now = Instant::now();
        if due > now {
            let sleep = (due - now).min(max_wait);
            std::thread::sleep(sleep);
            if Instant::now() < due {
                return false;
            }
        }
        self.released += frames;
        true
    }

    /// Frames of wall time elapsed since the start.
    pub fn elapsed_frames(&self) -> u64 {
        (self.start.elapsed().as_nanos() * self.rate as u128 / 1_000_000_000) as u64
    }

    /// Marks `frames` frames of time as passed without delivering them (a drop-out).
    pub fn skip(&mut self, frames: u64) {
        self.released += frames;
    }

    pub fn released(&self) -> u64 {
        self.released
    }
}
