//! The job machine follows the capture role's facts as they happen, so the log and
//! `edgerec status` tell the story while it happens: `claimed -> capturing` when the
//! first frame is journaled, not in the same millisecond as the render at the end.
//! It also hears of each chunk the capture role rendered while the job captures (an
//! unacknowledged `uploads` row), so the chunk goes up while capture goes on.

use super::{Sync, SyncError};
use crate::core::job::JobState;
use crate::core::job_machine::{Event, JobKind, MachineState};

/// The `uploads` rows at and past this are renditions, not chunks (`sending::RAW_ROW`).
const FIRST_NON_CHUNK_ROW: u32 = super::sending::RAW_ROW;

impl Sync {
    /// Catches each capturing job's saved machine up with its capture: a job whose first
    /// frame is in the journal (its own, or its capture group leader's) is `capturing`.
    pub(super) fn follow_captures(&mut self) -> Result<(), SyncError> {
        for job in self.controller_jobs()? {
            if !matches!(job.state, JobState::Capturing | JobState::Stopping) {
                continue;
            }
            let Some(saved) = self.journal.load_machine(&job.id)? else {
                continue;
            };
            if saved.state != JobState::Claimed || !self.capture_started(&job)? {
                continue;
            }
            let before = MachineState {
                kind: JobKind::Controller,
                ..saved
            };
            self.apply_from(&job, before, Event::Start)?;
        }
        Ok(())
    }

    /// Whether the job's audio has begun: its start (frame 0) is journaled.
    fn capture_started(&self, job: &crate::journal::JobRow) -> Result<bool, SyncError> {
        if job.started_at_ms.is_some() {
            return Ok(true);
        }
        Ok(match self.journal.group_leader(&job.id)? {
            Some(leader) if leader != job.id => self
                .journal
                .job(&leader)?
                .is_some_and(|l| l.started_at_ms.is_some()),
            _ => false,
        })
    }

    /// Feeds the machine each chunk rendered while its job captures, once per chunk
    /// (the outbox row's key makes a re-feed after a restart a no-op). Chunks rendered
    /// at the job's end go with its own upload row.
    pub(super) fn follow_chunks(&mut self) -> Result<(), SyncError> {
        let jobs: Vec<_> = self
            .controller_jobs()?
            .into_iter()
            .filter(|j| matches!(j.state, JobState::Capturing | JobState::Stopping))
            .collect();
        self.chunks_fed
            .retain(|(id, _)| jobs.iter().any(|j| &j.id == id));
        for job in jobs {
            for row in self.journal.uploads(&job.id)? {
                let key = (job.id.clone(), row.chunk);
                if row.chunk >= FIRST_NON_CHUNK_ROW
                    || row.acknowledged_at_ms.is_some()
                    || self.chunks_fed.contains(&key)
                {
                    continue;
                }
                self.apply(&job.id, Event::ChunkRendered { index: row.chunk })?;
                self.chunks_fed.insert(key);
            }
        }
        Ok(())
    }
}
