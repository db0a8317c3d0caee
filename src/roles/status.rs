//! `edgerec status`: one screen about the box for a serial console, read from the journal
//! opened read-only (no migration, no write), so it works when the daemons do not.
//!
//! [`gather`] collects a [`Status`] (the journal, `statvfs`, `/proc`); [`render`] turns it
//! into at most [`MAX_LINES`] lines of at most [`WIDTH`] ASCII columns, no colour. `--json`
//! prints the same [`Status`] serialized.
//!
//! - this file: how it is gathered ([`gather`], [`gather_from`]).
//! - `model`: what is gathered ([`Status`] and its parts).
//! - `levels`: the live levels of capturing jobs ([`JobLevels`]).
//! - `render`: the console screen ([`render`], [`short_id`], [`age_text`]).

mod levels;
mod model;
mod render;

pub use levels::{JobLevels, LevelLine};
pub use model::{
    DiskStatus, EventLine, JobLine, KeptRecording, Liveness, OutboxStatus, RoleStatus, Status,
};
pub use render::{age_text, render, short_id};

use std::path::{Path, PathBuf};

use crate::core::job::JobState;
use crate::core::job_machine::{MachineState, Verdict, reason};
use crate::core::timeline::EventKind;
use crate::journal::{JobRow, JobSource, Journal, JournalError, OutboxRow};
use crate::roles::finalize::{RECORDING_FILE, journal_path};
use crate::segment::disk::disk_space;

/// The capture role beats every 2 s while jobs run: a beat older than this (or than three
/// of the slower cadence its beat says it keeps when idle) means it is wedged. A role
/// that is not running is told by its pid at once.
pub const CAPTURE_STALE_AFTER_MS: i64 = 10_000;
/// The sync role beats once per tick, and a tick may wait on the controller (calls time out
/// after 10 s, uploads later): allow more.
pub const SYNC_STALE_AFTER_MS: i64 = 60_000;
/// Terminal jobs shown, newest first.
pub const RECENT_ENDED: usize = 3;
/// Running jobs shown before "+N more".
pub const MAX_RUNNING_SHOWN: usize = 4;
/// Kept-locally recordings shown before "+N more".
pub const MAX_KEPT_SHOWN: usize = 3;
/// Timeline events of running jobs shown.
pub const RECENT_EVENTS: usize = 3;
/// The screen: a serial console's 80 columns and 24 rows.
pub const WIDTH: usize = 80;
pub const MAX_LINES: usize = 24;

/// The timeline events worth an operator's attention while a job runs.
const WATCHED_EVENTS: [EventKind; 5] = [
    EventKind::DeviceLost,
    EventKind::DeviceRestored,
    EventKind::Stall,
    EventKind::DiskPause,
    EventKind::DiskResume,
];

/// Pruned recordings shown.
pub const RECENT_PRUNED: u32 = 3;

/// End causes under which the job machine keeps the audio locally and flags it
/// (`Next::kept` in core/job_machine.rs), plus the lease runner's verdict.
const KEPT_CAUSES: [&str; 6] = [
    reason::LEASE_EXPIRED,
    reason::UPLOAD_REFUSED,
    reason::UPLOAD_REJECTED,
    reason::CHECKSUM_MISMATCH,
    reason::RENDER_FAILED,
    reason::CRASH_LOOP,
];

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no journal at {}: nothing has run with this state dir (wrong --state-dir?)", path.display())]
    NoJournal { path: PathBuf },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What `gather_from` needs to know about the running system.
pub struct Host<'a> {
    /// This boot's id (empty when unknown: beats are then assumed to be of this boot).
    pub boot_id: String,
    /// Whether a process exists (`None` when it cannot be told).
    pub pid_running: &'a dyn Fn(u32) -> Option<bool>,
}

/// Whether `pid` exists, by `/proc`; `None` without a `/proc`.
fn pid_running(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Reads the journal of `state_dir` read-only, and the filesystem it is on.
pub fn gather(state_dir: &Path, now_ms: i64) -> Result<Status, StatusError> {
    let path = journal_path(state_dir);
    let journal = match Journal::open_read_only(&path) {
        Err(JournalError::Missing { path }) => return Err(StatusError::NoJournal { path }),
        other => other?,
    };
    let host = Host {
        boot_id: crate::roles::capture::boot_id(),
        pid_running: &pid_running,
    };
    let mut status = gather_from(&journal, state_dir, &host, now_ms)?;
    match disk_space(state_dir) {
        Ok(d) => {
            status.disk = Some(DiskStatus {
                free_bytes: d.free_bytes,
                total_bytes: d.total_bytes,
            })
        }
        Err(e) => status.disk_error = Some(e.to_string()),
    }
    Ok(status)
}

/// Everything but the disk, from an open journal.
pub fn gather_from(
    journal: &Journal,
    state_dir: &Path,
    host: &Host<'_>,
    now_ms: i64,
) -> Result<Status, StatusError> {
    let capture = journal.beat("capture")?;
    let capture_stale_after = capture.as_ref().map_or(CAPTURE_STALE_AFTER_MS, |b| {
        capture_stale_after_ms(&b.progress)
    });
    let sync = journal.beat("sync")?;
    let controller_contact_ms = sync.as_ref().map(|b| b.last_beat_ms);
    let roles = vec![
        role_status("capture", capture, host, now_ms, capture_stale_after),
        role_status("sync", sync, host, now_ms, SYNC_STALE_AFTER_MS),
    ];

    let jobs = journal.jobs()?; // newest first
    let mut running = Vec::new();
    let mut recent_ended = Vec::new();
    let mut ended_total = 0;
    let mut kept_locally = Vec::new();
    let mut events = Vec::new();
    let mut levels = Vec::new();
    let mut outbox_rows = Vec::new();
    for job in &jobs {
        let machine = match job.source {
            JobSource::Controller => journal.load_machine(&job.id)?,
            JobSource::Local => None,
        };
        let line = job_line(job, machine.as_ref());
        if job.state.is_terminal() {
            ended_total += 1;
            recent_ended.push(line);
            if let Some(why) = kept_reason(job, machine.as_ref()) {
                kept_locally.push(KeptRecording {
                    job_id: job.id.clone(),
                    path: kept_path(job, machine.as_ref()),
                    reason: why,
                });
            }
        } else {
            for ev in journal.events(&job.id)? {
                if WATCHED_EVENTS.contains(&ev.kind) {
                    events.push(EventLine {
                        job_id: job.id.clone(),
                        kind: ev.kind,
                        at_ms: ev.at_ms,
                        frame: ev.frame,
                        rate: job.spec.rate,
                        detail: ev.detail,
                    });
                }
            }
            levels.extend(levels::job_levels(state_dir, job, now_ms));
            running.push(line);
        }
        outbox_rows.extend(journal.rows_for_job(&job.id)?);
    }
    running.reverse(); // oldest first, as they are resumed
    recent_ended.sort_by_key(|j| std::cmp::Reverse(j.ended_at_ms.unwrap_or(j.updated_at_ms)));
    recent_ended.truncate(RECENT_ENDED);
    events.sort_by_key(|e| e.at_ms);
    let events = events.split_off(events.len().saturating_sub(RECENT_EVENTS));

    Ok(Status {
        state_dir: state_dir.to_path_buf(),
        journal: journal_path(state_dir),
        schema_version: journal.schema_version()?,
        taken_at_ms: now_ms,
        roles,
        running,
        recent_ended,
        ended_total,
        kept_locally,
        pruned: journal.recently_pruned(RECENT_PRUNED)?,
        events,
        levels,
        disk: None,
        disk_error: None,
        outbox: outbox_status(journal.pending_count()?, &outbox_rows),
        controller_contact_ms,
        node: crate::roles::sync::node_health::read_facts(state_dir),
    })
}

/// How old the capture role's beat may be: [`CAPTURE_STALE_AFTER_MS`], or three beats of
/// the slower cadence it says it keeps.
fn capture_stale_after_ms(progress: &str) -> i64 {
    crate::roles::capture::beat_every_ms(progress).map_or(CAPTURE_STALE_AFTER_MS, |every| {
        CAPTURE_STALE_AFTER_MS.max(every.saturating_mul(3))
    })
}

fn role_status(
    role: &str,
    beat: Option<crate::journal::BeatRow>,
    host: &Host<'_>,
    now_ms: i64,
    stale_after_ms: i64,
) -> RoleStatus {
    let Some(b) = beat else {
        return RoleStatus {
            role: role.to_string(),
            liveness: Liveness::Never,
            note: None,
            pid: None,
            started_at_ms: None,
            last_beat_ms: None,
            same_boot: None,
            progress: String::new(),
        };
    };
    let same_boot =
        (!host.boot_id.is_empty() && !b.boot_id.is_empty()).then(|| host.boot_id == b.boot_id);
    let age = now_ms.saturating_sub(b.last_beat_ms);
    let note = if same_boot == Some(false) {
        Some("beat from before a reboot".to_string())
    } else if (host.pid_running)(b.pid) == Some(false) {
        Some("process gone".to_string())
    } else if age > stale_after_ms {
        Some(format!("no beat for {}", age_text(age)))
    } else {
        None
    };
    RoleStatus {
        role: role.to_string(),
        liveness: if note.is_some() {
            Liveness::Stale
        } else {
            Liveness::Alive
        },
        note,
        pid: Some(b.pid),
        started_at_ms: Some(b.started_at_ms),
        last_beat_ms: Some(b.last_beat_ms),
        same_boot,
        progress: b.progress,
    }
}

fn job_line(job: &JobRow, machine: Option<&MachineState>) -> JobLine {
    JobLine {
        id: job.id.clone(),
        source: job.source.name().to_string(),
        state: job.state,
        device: job.device.clone(),
        rate: job.spec.rate,
        captured_frames: job.captured_frames,
        duration_frames: job.duration_frames,
        end_cause: job.end_cause.clone(),
        verdict: machine
            .and_then(|m| m.verdict.as_ref())
            .map(|v| verdict_reason(v).to_string()),
        updated_at_ms: job.updated_at_ms,
        ended_at_ms: job.ended_at_ms,
    }
}

/// The end cause a verdict leads to (as the job machine ends the job).
fn verdict_reason(v: &Verdict) -> &str {
    match v {
        Verdict::Completed => reason::CONTROLLER_COMPLETED,
        Verdict::Failed { reason } | Verdict::Cancelled { reason } => reason,
    }
}

/// Why a terminal controller job's audio stayed on the box, if it did.
fn kept_reason(job: &JobRow, machine: Option<&MachineState>) -> Option<String> {
    if job.source != JobSource::Controller || job.state == JobState::Delivered {
        return None;
    }
    let has_audio = job.captured_frames > 0 || machine.is_some_and(|m| m.recording.is_some());
    if !has_audio {
        return None;
    }
    if let Some(v) = machine.and_then(|m| m.verdict.as_ref()) {
        return Some(verdict_reason(v).to_string());
    }
    let cause = job.end_cause.as_deref()?;
    (cause.contains("kept") || KEPT_CAUSES.iter().any(|k| cause.contains(k)))
        .then(|| cause.to_string())
}

/// The rendered recording if there is one, else the job directory (its segments).
fn kept_path(job: &JobRow, machine: Option<&MachineState>) -> PathBuf {
    if let Some(file) = machine.and_then(|m| m.recording.as_ref()) {
        return file.path.clone();
    }
    let file = job.dir.join(RECORDING_FILE);
    if file.exists() { file } else { job.dir.clone() }
}

fn outbox_status(pending: u64, rows: &[OutboxRow]) -> OutboxStatus {
    let oldest_pending_ms = rows
        .iter()
        .filter(|r| r.is_pending())
        .map(|r| r.created_at_ms)
        .min();
    let with_error = |r: &&OutboxRow| r.last_error.is_some();
    let newest_pending = rows
        .iter()
        .filter(|r| r.is_pending())
        .filter(with_error)
        .max_by_key(|r| r.id);
    let newest_abandoned = rows
        .iter()
        .filter(with_error)
        .filter(|r| r.abandoned_at_ms.is_some())
        .max_by_key(|r| (r.abandoned_at_ms, r.id));
    let last_error = newest_pending.or(newest_abandoned).map(|r| {
        format!(
            "{}: {}",
            r.kind.name(),
            r.last_error.as_deref().unwrap_or_default()
        )
    });
    OutboxStatus {
        pending,
        oldest_pending_ms,
        last_error,
    }
}

/// `status` as one JSON object.
pub fn to_json(status: &Status) -> serde_json::Result<String> {
    serde_json::to_string_pretty(status)
}

#[cfg(test)]
mod tests;
