//! The writer's turn: one wake-up that does all the periodic work together, after the
//! ring is drained: the spool's free-space check, the level meter's publication, the
//! header flush when due, the data sync and the job's progress run file. Each of these
//! used to have its own phase (a wake-up each, the progress one in the supervisor); one
//! turn keeps them in step.
//!
//! How often: what a kill -9 loses is the audio not yet drained (at most a turn, plus the
//! device's period in flight and the held partial page); what a power cut loses is the
//! audio not yet synced, the same amount since every turn syncs what it drained. Both
//! stay within the sync interval with [`turn_every`], which leaves a fifth of the
//! interval for a loaded box that wakes the thread late.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Writer, WriterError, now_ms, wake::COALESCE};

/// How often the job's progress run file is replaced: the sync role's proof that capture
/// advances (it looks every 2 s and allows 5 s).
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Pure: how often the writer drains, checks and syncs, for a loss bound of
/// `sync_interval` with `held` audio kept in memory (the partial page) and `period`
/// of audio in the device's buffer.
pub(super) fn turn_every(sync_interval: Duration, period: Duration, held: Duration) -> Duration {
    let slack = sync_interval / 5;
    sync_interval
        .saturating_sub(held + period + slack)
        .max(sync_interval / 4)
        .max(Duration::from_millis(1))
}

impl Writer {
    /// Until the next turn: its own deadline, the meter's, the header's and the progress'.
    pub(super) fn turn_due_in(&self) -> Duration {
        let left = |last: Instant, every: Duration| every.saturating_sub(last.elapsed());
        let flush = self.current.as_ref().map_or(Duration::MAX, |seg| {
            left(seg.last_flush, self.cfg.flush_interval)
        });
        // Published once frames flow (the supervisor journals the start first).
        let progress = match self.last_progress {
            _ if !self.origin_known => Duration::MAX,
            None => Duration::ZERO,
            Some(t) => left(t, PROGRESS_EVERY),
        };
        self.last_turn
            .map_or(Duration::ZERO, |t| left(t, self.turn_every))
            .min(self.meter.due_in())
            .min(flush)
            .min(progress)
    }

    /// The turn, when any of its work is due (within [`COALESCE`]). Called after the
    /// drain, so the free-space check sees the batch's effect and a write that found the
    /// disk full has paused already (with its own cause).
    pub(super) fn turn(&mut self) -> Result<(), WriterError> {
        if self.turn_due_in() > COALESCE {
            return Ok(());
        }
        self.last_turn = Some(Instant::now());
        self.check_disk()?;
        self.meter();
        self.flush_and_sync()?;
        self.publish_progress();
        Ok(())
    }

    /// The progress run file, when due (volatile: a failed try waits for the next).
    fn publish_progress(&mut self) {
        let due = self
            .last_progress
            .is_none_or(|t| t.elapsed() + COALESCE >= PROGRESS_EVERY);
        if !due || !self.origin_known {
            return;
        }
        self.last_progress = Some(Instant::now());
        let frames = self.progress.timeline_frames.load(Ordering::Acquire);
        if let Err(e) = self
            .journal
            .publish_progress(&self.cfg.job_id, frames, now_ms())
        {
            log::debug!("{}: {e}", self.cfg.job_id);
        }
    }

    /// Publishes the live levels when due; a failure costs only the live view.
    fn meter(&mut self) {
        if self.meter.due_in() > COALESCE {
            return;
        }
        match self.meter.publish(now_ms()) {
            Ok(changes) => {
                for c in changes {
                    let what = if c.opened { "opened" } else { "cleared" };
                    log::info!(
                        "{}: {} {what} on channel {}",
                        self.cfg.job_id,
                        c.condition.name(),
                        c.channel
                    );
                }
            }
            Err(e) => log::debug!("{}: publishing levels: {e}", self.cfg.job_id),
        }
    }

    /// The header when due, and the data sync of what this turn drained.
    fn flush_and_sync(&mut self) -> Result<(), WriterError> {
        let Some(seg) = self.current.as_mut() else {
            return Ok(());
        };
        let io_err = |seg: &super::OpenSegment, source| WriterError::Segment {
            path: seg.file.path().to_path_buf(),
            source,
        };
        // The job's last frame is in: the close, next, journals the length anyway.
        let closing = self
            .cfg
            .stop_at
            .is_some_and(|stop| self.timeline_pos >= stop);
        let now = Instant::now();
        let due = |last: Instant, every: Duration| now - last + COALESCE >= every;
        let mut row_update = None;
        let flush = due(seg.last_flush, self.cfg.flush_interval);
        if flush {
            seg.file.flush_header().map_err(|e| io_err(seg, e))?;
            seg.last_flush = now;
            // The file is the truth for frame counts (repair reads it); the row is only a
            // progress hint between rotations, so it need not cost a journal write a second.
            if due(seg.last_row_update, super::SEGMENT_ROW_EVERY) && !closing {
                seg.last_row_update = now;
                row_update = Some((seg.id, seg.file.frames()));
            }
        }
        if flush || seg.file.bytes_since_sync() > 0 {
            seg.file.sync_data().map_err(|e| io_err(seg, e))?;
        }
        if let Some((id, frames)) = row_update {
            // A progress hint: skipped when the disk is full.
            self.journaled(|j| j.update_segment_frames(id, frames))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_default_turn_leaves_the_period_the_page_and_a_fifth_of_the_interval() {
        // 1 s sync, 100 ms period, 21 ms page (2 ch S16 48 kHz): 679 ms, 1.5 turns a second.
        assert_eq!(turn_every(MS(1000), MS(100), MS(21)), MS(679));
        // Loss after a kill -9 or a power cut: a turn, the period and the page.
        assert!(MS(679) + MS(100) + MS(21) <= MS(1000) - MS(1000) / 5);
    }

    #[test]
    fn a_long_period_or_a_short_interval_keeps_a_floor() {
        assert_eq!(turn_every(MS(1000), MS(500), MS(21)), MS(279));
        assert_eq!(turn_every(MS(200), MS(100), Duration::ZERO), MS(60));
        assert_eq!(turn_every(MS(200), MS(190), Duration::ZERO), MS(50));
        assert_eq!(
            turn_every(MS(10), MS(100), Duration::ZERO),
            MS(2) + Duration::from_micros(500)
        );
        assert_eq!(
            turn_every(Duration::from_micros(100), MS(100), Duration::ZERO),
            MS(1)
        );
    }

    #[test]
    fn a_longer_interval_turns_less_often() {
        assert_eq!(turn_every(MS(5000), MS(100), MS(21)), MS(3879));
    }
}
