//! The writer's turn: one wake-up that does all the periodic work together, after the
//! ring is drained: the spool's free-space check, the level meter's publication, the
//! header flush when due, the data sync and the job's progress run file. Each of these
//! used to have its own phase (a wake-up each, the progress one in the supervisor); one
//! turn keeps them in step.
//!
//! How often ([`cadence`]): a power cut loses the audio not yet synced, so the sync comes
//! every sync interval (a held page earlier, `file::page_hold_sync`); a kill -9 loses
//! the audio not yet drained (a turn, the device's period in flight and the held page),
//! so the turns come twice per sync, each syncing only when the sync is due. The sync is
//! the costly part (on ext4 each `fdatasync` waits three times: the data, the inode, the
//! cache flush), so it is not done more often than the interval asks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Writer, WriterError, now_ms, wake::COALESCE};

/// How often the job's progress run file is replaced: the sync role's proof that capture
/// advances (it looks every 2 s and allows 5 s).
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How often the writer takes its turn and how often it syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cadence {
    pub turn: Duration,
    pub sync: Duration,
}

/// Pure: the cadence for a loss bound of `sync_interval`, with `held` audio kept in memory
/// (the partial page) and `period` of audio in the device's buffer. The turn is half the
/// sync, and short enough that a kill -9 loses a turn, the period and the page with a
/// tenth of the interval to spare (a loaded box wakes the thread late).
pub(super) fn cadence(sync_interval: Duration, period: Duration, held: Duration) -> Cadence {
    let floor = Duration::from_millis(1);
    let sync = sync_interval.saturating_sub(held).max(floor);
    let kill_bound = sync_interval.saturating_sub(held + period + sync_interval / 10);
    let turn = (sync / 2).min(kill_bound).max(sync_interval / 8).max(floor);
    Cadence { turn, sync }
}

impl Writer {
    /// Until the next turn: its own deadline, the header's, the sync's and the progress'.
    /// The meter rides the turns (published at the first one past its 5 s mark, at most a
    /// turn late; its cadence stays anchored), so it costs no wake-up of its own.
    pub(super) fn turn_due_in(&self) -> Duration {
        let left = |last: Instant, every: Duration| every.saturating_sub(last.elapsed());
        let segment = self.current.as_ref().map_or(Duration::MAX, |seg| {
            left(seg.last_flush, self.cfg.flush_interval)
                .min(left(seg.last_sync, self.cadence.sync))
        });
        // Published once frames flow (the supervisor journals the start first).
        let progress = match self.last_progress {
            _ if !self.origin_known => Duration::MAX,
            None => Duration::ZERO,
            Some(t) => left(t, PROGRESS_EVERY),
        };
        self.last_turn
            .map_or(Duration::ZERO, |t| left(t, self.cadence.turn))
            .min(segment)
            .min(progress)
    }

    /// The turn, when any of its work is due (within [`COALESCE`]). Called after the
    /// drain, so the free-space check sees the batch's effect and a write that found the
    /// disk full has paused already (with its own cause).
    pub(super) fn turn(&mut self) -> Result<(), WriterError> {
        if self.turn_due_in() > COALESCE {
            return Ok(());
        }
        // One instant dates the turn, the header and the sync: dated after their own I/O
        // they would drift apart by its length each time until they cost a wake-up each.
        let now = Instant::now();
        self.last_turn = Some(now);
        self.check_disk()?;
        self.meter();
        self.flush_and_sync(now)?;
        self.publish_progress(now);
        Ok(())
    }

    /// The progress run file, when due (volatile: a failed try waits for the next).
    fn publish_progress(&mut self, now: Instant) {
        let due = self
            .last_progress
            .is_none_or(|t| now - t + COALESCE >= PROGRESS_EVERY);
        if !due || !self.origin_known {
            return;
        }
        self.last_progress = Some(now);
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

    /// The header and the data sync, each when due.
    fn flush_and_sync(&mut self, now: Instant) -> Result<(), WriterError> {
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
        if due(seg.last_sync, self.cadence.sync) {
            if flush || seg.file.bytes_since_sync() > 0 {
                seg.file.sync_data().map_err(|e| io_err(seg, e))?;
            }
            seg.last_sync = now;
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

    fn c(turn_us: u64, sync_ms: u64) -> Cadence {
        Cadence {
            turn: Duration::from_micros(turn_us),
            sync: MS(sync_ms),
        }
    }

    #[test]
    fn the_default_syncs_each_interval_less_the_page_and_turns_twice_as_often() {
        // 1 s sync, 100 ms period, 21 ms page (2 ch S16 48 kHz).
        let got = cadence(MS(1000), MS(100), MS(21));
        assert_eq!(got, c(489_500, 979));
        // A kill -9 loses a turn, the period and the page: well inside the interval.
        assert!(got.turn + MS(100) + MS(21) <= MS(1000) - MS(100));
        // A power cut loses what the sync has not reached, plus the held page.
        assert!(got.sync + MS(21) <= MS(1000));
    }

    #[test]
    fn a_long_period_shortens_the_turn_not_the_sync() {
        assert_eq!(cadence(MS(1000), MS(500), MS(21)), c(379_000, 979));
        // Past what a turn can absorb, the turn keeps a floor of an eighth of the interval.
        assert_eq!(cadence(MS(1000), MS(900), MS(21)), c(125_000, 979));
    }

    #[test]
    fn short_and_long_intervals_scale() {
        assert_eq!(cadence(MS(250), MS(10), Duration::ZERO), c(125_000, 250));
        assert_eq!(cadence(MS(10), MS(100), Duration::ZERO), c(1_250, 10));
        assert_eq!(cadence(MS(10_000), MS(100), MS(21)), c(4_989_500, 9_979));
        assert_eq!(
            cadence(Duration::ZERO, MS(100), Duration::ZERO),
            c(1_000, 1)
        );
    }
}
