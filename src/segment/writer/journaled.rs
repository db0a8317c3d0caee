//! The writer's journal writes: a full disk (`SQLITE_FULL`) is a disk pause, never an
//! exit, and an event with no room yet waits in memory for the next chance.

use super::{DiskAction, Writer, WriterError, disk};
use crate::core::timeline::TimelineEvent;
use crate::journal::{Journal, JournalError};

impl Writer {
    /// A timeline event; one the journal has no room for waits in memory for the next.
    pub(super) fn add_event(&mut self, ev: &TimelineEvent) -> Result<(), WriterError> {
        self.flush_deferred_events()?;
        let job = self.cfg.job_id.clone();
        if self.journaled(|j| j.add_event(&job, ev))?.is_none() {
            self.deferred_events.push(ev.clone());
        }
        Ok(())
    }

    pub(super) fn flush_deferred_events(&mut self) -> Result<(), WriterError> {
        while let Some(ev) = self.deferred_events.first().cloned() {
            let job = self.cfg.job_id.clone();
            if self.journaled(|j| j.add_event(&job, &ev))?.is_none() {
                break;
            }
            self.deferred_events.remove(0);
        }
        Ok(())
    }

    /// A journal write on the capture path. `SQLITE_FULL` is a full disk, never an exit:
    /// writing pauses (which gives the journal its reserve) and the write is tried once
    /// more; `None` if there is still no room.
    pub(super) fn journaled<T>(
        &mut self,
        write: impl Fn(&Journal) -> Result<T, JournalError>,
    ) -> Result<Option<T>, WriterError> {
        match write(&self.journal) {
            Ok(v) => return Ok(Some(v)),
            Err(e) if !disk::is_journal_disk_full(&e) => return Err(e.into()),
            Err(_) => {}
        }
        if let Some(guard) = self.spool.as_mut() {
            let action = guard.write_failed();
            if action == DiskAction::Pause && self.disk_pause.is_none() {
                self.pause_writing("journal write failed: disk full (SQLITE_FULL)")?;
            }
        }
        match write(&self.journal) {
            Ok(v) => Ok(Some(v)),
            Err(e) if disk::is_journal_disk_full(&e) => {
                if !self.journal_full_logged {
                    log::warn!(
                        "{}: the journal has no room even with its reserve; deferring its writes until space returns",
                        self.cfg.job_id
                    );
                    self.journal_full_logged = true;
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}
