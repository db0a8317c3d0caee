//! The job state machine's facts, journaled whole beside the job row, so a sync role that
//! restarts knows a stop is pending or the controller's verdict without asking again.

use rusqlite::{OptionalExtension, params};

use super::{Doing, Journal, JournalError, Result};
use crate::core::job_machine::MachineState;

impl Journal {
    /// Saves `machine` for `job_id` (the caller writes the job's state in the same
    /// transaction, through [`Journal::atomically`]).
    pub fn save_machine(&self, job_id: &str, machine: &MachineState, now_ms: i64) -> Result<()> {
        // The rendered file is stored relative to the journal, like job directories.
        let mut machine = machine.clone();
        if let Some(file) = machine.recording.as_mut() {
            file.path = super::jobs::stored_dir(&self.dir, &file.path);
        }
        let json = serde_json::to_string(&machine).map_err(|e| JournalError::Corrupt {
            what: format!("machine state of {job_id}: {e}"),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO machines (job_id, state_json, updated_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(job_id) DO UPDATE SET state_json = ?2, updated_at_ms = ?3",
            )
            .and_then(|mut s| s.execute(params![job_id, json, now_ms]))
            .doing("saving a job's machine state")?;
        Ok(())
    }

    /// The machine state saved for `job_id`, if any.
    pub fn load_machine(&self, job_id: &str) -> Result<Option<MachineState>> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT state_json FROM machines WHERE job_id = ?1")
            .and_then(|mut s| s.query_row(params![job_id], |r| r.get(0)).optional())
            .doing("loading a job's machine state")?;
        let Some(json) = json else {
            return Ok(None);
        };
        let mut machine: MachineState =
            serde_json::from_str(&json).map_err(|e| JournalError::Corrupt {
                what: format!("machine state of {job_id}: {e}"),
            })?;
        if let Some(file) = machine.recording.as_mut() {
            file.path = resolve_file(&self.dir, &file.path);
        }
        Ok(Some(machine))
    }
}

/// Where a stored file path is now: its directory resolved as a job directory is.
fn resolve_file(journal_dir: &std::path::Path, stored: &std::path::Path) -> std::path::PathBuf {
    match (stored.parent(), stored.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
            super::jobs::resolve_dir(journal_dir, dir).join(name)
        }
        _ => journal_dir.join(stored),
    }
}

impl Journal {
    /// Puts `job_id` in the capture group led by `leader_id` (the leader names itself).
    pub fn set_group_leader(&self, job_id: &str, leader_id: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO capture_groups (job_id, leader_id) VALUES (?1, ?2) \
                 ON CONFLICT(job_id) DO UPDATE SET leader_id = ?2",
            )
            .and_then(|mut s| s.execute(params![job_id, leader_id]))
            .doing("recording a capture group")?;
        Ok(())
    }

    /// The leader of `job_id`'s capture group, if it is in one.
    pub fn group_leader(&self, job_id: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT leader_id FROM capture_groups WHERE job_id = ?1")
            .and_then(|mut s| s.query_row(params![job_id], |r| r.get(0)).optional())
            .doing("reading a capture group")
    }

    /// The other members of the group `leader_id` leads, in claim order.
    pub fn group_members(&self, leader_id: &str) -> Result<Vec<String>> {
        self.conn
            .prepare_cached("SELECT job_id FROM capture_groups WHERE leader_id = ?1 AND job_id != ?1 ORDER BY rowid")
            .and_then(|mut s| {
                s.query_map(params![leader_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()
            })
            .doing("listing a capture group")
    }
}

#[cfg(test)]
mod tests {
    use crate::core::job::JobState;
    use crate::core::job_machine::{JobKind, MachineState, Verdict};
    use crate::journal::{JobSource, Journal, NewJob};

    #[test]
    fn machine_state_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        j.create_job(&NewJob {
            controller_job_id: Some("job_1".into()),
            recording_id: Some("rec_1".into()),
            duration_frames: Some(48_000),
            created_at_ms: 1,
            ..NewJob::for_test(
                "job_1",
                JobSource::Controller,
                dir.path(),
                JobState::Claimed,
            )
        })
        .unwrap();
        assert_eq!(j.load_machine("job_1").unwrap(), None);
        let mut m = MachineState::at(JobState::Capturing, JobKind::Controller);
        m.stop_pending = true;
        j.save_machine("job_1", &m, 2).unwrap();
        m.verdict = Some(Verdict::Cancelled {
            reason: "operator".into(),
        });
        j.save_machine("job_1", &m, 3).unwrap();
        assert_eq!(j.load_machine("job_1").unwrap(), Some(m.clone()));
        // The rendered file is stored relative to the journal and read back where it is.
        m.recording = Some(crate::core::job_machine::RenderedFile {
            path: dir.path().join("job_1/recording.wav"),
            sha256: "00".into(),
            bytes: 1,
        });
        j.save_machine("job_1", &m, 4).unwrap();
        let stored: String = j
            .conn
            .query_row("SELECT state_json FROM machines", [], |r| r.get(0))
            .unwrap();
        assert!(
            stored.contains(r#""path":"job_1/recording.wav""#),
            "{stored}"
        );
        assert_eq!(j.load_machine("job_1").unwrap(), Some(m));
        assert_eq!(j.group_leader("job_1").unwrap(), None);
        j.set_group_leader("job_1", "job_1").unwrap();
        assert_eq!(j.group_leader("job_1").unwrap().as_deref(), Some("job_1"));
        assert!(
            j.group_members("job_1").unwrap().is_empty(),
            "the leader is not its own member"
        );
    }
}
