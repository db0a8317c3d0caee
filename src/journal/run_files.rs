//! Volatile facts beside the journal, never in it: each role's beat and each capturing
//! job's frame count, as small files under the state directory's `run/` (with the meter
//! files). They are current state, not history: replaced atomically, never fsynced, and
//! worth nothing after a reboot, so a box keeps `run/` on a tmpfs ([`prepare_run_dir`]);
//! the SQLite journal then holds only durable facts and commits only when one changes.
//! Liveness still comes from the OS: a beat carries its pid and boot id, which readers
//! check against `/proc`.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BeatRow, JobRow, Journal, Result};
use crate::core::job::JobState;

pub mod in_place;
mod progress;
pub use in_place::InPlaceFile;
pub use progress::ProgressFile;

/// Set (by the systemd units) to a tmpfs directory: the state directory's `run/` becomes
/// a link to it, so volatile files never reach the flash.
pub const RUN_DIR_ENV: &str = "EDGEREC_RUN_DIR";

/// The volatile directory of the state (journal) directory `dir`.
pub fn run_dir(dir: &Path) -> PathBuf {
    dir.join("run")
}

/// Makes the state directory's `run/` a link to `$EDGEREC_RUN_DIR` when that is set (a
/// tmpfs such as `/run/edgerec`), moving nothing: what was there is volatile. Without the
/// variable `run/` stays a plain directory (on the state's own filesystem).
pub fn prepare_run_dir(state_dir: &Path) -> io::Result<()> {
    let Some(target) = std::env::var_os(RUN_DIR_ENV).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let target = PathBuf::from(target);
    std::fs::create_dir_all(&target)?;
    let link = run_dir(state_dir);
    match std::fs::read_link(&link) {
        Ok(now) if now == target => return Ok(()),
        Ok(_) => std::fs::remove_file(&link)?,
        Err(_) if link.is_dir() => std::fs::remove_dir_all(&link)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&target, &link)
}

/// [`prepare_run_dir`] at a role's start: a failure leaves `run/` where it is (said once).
pub fn prepare_run_dir_logged(state_dir: &Path) {
    if let Err(e) = prepare_run_dir(state_dir) {
        log::warn!(
            "{}/run cannot link to ${RUN_DIR_ENV} ({e}); volatile files stay in the state directory",
            state_dir.display()
        );
    }
}

/// A capturing job's frames as its supervisor last saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub frames: u64,
    pub at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct BeatFile {
    pid: u32,
    boot_id: String,
    started_at_ms: i64,
    last_beat_ms: i64,
    #[serde(default)]
    progress: String,
}

/// A role or job name as a file name: the agent's own ids (`[A-Za-z0-9_-]`), anything
/// else is refused rather than turned into a path.
fn file_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| format!("{name}.json"))
}

fn path(dir: &Path, kind: &str, name: &str) -> Option<PathBuf> {
    Some(run_dir(dir).join(kind).join(file_name(name)?))
}

/// Replaces `path` with `bytes`: a temp file beside it (`<name>.tmp`, which no reader
/// matches) and a rename, so a reader sees the old contents or the new, never half.
/// No fsync: volatile state (beats, progress, levels, listen audio), lost on a power
/// cut by design.
pub(crate) fn replace_volatile(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn is_live(state: JobState) -> bool {
    matches!(
        state,
        JobState::Claimed | JobState::Capturing | JobState::Stopping
    )
}

/// A live job's row with the frames its supervisor last published, when they are newer
/// than the journal's (which holds the count at each run's end).
pub(super) fn overlay_progress(dir: &Path, job: &mut JobRow) {
    if !is_live(job.state) {
        return;
    }
    if let Some(p) = path(dir, "progress", &job.id).and_then(|p| progress::read(&p))
        && p.frames > job.captured_frames
    {
        job.captured_frames = p.frames;
    }
}

impl Journal {
    /// Publishes a role's beat (`run/beats/<role>.json`).
    pub fn write_beat(
        &self,
        role: &str,
        pid: u32,
        boot_id: &str,
        started_at_ms: i64,
        now_ms: i64,
        progress: &str,
    ) -> Result<()> {
        let file = BeatFile {
            pid,
            boot_id: boot_id.to_string(),
            started_at_ms,
            last_beat_ms: now_ms,
            progress: progress.to_string(),
        };
        self.publish("beats", role, &file)
    }

    /// A role's last beat, if it ever beat here (`None` too for an unreadable file: it is
    /// rewritten at the next beat).
    pub fn beat(&self, role: &str) -> Result<Option<BeatRow>> {
        let Some(p) = path(&self.dir, "beats", role) else {
            return Ok(None);
        };
        Ok(read::<BeatFile>(&p).map(|b| BeatRow {
            role: role.to_string(),
            pid: b.pid,
            boot_id: b.boot_id,
            started_at_ms: b.started_at_ms,
            last_beat_ms: b.last_beat_ms,
            progress: b.progress,
        }))
    }

    /// Publishes a capturing job's frame count (`run/progress/<job>.json`, rewritten in
    /// place: `progress`): the sync role's proof that capture advances, and what `status`
    /// shows while it runs. The writer keeps a [`ProgressFile`] open instead.
    pub fn publish_progress(&self, job_id: &str, frames: u64, now_ms: i64) -> Result<()> {
        let mut file = self.progress_file(job_id)?;
        file.publish(frames, now_ms)
            .map_err(|e| progress_err(job_id, e))
    }

    /// The job's progress file, to publish to again and again.
    pub fn progress_file(&self, job_id: &str) -> Result<ProgressFile> {
        let Some(p) = path(&self.dir, "progress", job_id) else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a plain name");
            return Err(progress_err(job_id, e));
        };
        Ok(ProgressFile::new(p))
    }

    /// The frames a job's supervisor last published.
    pub fn published_progress(&self, job_id: &str) -> Option<Progress> {
        progress::read(&path(&self.dir, "progress", job_id)?)
    }

    /// Forgets a job's published progress (its run ended; the journal has the count).
    pub fn clear_progress(&self, job_id: &str) {
        if let Some(p) = path(&self.dir, "progress", job_id) {
            let _ = std::fs::remove_file(p); // best effort: a stale file is overlaid only while live
        }
    }

    fn publish<T: Serialize>(&self, kind: &str, name: &str, value: &T) -> Result<()> {
        let io_err = |e: io::Error| super::JournalError::RunFile {
            what: format!("{kind}/{name}"),
            source: e,
        };
        let Some(p) = path(&self.dir, kind, name) else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a plain name");
            return Err(io_err(e));
        };
        let bytes = serde_json::to_vec(value).map_err(|e| io_err(io::Error::other(e)))?;
        replace_volatile(&p, &bytes).map_err(io_err)
    }
}

fn progress_err(job_id: &str, source: io::Error) -> super::JournalError {
    super::JournalError::RunFile {
        what: format!("progress/{job_id}"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_and_progress_live_in_run_files_not_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("edgerec.db")).unwrap();
        assert_eq!(j.beat("capture").unwrap(), None);
        j.write_beat("capture", 42, "boot", 1, 2, "{}").unwrap();
        let b = j.beat("capture").unwrap().unwrap();
        assert_eq!((b.pid, b.last_beat_ms, b.boot_id.as_str()), (42, 2, "boot"));
        assert!(dir.path().join("run/beats/capture.json").exists());
        j.publish_progress("job_1", 480, 5).unwrap();
        assert_eq!(
            j.published_progress("job_1"),
            Some(Progress {
                frames: 480,
                at_ms: 5
            })
        );
        j.clear_progress("job_1");
        assert_eq!(j.published_progress("job_1"), None);
        // A name that is not a plain id is never a path.
        assert!(j.publish_progress("../x", 1, 1).is_err());
        assert_eq!(j.published_progress("../../etc/passwd"), None);
    }

    #[test]
    fn the_run_dir_follows_the_environment() {
        let state = tempfile::tempdir().unwrap();
        let tmpfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run_dir(state.path()).join("meter")).unwrap();
        // SAFETY: this test alone reads or sets the variable.
        unsafe { std::env::set_var(RUN_DIR_ENV, tmpfs.path()) };
        prepare_run_dir(state.path()).unwrap();
        prepare_run_dir(state.path()).unwrap(); // again: already linked
        unsafe { std::env::remove_var(RUN_DIR_ENV) };
        assert_eq!(
            std::fs::read_link(run_dir(state.path())).unwrap(),
            tmpfs.path()
        );
        let j = Journal::open(&state.path().join("edgerec.db")).unwrap();
        j.write_beat("sync", 1, "", 0, 0, "").unwrap();
        assert!(tmpfs.path().join("beats/sync.json").exists());
    }
}
