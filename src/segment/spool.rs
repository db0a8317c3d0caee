//! The writer's view of the spool's free space: the disk budget's decisions carried out
//! on the real filesystem (statvfs, the journal's reserve file, reclaim of delivered
//! recordings). Looked at on the writer's turns when a look is due: every turn near the
//! marks or while paused, and far from them only when the reclaim mark could first be
//! reached at a worst-case fill rate (`DiskBudget::look_again_in`, at most every
//! `MAX_LOOK_EVERY`); a write that hits a full disk pauses at once whatever the schedule.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::core::disk_budget::{
    BudgetMarks, DiskAction, DiskBudget, DiskState, MAX_LOOK_EVERY, observed_fill_rate,
};
use crate::journal::Journal;
use crate::segment::disk::{self, JournalReserve};
use crate::segment::writer::now_ms;

/// How the spool is budgeted.
#[derive(Clone, Debug)]
pub struct SpoolSettings {
    /// The filesystem the segments and the journal live on.
    pub dir: PathBuf,
    pub marks: BudgetMarks,
    /// Delivered recordings older than this may be reclaimed when space runs low.
    pub retention: Duration,
}

impl SpoolSettings {
    pub fn new(dir: PathBuf) -> Self {
        SpoolSettings {
            dir,
            marks: BudgetMarks::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The worst case assumed of the disk's fill rate: this many times the writer's own
/// (other jobs, renders and logs share the spool), unless seen falling faster.
const FILL_MARGIN: u64 = 4;

pub struct SpoolGuard {
    settings: SpoolSettings,
    budget: DiskBudget,
    reserve: JournalReserve,
    state: DiskState,
    /// The last look: when, and the free space the budget counted.
    last_look: Option<(Instant, u64)>,
    /// When the next look is due (`None`: at the next check).
    next_look: Option<Instant>,
}

impl SpoolGuard {
    pub fn open(settings: SpoolSettings) -> std::io::Result<SpoolGuard> {
        let total = disk::disk_space(&settings.dir)?.total_bytes;
        let budget = DiskBudget::resolve(total, settings.marks).map_err(|e| {
            std::io::Error::other(format!("disk budget for {}: {e}", settings.dir.display()))
        })?;
        let mut reserve = JournalReserve::open(&settings.dir, JournalReserve::DEFAULT_BYTES)?;
        let free = reserve.budget_free(disk::free_bytes(&settings.dir)?);
        if budget.decide(DiskState::Writing, free).action == DiskAction::Write
            && let Err(e) = reserve.restore()
        {
            log::warn!(
                "journal reserve not created ({e}); the journal may not be able to record a full disk"
            );
        }
        Ok(SpoolGuard {
            settings,
            budget,
            reserve,
            state: DiskState::Writing,
            last_look: None,
            next_look: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    pub fn is_paused(&self) -> bool {
        self.state == DiskState::Paused
    }

    /// Looks at the free space when a look is due (the caller writes `write_rate` bytes a
    /// second); reclaims when the budget says so. Returns what the writer must do:
    /// Write, Pause, StayPaused or Resume (Write or StayPaused when no look was due).
    pub fn check(&mut self, journal: &Journal, write_rate: u64) -> DiskAction {
        let now = Instant::now();
        if self.next_look.is_some_and(|t| now < t) {
            return self.hold();
        }
        let Ok(statvfs_free) = disk::free_bytes(&self.settings.dir) else {
            return self.hold();
        };
        let mut free = self.reserve.budget_free(statvfs_free);
        let mut decision = self.budget.decide(self.state, free);
        if decision.reclaim {
            let need = self.budget.reclaim_need(free);
            match disk::reclaim_bytes(
                journal,
                &self.settings.dir,
                need,
                self.settings.retention,
                now_ms(),
            ) {
                Ok(done) if !done.is_empty() => {
                    free = self
                        .reserve
                        .budget_free(disk::free_bytes(&self.settings.dir).unwrap_or(statvfs_free));
                    decision = self.budget.decide(self.state, free);
                }
                Ok(_) => {}
                Err(e) => log::warn!("reclaim: {e}"),
            }
        }
        if decision.action == DiskAction::Write
            && !self.reserve.is_held()
            && let Err(e) = self.reserve.restore()
        {
            // Released by a journal write that found the disk full; room is back.
            log::debug!("restoring the journal reserve: {e}");
        }
        let action = self.apply(decision.action);
        self.schedule_look(now, free, write_rate);
        action
    }

    /// What holds without a look: the current state carries on.
    fn hold(&self) -> DiskAction {
        match self.state {
            DiskState::Paused => DiskAction::StayPaused,
            DiskState::Writing => DiskAction::Write,
        }
    }

    /// Dates the next look from this one's free space and the worst-case fill rate.
    fn schedule_look(&mut self, now: Instant, free: u64, write_rate: u64) {
        let seen = self.last_look.map_or(0, |(at, before)| {
            observed_fill_rate(before, free, now.duration_since(at))
        });
        let rate = write_rate.saturating_mul(FILL_MARGIN).max(seen);
        let wait = (self.budget).look_again_in(self.state, free, rate, MAX_LOOK_EVERY);
        self.last_look = Some((now, free));
        self.next_look = Some(now + wait);
    }

    /// A write failed with ENOSPC/EDQUOT: pause whatever statvfs says.
    pub fn write_failed(&mut self) -> DiskAction {
        self.next_look = None; // paused now: every turn looks for room to resume
        let action = self.budget.on_write_error(self.state).action;
        self.apply(action)
    }

    fn apply(&mut self, action: DiskAction) -> DiskAction {
        match action {
            DiskAction::Pause => {
                // Give the journal the reserved room to record the pause.
                if let Err(e) = self.reserve.release() {
                    log::warn!("releasing the journal reserve: {e}");
                }
            }
            DiskAction::Resume => {
                if let Err(e) = self.reserve.restore() {
                    log::warn!("restoring the journal reserve: {e}");
                }
            }
            DiskAction::Write | DiskAction::StayPaused => {}
        }
        self.state = action.next_state();
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::disk_budget::MIB;

    fn guard(dir: &Path, reclaim_below: u64) -> SpoolGuard {
        let marks = BudgetMarks {
            reserve_below: Some(MIB),
            resume_above: Some(2 * MIB),
            reclaim_below: Some(reclaim_below),
        };
        let settings = SpoolSettings {
            marks,
            ..SpoolSettings::new(dir.to_path_buf())
        };
        SpoolGuard::open(settings).unwrap()
    }

    #[test]
    fn far_from_the_marks_the_next_look_waits_and_near_them_it_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("edgerec.db")).unwrap();
        // Marks set from this filesystem's own free space, whatever it is.
        let free = disk::free_bytes(dir.path()).unwrap();
        if free < 256 * MIB {
            eprintln!("SKIPPED: {free} bytes free; the far case needs 256 MiB");
            return;
        }
        let wait = |g: &SpoolGuard| {
            let at = g.next_look.expect("scheduled by the look");
            at.saturating_duration_since(Instant::now())
        };
        // Over 250 MiB above the reclaim mark at 4 x 1 MB/s: the mark is over a minute
        // away, so the next look waits the longest it may.
        let mut far = guard(dir.path(), 4 * MIB);
        assert_eq!(far.check(&journal, 1_000_000), DiskAction::Write);
        let w = wait(&far);
        assert!(
            w > MAX_LOOK_EVERY - Duration::from_secs(2) && w <= MAX_LOOK_EVERY,
            "{w:?}"
        );
        // A check before then does not look (nor change anything).
        assert_eq!(far.check(&journal, 1_000_000), DiskAction::Write);
        assert!(wait(&far) <= w);
        // After a write found the disk full, the next check looks at once.
        assert_eq!(far.write_failed(), DiskAction::Pause);
        assert_eq!(far.check(&journal, 1_000_000), DiskAction::Resume);
        // Below the reclaim mark: every check looks.
        let mut near = guard(dir.path(), free + 64 * MIB);
        assert_eq!(near.check(&journal, 1_000_000), DiskAction::Write);
        assert_eq!(wait(&near), Duration::ZERO);
    }
}
