//! The writer's view of the spool's free space: the disk budget's decisions carried out
//! on the real filesystem (statvfs, the journal's reserve file, reclaim of delivered
//! recordings). Looked at on each of the writer's turns (about twice a second), and
//! at once when a write hits a full disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::disk_budget::{BudgetMarks, DiskAction, DiskBudget, DiskState};
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

pub struct SpoolGuard {
    settings: SpoolSettings,
    budget: DiskBudget,
    reserve: JournalReserve,
    state: DiskState,
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    pub fn is_paused(&self) -> bool {
        self.state == DiskState::Paused
    }

    /// Looks at the free space (the caller paces it); reclaims when the budget says so.
    /// Returns what the writer must do: Write, Pause, StayPaused or Resume.
    pub fn check(&mut self, journal: &Journal) -> DiskAction {
        let Ok(statvfs_free) = disk::free_bytes(&self.settings.dir) else {
            return if self.is_paused() {
                DiskAction::StayPaused
            } else {
                DiskAction::Write
            };
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
        self.apply(decision.action)
    }

    /// A write failed with ENOSPC/EDQUOT: pause whatever statvfs says.
    pub fn write_failed(&mut self) -> DiskAction {
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
