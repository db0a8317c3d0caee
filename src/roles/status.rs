//! `edgerec status`: one screen about the box for a serial console, read from the journal
//! opened read-only (no migration, no write), so it works when the daemons do not.
//!
//! [`gather`] collects a [`Status`] (the journal, `statvfs`, `/proc`); [`render`] turns it
//! into at most [`MAX_LINES`] lines of at most [`WIDTH`] ASCII columns, no colour. `--json`
//! prints the same [`Status`] serialized.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::core::job::JobState;
use crate::core::job_machine::{MachineState, Verdict, reason};
use crate::core::timeline::EventKind;
use crate::journal::{JobRow, JobSource, Journal, JournalError, OutboxRow};
use crate::roles::finalize::{RECORDING_FILE, journal_path};
use crate::segment::disk::disk_space;

/// The capture role beats every poll (250 ms): a beat older than this means it is not
/// running (or is wedged).
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

/// Whether a role is running, as its beat says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Alive,
    /// It beat once, but not recently, not this boot, or its process is gone.
    Stale,
    /// It never beat in this journal.
    Never,
}

impl Liveness {
    pub const fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stale => "stale",
            Liveness::Never => "never",
        }
    }
}

/// One role (`capture`, `sync`) as its last beat shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub liveness: Liveness,
    /// Why it is stale ("before a reboot", "process gone", "no beat for 42s").
    pub note: Option<String>,
    pub pid: Option<u32>,
    pub started_at_ms: Option<i64>,
    pub last_beat_ms: Option<i64>,
    /// The beat's boot id is this boot's (`None`: no beat, or no boot id to compare).
    pub same_boot: Option<bool>,
    pub progress: String,
}

/// A job, as one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobLine {
    pub id: String,
    /// `local` or `controller`.
    pub source: String,
    pub state: JobState,
    pub device: String,
    pub rate: u32,
    pub captured_frames: u64,
    pub duration_frames: Option<u64>,
    pub end_cause: Option<String>,
    /// The controller's verdict, when it already ended the job (the audio will be kept).
    pub verdict: Option<String>,
    pub updated_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// A recording that stays on the box, undelivered, flagged for an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptRecording {
    pub job_id: String,
    /// The rendered file, else the job directory (its segments).
    pub path: PathBuf,
    pub reason: String,
}

/// A timeline event of a running job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventLine {
    pub job_id: String,
    pub kind: EventKind,
    pub at_ms: i64,
    /// Position on the job's timeline.
    pub frame: u64,
    pub rate: u32,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// Rows neither delivered nor abandoned (node-level rows included).
    pub pending: u64,
    /// Creation time of the oldest pending row of a job (node-level rows are not listed
    /// by the journal's read API, so a box with only those shows `None`).
    pub oldest_pending_ms: Option<i64>,
    /// The newest pending row's error, else the newest abandoned row's: `kind: error`.
    pub last_error: Option<String>,
}

/// One capturing job's live levels, in tenths of a dB (so the screen model stays exact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobLevels {
    pub job_id: String,
    pub channels: Vec<LevelLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelLine {
    /// 1-based.
    pub channel: u16,
    pub rms_db10: i32,
    pub peak_db10: i32,
    pub clipping: bool,
}

/// Snapshots older than this are a capture that stopped: not shown as live.
const LEVELS_FRESH_MS: i64 = 12_000;
/// Channels drawn per job on the one screen.
const MAX_LEVEL_CHANNELS: usize = 4;

/// The job's live levels, if its writer published them lately.
fn job_levels(state_dir: &Path, job: &JobRow, now_ms: i64) -> Option<JobLevels> {
    let snap = crate::segment::meter_file::read(state_dir, &job.id)?;
    if now_ms - snap.at_ms > LEVELS_FRESH_MS {
        return None;
    }
    let tenths = |db: f64| (db * 10.0).round() as i32;
    Some(JobLevels {
        job_id: job.id.clone(),
        channels: snap
            .channels
            .iter()
            .map(|c| LevelLine {
                channel: c.channel,
                rms_db10: tenths(c.rms_dbfs),
                peak_db10: tenths(c.peak_dbfs),
                clipping: c.clipped > 0,
            })
            .collect(),
    })
}

fn level_lines(levels: &[JobLevels]) -> Vec<String> {
    let mut lines = Vec::new();
    for l in levels {
        lines.push(format!("  levels of {}:", short_id(&l.job_id)));
        for c in l.channels.iter().take(MAX_LEVEL_CHANNELS) {
            lines.push(level_line(c));
        }
        if l.channels.len() > MAX_LEVEL_CHANNELS {
            let more = l.channels.len() - MAX_LEVEL_CHANNELS;
            lines.push(format!("    +{more} more channels (--json has them all)"));
        }
    }
    lines
}

/// `  ch 1 [#########...........]  -9.0 rms  -6.0 peak CLIP`: RMS as a bar over -60..0 dBFS.
fn level_line(l: &LevelLine) -> String {
    const BAR: i32 = 30;
    let filled = ((l.rms_db10 + 600).clamp(0, 600) * BAR / 600) as usize;
    format!(
        "    ch {:<3} [{}{}] {:>6.1} rms {:>6.1} peak{}",
        l.channel,
        "#".repeat(filled),
        ".".repeat(BAR as usize - filled),
        l.rms_db10 as f64 / 10.0,
        l.peak_db10 as f64 / 10.0,
        if l.clipping { " CLIP" } else { "" }
    )
}

/// Everything `edgerec status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state_dir: PathBuf,
    pub journal: PathBuf,
    pub schema_version: i64,
    /// When this was gathered (wall clock, ms since the epoch).
    pub taken_at_ms: i64,
    pub roles: Vec<RoleStatus>,
    /// Non-terminal jobs, oldest first.
    pub running: Vec<JobLine>,
    /// The newest terminal jobs, newest first (at most [`RECENT_ENDED`]).
    pub recent_ended: Vec<JobLine>,
    pub ended_total: usize,
    /// Newest first.
    pub kept_locally: Vec<KeptRecording>,
    /// The latest [`RECENT_EVENTS`] watched events of running jobs, oldest first.
    pub events: Vec<EventLine>,
    /// Live levels of the jobs that are capturing now (the writer's snapshot).
    pub levels: Vec<JobLevels>,
    pub disk: Option<DiskStatus>,
    pub disk_error: Option<String>,
    pub outbox: OutboxStatus,
    /// The sync role's last beat: when it last ran (and so last could reach the
    /// controller). `None`: no sync role ever ran here.
    pub controller_contact_ms: Option<i64>,
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
    let sync = journal.beat("sync")?;
    let controller_contact_ms = sync.as_ref().map(|b| b.last_beat_ms);
    let roles = vec![
        role_status("capture", capture, host, now_ms, CAPTURE_STALE_AFTER_MS),
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
            levels.extend(job_levels(state_dir, job, now_ms));
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
        events,
        levels,
        disk: None,
        disk_error: None,
        outbox: outbox_status(journal.pending_count()?, &outbox_rows),
        controller_contact_ms,
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

// ── Rendering ────────────────────────────────────────────────────────────────────────

/// A job id short enough for a line: `job_` dropped, the middle elided.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("job_").unwrap_or(id);
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 15 {
        return id.to_string();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 5..].iter().collect();
    format!("{head}..{tail}")
}

/// `42s`, `17m`, `5h`, `3d`; a time in the future (clock skew) reads `0s`.
pub fn age_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn ago(now_ms: i64, then_ms: i64) -> String {
    format!("{} ago", age_text(now_ms.saturating_sub(then_ms)))
}

fn bytes_text(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.1} KiB", f / KIB)
    }
}

fn seconds(frames: u64, rate: u32) -> String {
    format!("{:.1}", frames as f64 / f64::from(rate.max(1)))
}

/// Cuts a line to the screen width, marking the cut.
fn fit(line: String) -> String {
    // Non-ASCII (a device name, an error) is replaced: a serial console may not be UTF-8.
    let line: String = line
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if line.len() <= WIDTH {
        return line;
    }
    format!("{}...", &line[..WIDTH - 3])
}

/// `KEPT LOCALLY: <path> (<reason>)`, the path shortened only if it must be (relative to the
/// state dir shown in the header, then elided in the middle).
fn kept_line(state_dir: &Path, k: &KeptRecording) -> String {
    let suffix = format!(" ({})", k.reason);
    let full = format!("KEPT LOCALLY: {}{suffix}", k.path.display());
    if full.len() <= WIDTH {
        return full;
    }
    let rel = k.path.strip_prefix(state_dir).unwrap_or(&k.path);
    let rel = rel.display().to_string();
    let room = WIDTH.saturating_sub("KEPT LOCALLY: ".len() + suffix.len());
    let path = if rel.chars().count() <= room || room < 12 {
        rel
    } else {
        let chars: Vec<char> = rel.chars().collect();
        let tail: String = chars[chars.len() - (room - 3)..].iter().collect();
        format!("...{tail}")
    };
    format!("KEPT LOCALLY: {path}{suffix}")
}

fn running_line(j: &JobLine) -> String {
    let progress = match j.duration_frames {
        Some(d) => format!(
            "{}/{} s",
            seconds(j.captured_frames, j.rate),
            seconds(d, j.rate)
        ),
        None => format!("{} s", seconds(j.captured_frames, j.rate)),
    };
    let verdict = j
        .verdict
        .as_ref()
        .map_or(String::new(), |v| format!("[ended: {v}] "));
    format!(
        "  {:<15} {:<10} {:<15} {verdict}{}",
        short_id(&j.id),
        j.state.name(),
        progress,
        j.device
    )
}

fn ended_line(j: &JobLine, now_ms: i64) -> String {
    let when = j.ended_at_ms.unwrap_or(j.updated_at_ms);
    let captured = format!("{} s", seconds(j.captured_frames, j.rate));
    format!(
        "  {:<15} {:<10} {captured:<15} {}  {}",
        short_id(&j.id),
        j.state.name(),
        ago(now_ms, when),
        j.end_cause.as_deref().unwrap_or("-")
    )
}

fn role_line(r: &RoleStatus, now_ms: i64) -> String {
    let label = format!("{}:", r.role);
    let mut line = format!("{label:<8} {}", r.liveness.name());
    if let Some(note) = &r.note {
        line.push_str(&format!(" ({note})"));
    }
    if let Some(pid) = r.pid {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(at) = r.last_beat_ms {
        line.push_str(&format!(", last beat {}", ago(now_ms, at)));
    }
    line
}

/// The screen: at most [`MAX_LINES`] lines of at most [`WIDTH`] ASCII columns.
pub fn render(s: &Status, now_ms: i64) -> String {
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!(
        "edgerec status: {} (journal v{})",
        s.state_dir.display(),
        s.schema_version
    ));
    for r in &s.roles {
        lines.push(role_line(r, now_ms));
    }

    lines.push(format!(
        "jobs:    {} running, {} ended",
        s.running.len(),
        s.ended_total
    ));
    for j in s.running.iter().take(MAX_RUNNING_SHOWN) {
        lines.push(running_line(j));
    }
    if s.running.len() > MAX_RUNNING_SHOWN {
        lines.push(format!(
            "  +{} more running",
            s.running.len() - MAX_RUNNING_SHOWN
        ));
    }
    // Live levels go under the running jobs when the screen has room for them.
    let levels_at = lines.len();
    for j in s.recent_ended.iter().take(RECENT_ENDED) {
        lines.push(ended_line(j, now_ms));
    }
    for k in s.kept_locally.iter().take(MAX_KEPT_SHOWN) {
        lines.push(kept_line(&s.state_dir, k));
    }
    if s.kept_locally.len() > MAX_KEPT_SHOWN {
        lines.push(format!(
            "KEPT LOCALLY: +{} more (edgerec status --json lists them)",
            s.kept_locally.len() - MAX_KEPT_SHOWN
        ));
    }

    if s.events.is_empty() {
        lines.push("events:  none on running jobs".to_string());
    } else {
        lines.push("events:".to_string());
        for e in s.events.iter().take(RECENT_EVENTS) {
            lines.push(format!(
                "  {:<15} {:<15} at {} s, {}  {}",
                short_id(&e.job_id),
                e.kind.name(),
                seconds(e.frame, e.rate),
                ago(now_ms, e.at_ms),
                e.detail
            ));
        }
    }

    lines.push(match (&s.disk, &s.disk_error) {
        (Some(d), _) => {
            let pct = if d.total_bytes == 0 {
                0
            } else {
                (u128::from(d.free_bytes) * 100 / u128::from(d.total_bytes)) as u64
            };
            format!(
                "disk:    {} free of {} ({pct}% free)",
                bytes_text(d.free_bytes),
                bytes_text(d.total_bytes)
            )
        }
        (None, Some(e)) => format!("disk:    unknown ({e})"),
        (None, None) => "disk:    unknown".to_string(),
    });

    let mut outbox = format!("outbox:  {} pending", s.outbox.pending);
    match s.outbox.oldest_pending_ms {
        Some(at) => outbox.push_str(&format!(", oldest {}", ago(now_ms, at))),
        None if s.outbox.pending > 0 => outbox.push_str(", oldest unknown"),
        None => {}
    }
    if let Some(e) = &s.outbox.last_error {
        outbox.push_str(&format!("; last error: {e}"));
    }
    lines.push(outbox);

    lines.push(match s.controller_contact_ms {
        Some(at) => format!("controller: last contact {} (sync beat)", ago(now_ms, at)),
        None => "controller: last contact unknown (no sync role ever ran)".to_string(),
    });

    let mut out = String::new();
    let levels = level_lines(&s.levels);
    if lines.len() + levels.len() <= MAX_LINES {
        lines.splice(levels_at..levels_at, levels);
    }
    for line in lines.into_iter().take(MAX_LINES) {
        out.push_str(&fit(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::core::job_machine::{JobKind, RenderedFile};
    use crate::core::timeline::TimelineEvent;
    use crate::journal::{NewJob, NewOutboxItem};

    const NOW: i64 = 1_700_000_000_000;

    fn job(id: &str, state: JobState) -> JobLine {
        JobLine {
            id: id.to_string(),
            source: "controller".into(),
            state,
            device: "hw:CARD=USB,DEV=0".into(),
            rate: 48_000,
            captured_frames: 48_000 * 12,
            duration_frames: Some(48_000 * 3600),
            end_cause: state.is_terminal().then(|| "capture_ended".to_string()),
            verdict: None,
            updated_at_ms: NOW - 5_000,
            ended_at_ms: state.is_terminal().then_some(NOW - 180_000),
        }
    }

    fn sample() -> Status {
        Status {
            state_dir: "/var/lib/edgerec".into(),
            journal: "/var/lib/edgerec/edgerec.db".into(),
            schema_version: 3,
            taken_at_ms: NOW,
            roles: vec![
                RoleStatus {
                    role: "capture".into(),
                    liveness: Liveness::Alive,
                    note: None,
                    pid: Some(1234),
                    started_at_ms: Some(NOW - 60_000),
                    last_beat_ms: Some(NOW - 2_000),
                    same_boot: Some(true),
                    progress: String::new(),
                },
                RoleStatus {
                    role: "sync".into(),
                    liveness: Liveness::Stale,
                    note: Some("beat from before a reboot".into()),
                    pid: Some(99),
                    started_at_ms: Some(NOW - 7_300_000),
                    last_beat_ms: Some(NOW - 7_200_000),
                    same_boot: Some(false),
                    progress: String::new(),
                },
            ],
            running: vec![job("job_20250101T120000Z_1a2b312345", JobState::Capturing)],
            recent_ended: vec![job(
                "3f9c2a1b-0000-4000-8000-9f0e1d2c3b4a",
                JobState::Failed,
            )],
            ended_total: 7,
            kept_locally: vec![KeptRecording {
                job_id: "3f9c2a1b-0000-4000-8000-9f0e1d2c3b4a".into(),
                path: "/var/lib/edgerec/3f9c2a1b/recording.wav".into(),
                reason: "lease_expired".into(),
            }],
            levels: vec![JobLevels {
                job_id: "20250101T000000Z_12345".into(),
                channels: vec![LevelLine {
                    channel: 1,
                    rms_db10: -90,
                    peak_db10: -60,
                    clipping: true,
                }],
            }],
            events: vec![EventLine {
                job_id: "job_20250101T120000Z_1a2b312345".into(),
                kind: EventKind::DeviceLost,
                at_ms: NOW - 65_000,
                frame: 48_000 * 5,
                rate: 48_000,
                detail: "hw:CARD=USB,DEV=0 gone".into(),
            }],
            disk: Some(DiskStatus {
                free_bytes: 12 * 1024 * 1024 * 1024,
                total_bytes: 48 * 1024 * 1024 * 1024,
            }),
            disk_error: None,
            outbox: OutboxStatus {
                pending: 3,
                oldest_pending_ms: Some(NOW - 300_000),
                last_error: Some("upload: controller unreachable".into()),
            },
            controller_contact_ms: Some(NOW - 7_200_000),
        }
    }

    fn assert_screen(out: &str) {
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() <= MAX_LINES, "{} lines:\n{out}", lines.len());
        for l in &lines {
            assert!(l.len() <= WIDTH, "too wide ({}): {l:?}", l.len());
            assert!(
                l.is_ascii() && !l.contains('\x1b'),
                "not plain ASCII: {l:?}"
            );
        }
    }

    #[test]
    fn renders_every_section_on_one_screen() {
        let out = render(&sample(), NOW);
        assert_screen(&out);
        let expected = [
            "edgerec status: /var/lib/edgerec (journal v3)",
            "capture: alive, pid 1234, last beat 2s ago",
            "sync:    stale (beat from before a reboot), pid 99, last beat 2h ago",
            "jobs:    1 running, 7 ended",
            "  20250101..12345 capturing  12.0/3600.0 s   hw:CARD=USB,DEV=0",
            "  levels of 20250101..12345:",
            "    ch 1   [#########################.....]   -9.0 rms   -6.0 peak CLIP",
            "  3f9c2a1b..c3b4a failed     12.0 s          3m ago  capture_ended",
            "KEPT LOCALLY: /var/lib/edgerec/3f9c2a1b/recording.wav (lease_expired)",
            "events:",
            "  20250101..12345 device_lost     at 5.0 s, 65s ago  hw:CARD=USB,DEV=0 gone",
            "disk:    12.0 GiB free of 48.0 GiB (25% free)",
            "outbox:  3 pending, oldest 5m ago; last error: upload: controller unreachable",
            "controller: last contact 2h ago (sync beat)",
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), expected, "\n{out}");
    }

    #[test]
    fn a_crowded_box_still_fits_one_screen() {
        let mut s = sample();
        s.running = (0..9)
            .map(|i| {
                job(
                    &format!("job_{i}_running_with_a_long_id"),
                    JobState::Capturing,
                )
            })
            .collect();
        s.running[0].device = "sine:440,dropout=8s+1500ms,and a very long device name".into();
        s.running[0].verdict = Some("lease_expired".into());
        s.recent_ended = (0..3)
            .map(|i| job(&format!("e{i}"), JobState::Delivered))
            .collect();
        s.kept_locally = (0..6)
            .map(|i| KeptRecording {
                job_id: format!("k{i}"),
                path: PathBuf::from(format!(
                    "/var/lib/edgerec/a/very/deep/directory/tree/for/job/number/{i}/recording.wav"
                )),
                reason: "upload_refused".into(),
            })
            .collect();
        s.events = (0..3)
            .map(|i| EventLine {
                job_id: format!("j{i}"),
                kind: EventKind::Stall,
                at_ms: NOW - i * 1000,
                frame: 0,
                rate: 48_000,
                detail: "\u{00e9}".repeat(100),
            })
            .collect();
        s.outbox.last_error = Some("x".repeat(200));
        let out = render(&s, NOW);
        assert_screen(&out);
        assert!(out.contains("  +5 more running"), "{out}");
        assert!(out.contains("[ended: lease_expired] sine:440"), "{out}");
        assert!(out.contains("KEPT LOCALLY: +3 more"), "{out}");
        assert!(
            out.contains("KEPT LOCALLY: ..."),
            "the path is elided, not cut: {out}"
        );
        assert!(
            out.contains("/4/recording.wav (upload_refused)")
                || out.contains("/0/recording.wav (upload_refused)"),
            "{out}"
        );
        assert!(
            out.lines().last().unwrap().starts_with("controller:"),
            "{out}"
        );
    }

    #[test]
    fn nothing_ever_ran_says_never_and_unknown() {
        let mut s = sample();
        for r in &mut s.roles {
            *r = RoleStatus {
                role: r.role.clone(),
                liveness: Liveness::Never,
                note: None,
                pid: None,
                started_at_ms: None,
                last_beat_ms: None,
                same_boot: None,
                progress: String::new(),
            };
        }
        s.running.clear();
        s.events.clear();
        s.kept_locally.clear();
        s.controller_contact_ms = None;
        s.outbox = OutboxStatus::default();
        let out = render(&s, NOW);
        assert_screen(&out);
        assert!(out.contains("capture: never\n"), "{out}");
        assert!(out.contains("sync:    never\n"), "{out}");
        assert!(out.contains("events:  none on running jobs\n"), "{out}");
        assert!(out.contains("outbox:  0 pending\n"), "{out}");
        assert!(
            out.contains("controller: last contact unknown (no sync role ever ran)"),
            "{out}"
        );
        assert!(!out.contains("KEPT"), "{out}");
    }

    #[test]
    fn ages_and_ids_are_short() {
        assert_eq!(age_text(-5), "0s");
        assert_eq!(age_text(119_999), "119s");
        assert_eq!(age_text(120_000), "2m");
        assert_eq!(age_text(7_200_000), "2h");
        assert_eq!(age_text(172_800_000), "2d");
        assert_eq!(short_id("job_short"), "short");
        assert_eq!(
            short_id("job_20250101T120000Z_1a2b312345"),
            "20250101..12345"
        );
    }

    // ── gather_from on a real journal ──────────────────────────────────────────────

    fn new_job(dir: &Path, id: &str, source: JobSource, created: i64) -> NewJob {
        NewJob {
            id: id.into(),
            source,
            controller_job_id: (source == JobSource::Controller).then(|| id.to_string()),
            recording_id: None,
            command_json: "{}".into(),
            backend: "synth".into(),
            device: "sine".into(),
            spec: StreamSpec {
                format: SampleFormat::S16Le,
                rate: 48_000,
                channels: 2,
            },
            duration_frames: Some(480_000),
            dir: dir.join(id),
            state: JobState::Capturing,
            created_at_ms: created,
        }
    }

    #[test]
    fn gathers_roles_jobs_kept_recordings_events_and_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path());
        {
            let mut j = Journal::open(&path).unwrap();
            // A running local job with a device loss.
            j.create_job(&new_job(dir.path(), "run", JobSource::Local, NOW - 50_000))
                .unwrap();
            j.set_job_progress("run", 96_000, NOW - 1_000).unwrap();
            for (kind, at) in [
                (EventKind::Started, NOW - 40_000),
                (EventKind::DeviceLost, NOW - 30_000),
                (EventKind::DeviceRestored, NOW - 20_000),
                (EventKind::Stall, NOW - 10_000),
                (EventKind::DiskPause, NOW - 5_000),
            ] {
                j.add_event("run", &TimelineEvent::new(kind, 0, at))
                    .unwrap();
            }
            // A controller job the controller failed (lease expired) after capture.
            j.create_job(&new_job(
                dir.path(),
                "ctl",
                JobSource::Controller,
                NOW - 90_000,
            ))
            .unwrap();
            j.set_job_progress("ctl", 48_000, NOW - 80_000).unwrap();
            let mut m = MachineState::at(JobState::Failed, JobKind::Controller);
            m.verdict = Some(Verdict::Failed {
                reason: reason::LEASE_EXPIRED.into(),
            });
            m.recording = Some(RenderedFile {
                path: dir.path().join("ctl").join(RECORDING_FILE),
                sha256: "00".into(),
                bytes: 44,
            });
            j.atomically(|j| {
                j.set_job_state("ctl", JobState::Failed, Some("lease_expired"), NOW - 70_000)?;
                j.save_machine("ctl", &m, NOW - 70_000)
            })
            .unwrap();
            // A controller job delivered: not kept.
            j.create_job(&new_job(
                dir.path(),
                "ok",
                JobSource::Controller,
                NOW - 95_000,
            ))
            .unwrap();
            j.set_job_progress("ok", 48_000, NOW - 80_000).unwrap();
            j.set_job_state("ok", JobState::Delivered, Some("duration"), NOW - 60_000)
                .unwrap();
            // Outbox: a node-level event, and a job's upload that keeps failing.
            j.enqueue(&NewOutboxItem::health_event(
                None,
                "n1",
                "{}".into(),
                NOW - 600_000,
            ))
            .unwrap();
            let up = j
                .enqueue(&NewOutboxItem::upload("run", 0, "{}".into(), NOW - 300_000))
                .unwrap();
            j.mark_failed(up.id().unwrap(), "503 from controller", NOW + 5_000)
                .unwrap();
            j.write_beat("capture", 4242, "boot-b", NOW - 60_000, NOW - 1_000, "")
                .unwrap();
            j.write_beat("sync", 4343, "boot-a", NOW - 99_000, NOW - 90_000, "")
                .unwrap();
        }
        let journal = Journal::open_read_only(&path).unwrap();
        let host = Host {
            boot_id: "boot-b".into(),
            pid_running: &|_| Some(true),
        };
        let s = gather_from(&journal, dir.path(), &host, NOW).unwrap();

        assert_eq!(s.roles[0].liveness, Liveness::Alive);
        assert_eq!(s.roles[1].liveness, Liveness::Stale);
        assert_eq!(s.roles[1].same_boot, Some(false));
        assert_eq!(s.controller_contact_ms, Some(NOW - 90_000));

        assert_eq!(s.running.len(), 1);
        assert_eq!(s.running[0].id, "run");
        assert_eq!(s.running[0].captured_frames, 96_000);
        assert_eq!(s.ended_total, 2);
        assert_eq!(
            s.recent_ended
                .iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>(),
            ["ok", "ctl"],
            "most recently ended first"
        );
        assert_eq!(s.recent_ended[1].verdict.as_deref(), Some("lease_expired"));

        assert_eq!(
            s.kept_locally,
            [KeptRecording {
                job_id: "ctl".into(),
                path: dir.path().join("ctl").join(RECORDING_FILE),
                reason: "lease_expired".into(),
            }]
        );
        assert_eq!(
            s.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [
                EventKind::DeviceRestored,
                EventKind::Stall,
                EventKind::DiskPause
            ],
            "the latest 3 watched events, oldest first"
        );
        assert_eq!(
            s.outbox,
            OutboxStatus {
                pending: 2,
                oldest_pending_ms: Some(NOW - 300_000),
                last_error: Some("upload: 503 from controller".into()),
            },
            "node-level rows are counted; the oldest is of the job rows"
        );

        let out = render(&s, NOW);
        assert_screen(&out);
        assert!(out.contains("KEPT LOCALLY: "), "{out}");
        assert!(out.contains("(lease_expired)"), "{out}");
    }

    #[test]
    fn a_stale_beat_and_a_dead_process_are_not_alive() {
        let gone = |_| Some(false);
        let host = Host {
            boot_id: "b".into(),
            pid_running: &gone,
        };
        let beat = |last| crate::journal::BeatRow {
            role: "capture".into(),
            pid: 1,
            boot_id: "b".into(),
            started_at_ms: 0,
            last_beat_ms: last,
            progress: String::new(),
        };
        let r = role_status("capture", Some(beat(NOW)), &host, NOW, 10_000);
        assert_eq!(
            (r.liveness, r.note.as_deref()),
            (Liveness::Stale, Some("process gone"))
        );
        let host = Host {
            boot_id: String::new(),
            pid_running: &|_| None,
        };
        let r = role_status("capture", Some(beat(NOW - 11_000)), &host, NOW, 10_000);
        assert_eq!(r.liveness, Liveness::Stale);
        assert_eq!(r.note.as_deref(), Some("no beat for 11s"));
        let r = role_status("capture", Some(beat(NOW - 9_000)), &host, NOW, 10_000);
        assert_eq!(r.liveness, Liveness::Alive);
        let r = role_status("capture", None, &host, NOW, 10_000);
        assert_eq!(r.liveness, Liveness::Never);
    }
}
