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

/// Pure: whether work last done at `last`, due every `every`, is done on the turn at `at`:
/// when waiting for the next turn (`turn` later) would make it late. The turns are the
/// writer's only clock, so work done this way never costs a wake-up of its own.
pub(super) fn due_on_turn(at: Instant, last: Instant, every: Duration, turn: Duration) -> bool {
    at.saturating_duration_since(last) + turn > every
}

impl Writer {
    /// Until the next turn (the writer's only clock: the sync, the header, the progress
    /// and the meter ride the turns).
    pub(super) fn turn_due_in(&self) -> Duration {
        self.next_turn.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// The turn, when due (within [`COALESCE`]). Called after the drain, so the
    /// free-space check sees the batch's effect and a write that found the disk full has
    /// paused already (with its own cause).
    pub(super) fn turn(&mut self) -> Result<(), WriterError> {
        if self.turn_due_in() > COALESCE {
            return Ok(());
        }
        // The turns keep their schedule (a late wake-up does not push the next ones back)
        // and date the work they do, so nothing drifts out of phase with them.
        let now = Instant::now();
        let at = self
            .next_turn
            .filter(|t| now.saturating_duration_since(*t) < self.cadence.turn)
            .unwrap_or(now);
        self.next_turn = Some(at + self.cadence.turn);
        self.check_disk()?;
        self.meter();
        self.flush_and_sync(at)?;
        self.publish_progress(at);
        Ok(())
    }

    /// The progress run file, when due (volatile: a failed try waits for the next).
    fn publish_progress(&mut self, at: Instant) {
        let turn = self.cadence.turn;
        let due = self
            .last_progress
            .is_none_or(|t| due_on_turn(at, t, PROGRESS_EVERY, turn));
        if !due || !self.origin_known {
            return;
        }
        self.last_progress = Some(at);
        let frames = self.progress.timeline_frames.load(Ordering::Acquire);
        if let Some(file) = self.progress_file.as_mut()
            && let Err(e) = file.publish(frames, now_ms())
        {
            log::debug!("{}: progress run file: {e}", self.cfg.job_id);
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
    fn flush_and_sync(&mut self, at: Instant) -> Result<(), WriterError> {
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
        let turn = self.cadence.turn;
        let due = |last: Instant, every: Duration| due_on_turn(at, last, every, turn);
        let mut row_update = None;
        let flush = due(seg.last_flush, self.cfg.flush_interval);
        if flush {
            seg.file.flush_header().map_err(|e| io_err(seg, e))?;
            seg.last_flush = at;
            // The file is the truth for frame counts (repair reads it); the row is only a
            // progress hint between rotations, so it need not cost a journal write a second.
            if due(seg.last_row_update, super::SEGMENT_ROW_EVERY) && !closing {
                seg.last_row_update = at;
                row_update = Some((seg.id, seg.file.frames()));
            }
        }
        if due(seg.last_sync, self.cadence.sync) {
            if flush || seg.file.bytes_since_sync() > 0 {
                seg.file.sync_data().map_err(|e| io_err(seg, e))?;
            }
            seg.last_sync = at;
        }
        if let Some((id, frames)) = row_update {
            // A progress hint: skipped when the disk is full, and committed without an
            // fsync (the file is the truth; repair reads it after a power cut).
            self.journaled(|j| j.unsynced(|j| j.update_segment_frames(id, frames)))?;
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
    fn work_rides_the_turn_before_it_would_be_late() {
        let t0 = Instant::now();
        let turn = Duration::from_micros(489_500);
        let sync = MS(979);
        // Synced at turn 0: not at turn 1 (turn 2 is still in time), at turn 2.
        assert!(!due_on_turn(t0 + turn, t0, sync, turn));
        assert!(due_on_turn(t0 + turn * 2, t0, sync, turn));
        // A segment opened 100 ms after a turn syncs at the second turn after (879 ms).
        let opened = t0 + MS(100);
        assert!(!due_on_turn(t0 + turn, opened, sync, turn));
        assert!(due_on_turn(t0 + turn * 2, opened, sync, turn));
        // The progress (2 s) every fourth turn: 1958 ms.
        assert!(!due_on_turn(t0 + turn * 3, t0, MS(2000), turn));
        assert!(due_on_turn(t0 + turn * 4, t0, MS(2000), turn));
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
