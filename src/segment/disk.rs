//! The disk budget's I/O, around the pure [`crate::core::disk_budget`]: free space by
//! `statvfs`, telling a full disk from other write errors, the journal's reserve file, and
//! reclaiming delivered recordings.
//!
//! Free space as the budget counts it is `statvfs` free with the journal's reserve always
//! counted as used, held or not ([`JournalReserve::budget_free`]): releasing the reserve to
//! the journal then never looks like room to resume writing, and re-creating it never
//! looks like a new shortfall.

use crate::core::disk_budget::{DiskBudget, ReclaimCandidate, past_retention, reclaim_plan};
use crate::core::job::JobState;
use crate::journal::{JobSource, Journal, JournalError};
use crate::segment::file::sync_parent_dir;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A filesystem's size and the space an unprivileged writer may still use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// `f_blocks × f_frsize`: the size to derive a budget from.
    pub total_bytes: u64,
    /// `f_bavail × f_frsize`: free to us (not counting blocks reserved for root).
    pub free_bytes: u64,
}

/// Size and free space of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {path:?} contains a NUL byte"),
        )
    })?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `st` is a valid place for one `statvfs`.
    if unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field types are platform aliases (u32 or u64); widen them all.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, bavail, frsize) = (st.f_blocks as u64, st.f_bavail as u64, st.f_frsize as u64);
    Ok(DiskSpace {
        total_bytes: blocks.saturating_mul(frsize),
        free_bytes: bavail.saturating_mul(frsize),
    })
}

/// Free bytes for us on the filesystem holding `path` (`f_bavail × f_frsize`).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    disk_space(path).map(|s| s.free_bytes)
}

/// A write failed because the disk (`ENOSPC`) or our quota (`EDQUOT`) is full: for the
/// budget, the same event as free space falling below the reserve.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            err.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

/// A journal write failed because the disk is full (`SQLITE_FULL`): release the
/// [`JournalReserve`] and try once more.
pub fn is_journal_disk_full(err: &JournalError) -> bool {
    let source = match err {
        JournalError::Sqlite { source, .. } | JournalError::Open { source, .. } => source,
        _ => return false,
    };
    matches!(
        source,
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
    )
}

/// Room kept for the journal on the spool: a file of real zeros that is deleted when the
/// disk is short, so SQLite can still commit the events that record the pause.
///
/// Why this works: deleting a file nobody holds open gives its blocks back to the
/// filesystem at once. Below the reserve mark the writer has already stopped writing
/// audio, so nothing else of ours competes for those blocks and the journal's next WAL
/// appends get them. (Another program writing to the same filesystem could take them
/// first; the spool should be ours alone.) The file is made of written zeros, not
/// `set_len`: a sparse file holds no blocks and would reserve nothing.
///
/// The file is created under a temporary name, filled, fsynced and renamed into place, so
/// a file with the reserve's name always has its full size, even after a crash.
#[derive(Debug)]
pub struct JournalReserve {
    path: PathBuf,
    tmp_path: PathBuf,
    bytes: u64,
    held: bool,
}

impl JournalReserve {
    /// The reserve file's name in the spool.
    pub const FILE_NAME: &'static str = ".journal-reserve";
    /// Default size: hundreds of WAL frames (4 KiB pages), far more than the few
    /// transactions a pause, a resume and an orderly stop write.
    pub const DEFAULT_BYTES: u64 = 512 * 1024;

    /// Finds the reserve in `dir`, without creating it (call [`JournalReserve::restore`]
    /// when the budget says there is room). A reserve of another size (the setting changed)
    /// or a half-made one from a crash is removed.
    pub fn open(dir: &Path, bytes: u64) -> io::Result<JournalReserve> {
        let path = dir.join(Self::FILE_NAME);
        let tmp_path = dir.join(format!("{}.tmp", Self::FILE_NAME));
        remove_if_exists(&tmp_path)?;
        let held = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() == bytes => true,
            Ok(_) => {
                remove_if_exists(&path)?;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        Ok(JournalReserve {
            path,
            tmp_path,
            bytes,
            held,
        })
    }

    /// Whether the reserve file exists (its space is set aside for the journal).
    pub fn is_held(&self) -> bool {
        self.held
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Free space as the budget should see it, given `statvfs` free: the reserve counts as
    /// used even while released, so the journal's borrowed room is never room for audio.
    pub fn budget_free(&self, statvfs_free: u64) -> u64 {
        if self.held {
            statvfs_free
        } else {
            statvfs_free.saturating_sub(self.bytes)
        }
    }

    /// Deletes the reserve file, giving its space to the journal. `Ok(true)` if it was
    /// held. Works on a full disk: unlinking needs no space.
    pub fn release(&mut self) -> io::Result<bool> {
        if !self.held {
            return Ok(false);
        }
        remove_if_exists(&self.path)?;
        self.held = false;
        // Best effort: the space is back whether or not the unlink is durable yet, and a
        // reserve that reappears after a power cut is only a reserve held again.
        let _ = sync_parent_dir(&self.path);
        Ok(true)
    }

    /// Re-creates the reserve file when it is not held. Call it when the budget says there
    /// is room (writing, or resuming). On failure (`ENOSPC`: someone else took the room)
    /// nothing is left behind and the reserve stays released; try again later.
    pub fn restore(&mut self) -> io::Result<()> {
        if self.held {
            return Ok(());
        }
        if let Err(e) = self.create() {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        self.held = true;
        Ok(())
    }

    fn create(&self) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp_path)?;
        if !allocate(&file, self.bytes)? {
            let zeros = vec![0u8; 64 * 1024];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
        // Fsync so the blocks are really allocated (not merely promised by delayed
        // allocation) and the file survives a power cut.
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp_path, &self.path)?;
        sync_parent_dir(&self.path)
    }
}

/// Allocates `len` bytes of real blocks without writing them (`fallocate`: the flash is
/// not programmed for a reserve that is only ever deleted). `Ok(false)` where the
/// filesystem cannot (the caller writes zeros instead).
fn allocate(file: &File, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: a plain syscall on an open descriptor we own.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(false),
        _ => Err(e),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A recording deleted by reclaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimedJob {
    pub job_id: String,
    pub dir: PathBuf,
    /// Space given back (allocated blocks, as counted before deleting).
    pub bytes: u64,
    pub ended_at_ms: i64,
}

/// Reclaim could not even start; a recording that cannot be deleted is logged and skipped
/// instead, so that one bad directory never blocks the others.
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    /// The journal could not be read: try again at the next look at the disk.
    #[error("reclaim: {0}")]
    Journal(#[from] JournalError),
    /// The spool itself is unusable (gone, unmounted): nothing can be reclaimed from it.
    #[error("reclaim: spool {path}: {source}")]
    Spool { path: PathBuf, source: io::Error },
}

/// Deletes delivered recordings past `retention`, oldest first, until the spool is back at
/// the budget's reclaim mark (by `statvfs`; with the journal's reserve released, pass the
/// need from [`JournalReserve::budget_free`] to [`reclaim_bytes`] instead).
pub fn reclaim(
    journal: &Journal,
    spool: &Path,
    budget: &DiskBudget,
    retention: Duration,
    now_ms: i64,
) -> Result<Vec<ReclaimedJob>, ReclaimError> {
    let free = free_bytes(spool).map_err(|source| ReclaimError::Spool {
        path: spool.to_path_buf(),
        source,
    })?;
    reclaim_bytes(journal, spool, budget.reclaim_need(free), retention, now_ms)
}

/// Deletes delivered recordings past `retention`, oldest first, until `need_bytes` are
/// freed or none is left to delete.
///
/// A recording is deleted only if its job is a controller job in the terminal `delivered`
/// state (the controller acknowledged the upload) and its directory lies inside `spool`.
/// A local job's directory is the only copy of its recording: never a candidate.
///
/// Order: there is no "reclaimed" job state to mark first, so the directory's files go,
/// then the directory, then the spool directory is fsynced. A crash half way leaves a
/// delivered job with a partial directory, which the next reclaim finishes: deleting is
/// idempotent, and the recording was delivered. Jobs whose directory is already gone are
/// skipped silently.
pub fn reclaim_bytes(
    journal: &Journal,
    spool: &Path,
    need_bytes: u64,
    retention: Duration,
    now_ms: i64,
) -> Result<Vec<ReclaimedJob>, ReclaimError> {
    if need_bytes == 0 {
        return Ok(Vec::new());
    }
    let spool_dir = spool.canonicalize().map_err(|source| ReclaimError::Spool {
        path: spool.to_path_buf(),
        source,
    })?;
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    let (mut candidates, mut dirs) = reclaim_candidates(journal, &spool_dir, retention_ms, now_ms)?;
    let mut need = need_bytes;
    let mut reclaimed = Vec::new();
    // Each round deletes the plan; a directory that cannot be deleted leaves the
    // candidates, and the next round plans the rest of the need without it.
    loop {
        let plan = reclaim_plan(&candidates, now_ms, retention_ms, need);
        if plan.is_empty() {
            break;
        }
        for id in plan {
            let at = candidates
                .iter()
                .position(|c| c.job_id == id)
                .expect("the plan names candidates");
            let c = candidates.swap_remove(at);
            let dir = dirs.remove(&id).expect("every candidate has a directory");
            match delete_job_dir(&dir) {
                Ok(()) => {
                    let age = Duration::from_secs(
                        u64::try_from(now_ms.saturating_sub(c.ended_at_ms) / 1000).unwrap_or(0),
                    );
                    log::info!(
                        "{id}: reclaimed {} bytes in {} (delivered {} ago, past retention)",
                        c.bytes,
                        dir.display(),
                        humantime::format_duration(age)
                    );
                    need = need.saturating_sub(c.bytes);
                    reclaimed.push(ReclaimedJob {
                        job_id: id,
                        dir,
                        bytes: c.bytes,
                        ended_at_ms: c.ended_at_ms,
                    });
                }
                Err(e) => log::warn!("{id}: cannot reclaim {}: {e}", dir.display()),
            }
        }
    }
    Ok(reclaimed)
}

/// The delivered controller jobs past `retention` whose directory lies inside the spool,
/// with their sizes; a job whose directory cannot be resolved or measured is skipped and
/// logged.
fn reclaim_candidates(
    journal: &Journal,
    spool_dir: &Path,
    retention_ms: u64,
    now_ms: i64,
) -> Result<(Vec<ReclaimCandidate>, HashMap<String, PathBuf>), ReclaimError> {
    let mut candidates = Vec::new();
    let mut dirs = HashMap::new();
    for job in journal.jobs()? {
        // TODO(outbox): also require every `uploads` row of the job to be acknowledged
        // once the journal can say so; for a controller job, `delivered` is only reached
        // after the controller acknowledged the recording.
        if job.source != JobSource::Controller || job.state != JobState::Delivered {
            continue;
        }
        let Some(ended_at_ms) = job.ended_at_ms else {
            continue;
        };
        if !past_retention(ended_at_ms, now_ms, retention_ms) {
            continue;
        }
        let dir = match job_dir_in_spool(&job.dir, spool_dir) {
            Ok(Some(dir)) => dir,
            Ok(None) => continue,
            Err(why) => {
                log::warn!("{}: not reclaiming {}: {why}", job.id, job.dir.display());
                continue;
            }
        };
        let bytes = match dir_bytes(&dir) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("{}: not reclaiming {}: {e}", job.id, dir.display());
                continue;
            }
        };
        let candidate = ReclaimCandidate {
            job_id: job.id.clone(),
            delivered: true,
            ended_at_ms,
            bytes,
        };
        dirs.insert(job.id, dir);
        candidates.push(candidate);
    }
    Ok((candidates, dirs))
}

/// The job's directory, resolved, if it exists and lies strictly inside `spool_dir`
/// (already resolved). A corrupt row must never delete anything outside the spool.
pub(crate) fn job_dir_in_spool(dir: &Path, spool_dir: &Path) -> Result<Option<PathBuf>, String> {
    let resolved = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if resolved == spool_dir || !resolved.starts_with(spool_dir) {
        return Err(format!(
            "{} is not inside the spool {}",
            resolved.display(),
            spool_dir.display()
        ));
    }
    if !resolved.is_dir() {
        return Err(format!("{} is not a directory", resolved.display()));
    }
    Ok(Some(resolved))
}

/// Bytes allocated to everything under `path` (symbolic links are not followed).
pub fn dir_bytes(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    // st_blocks is in 512-byte units whatever the filesystem's block size.
    let mut total = meta.blocks().saturating_mul(512);
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total = total.saturating_add(dir_bytes(&entry?.path())?);
        }
    }
    Ok(total)
}

/// Deletes the directory's files, then the directory (links are removed, not followed),
/// then makes the removal durable.
pub(crate) fn delete_job_dir(dir: &Path) -> io::Result<()> {
    fs::remove_dir_all(dir)?;
    sync_parent_dir(dir)
}

#[cfg(test)]
mod tests;
