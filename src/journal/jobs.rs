//! The `jobs` table: one row per recording job, local or claimed from the controller.

use super::{
    Doing, Journal, JournalError, Result, col, col_opt_u64, col_u64, parse_col, to_sql_opt_u64,
    to_sql_u64,
};
use crate::core::format::StreamSpec;
use crate::core::job::JobState;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a job came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobSource {
    /// `edgerec record` on the box itself.
    Local,
    /// Claimed from the controller by the sync role.
    Controller,
}

impl JobSource {
    pub const fn name(self) -> &'static str {
        match self {
            JobSource::Local => "local",
            JobSource::Controller => "controller",
        }
    }
}

impl fmt::Display for JobSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JobSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(JobSource::Local),
            "controller" => Ok(JobSource::Controller),
            _ => Err(format!("unknown job source {s:?}")),
        }
    }
}

/// A job as first written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub id: String,
    pub source: JobSource,
    pub controller_job_id: Option<String>,
    pub recording_id: Option<String>,
    pub command_json: String,
    pub backend: String,
    pub device: String,
    pub spec: StreamSpec,
    pub duration_frames: Option<u64>,
    /// The job's directory; segment paths are relative to it. Stored relative to the
    /// journal's directory when it lies inside it, so the output can be moved or copied.
    pub dir: PathBuf,
    pub state: JobState,
    pub created_at_ms: i64,
}

#[cfg(test)]
impl NewJob {
    /// A 10 s synth job (2 ch 48 kHz S16) in `state`, its directory `dir/id`, for tests.
    pub fn for_test(id: &str, source: JobSource, dir: &Path, state: JobState) -> NewJob {
        use crate::core::format::SampleFormat;
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
            state,
            created_at_ms: 0,
        }
    }
}

/// A job as stored, every column typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub source: JobSource,
    pub controller_job_id: Option<String>,
    pub recording_id: Option<String>,
    pub command_json: String,
    pub backend: String,
    pub device: String,
    pub spec: StreamSpec,
    pub duration_frames: Option<u64>,
    pub dir: PathBuf,
    pub state: JobState,
    pub end_cause: Option<String>,
    pub created_at_ms: i64,
    /// Wall time of timeline frame 0.
    pub started_at_ms: Option<i64>,
    /// Set once, when the job reached a terminal state.
    pub ended_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    pub captured_frames: u64,
}

const JOB_COLS: &str = "id, source, controller_job_id, recording_id, command_json, backend, \
     device, format, rate, channels, duration_frames, dir, state, end_cause, created_at_ms, \
     started_at_ms, ended_at_ms, updated_at_ms, captured_frames";

fn job_from_row(r: &Row<'_>) -> Result<JobRow> {
    const DOING: &str = "reading a jobs row";
    let id: String = col(r, 0, DOING)?;
    // Text fields are parsed here so a bad one names its column and job.
    let key = format!("job {id:?}");
    Ok(JobRow {
        source: parse_col("jobs.source", &key, &col::<String>(r, 1, DOING)?)?,
        controller_job_id: col(r, 2, DOING)?,
        recording_id: col(r, 3, DOING)?,
        command_json: col(r, 4, DOING)?,
        backend: col(r, 5, DOING)?,
        device: col(r, 6, DOING)?,
        spec: StreamSpec {
            format: parse_col("jobs.format", &key, &col::<String>(r, 7, DOING)?)?,
            rate: col(r, 8, DOING)?,
            channels: col(r, 9, DOING)?,
        },
        duration_frames: col_opt_u64(r, 10, DOING)?,
        dir: PathBuf::from(col::<String>(r, 11, DOING)?),
        state: parse_col("jobs.state", &key, &col::<String>(r, 12, DOING)?)?,
        end_cause: col(r, 13, DOING)?,
        created_at_ms: col(r, 14, DOING)?,
        started_at_ms: col(r, 15, DOING)?,
        ended_at_ms: col(r, 16, DOING)?,
        updated_at_ms: col(r, 17, DOING)?,
        captured_frames: col_u64(r, 18, DOING)?,
        id,
    })
}

pub(super) fn path_text(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| JournalError::NonUtf8Path(p.to_path_buf()))
}

/// `'delivered', 'failed', 'cancelled'`, from `JobState` so the SQL cannot drift from it.
fn terminal_names_sql() -> String {
    JobState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn query_jobs(
    conn: &Connection,
    journal_dir: &Path,
    sql: &str,
    doing: &'static str,
) -> Result<Vec<JobRow>> {
    let mut stmt = conn.prepare_cached(sql).doing(doing)?;
    let mut rows = stmt.query([]).doing(doing)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().doing(doing)? {
        let mut job = job_from_row(r)?;
        job.dir = resolve_dir(journal_dir, &job.dir);
        super::run_files::overlay_progress(journal_dir, &mut job);
        out.push(job);
    }
    Ok(out)
}

/// The text a job directory is stored as: relative to the journal's directory when it
/// lies inside it (the output stays valid when moved or copied), else as given.
pub(super) fn stored_dir(journal_dir: &Path, dir: &Path) -> PathBuf {
    let inside = |base: &Path, dir: &Path| {
        dir.strip_prefix(base)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(Path::to_path_buf)
    };
    if let Some(rel) = inside(journal_dir, dir) {
        return rel;
    }
    // One side relative or through a symlink: compare where they really are.
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    match (canonical(journal_dir), canonical(dir)) {
        (Some(base), Some(real)) => inside(&base, &real).unwrap_or_else(|| dir.to_path_buf()),
        _ => dir.to_path_buf(),
    }
}

/// Where a stored job directory is now. Relative: under the journal's directory. An
/// absolute one elsewhere (journals written before paths were relative) means the output
/// was moved or copied when a directory of its name sits beside the journal (that one,
/// never the old path: a copy must not touch its original) or when the old path is gone
/// (the job's directory belongs beside its journal; the old root is never recreated).
/// Only an old path that still exists with no local twin is kept as stored.
pub(super) fn resolve_dir(journal_dir: &Path, stored: &Path) -> PathBuf {
    if stored.is_relative() {
        return journal_dir.join(stored);
    }
    if stored.starts_with(journal_dir) {
        return stored.to_path_buf();
    }
    match stored.file_name().map(|name| journal_dir.join(name)) {
        Some(local) if local.is_dir() || !stored.exists() => local,
        _ => stored.to_path_buf(),
    }
}

fn current_state(conn: &Connection, id: &str) -> Result<JobState> {
    let state: Option<String> = conn
        .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .doing("reading a job's state")?;
    let state = state.ok_or_else(|| JournalError::NoSuchJob(id.to_string()))?;
    parse_col("jobs.state", &format!("job {id:?}"), &state)
}

/// Fails with `NoSuchJob` when an UPDATE by id touched nothing.
fn one_job(id: &str, changed: usize) -> Result<()> {
    if changed == 0 {
        Err(JournalError::NoSuchJob(id.to_string()))
    } else {
        Ok(())
    }
}

impl Journal {
    pub fn create_job(&self, job: &NewJob) -> Result<()> {
        let dir = stored_dir(&self.dir, &job.dir);
        let dir = path_text(&dir)?;
        let duration_frames = to_sql_opt_u64(job.duration_frames, "duration_frames")?;
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (id, source, controller_job_id, recording_id, command_json, \
                 backend, device, format, rate, channels, duration_frames, dir, state, \
                 created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    job.id,
                    job.source.name(),
                    job.controller_job_id,
                    job.recording_id,
                    job.command_json,
                    job.backend,
                    job.device,
                    job.spec.format.name(),
                    job.spec.rate,
                    job.spec.channels,
                    duration_frames,
                    dir,
                    job.state.name(),
                    job.created_at_ms,
                ])
            })
            .doing("inserting a job")?;
        Ok(())
    }

    /// Moves a job from `expected` to `state`, only if it is still in `expected` (the two
    /// roles write states concurrently: neither may undo the other's newer transition).
    /// Returns whether it moved.
    pub fn set_job_state_if(
        &self,
        id: &str,
        expected: JobState,
        state: JobState,
        end_cause: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        self.write_tx(|conn| {
            if current_state(conn, id)? != expected {
                return Ok(false);
            }
            let ended_at_ms = state.is_terminal().then_some(now_ms);
            conn.prepare_cached(
                "UPDATE jobs SET state = ?2, end_cause = COALESCE(?3, end_cause), \
                 ended_at_ms = COALESCE(?4, ended_at_ms), updated_at_ms = ?5 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, state.name(), end_cause, ended_at_ms, now_ms]))
            .doing("updating a job's state")?;
            Ok(true)
        })
    }

    /// Moves a job to `state`. A terminal state is reached exactly once: moving a job out of
    /// one (or into a second one) is `IllegalTransition`. Reaching it sets `ended_at_ms`.
    /// `end_cause`, when given, replaces the stored one.
    pub fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        end_cause: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.write_tx(|conn| {
            let from = current_state(conn, id)?;
            if from.is_terminal() {
                return Err(JournalError::IllegalTransition {
                    id: id.to_string(),
                    from,
                    to: state,
                });
            }
            let ended_at_ms = state.is_terminal().then_some(now_ms);
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, end_cause = COALESCE(?3, end_cause), \
                     ended_at_ms = COALESCE(?4, ended_at_ms), updated_at_ms = ?5 WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![id, state.name(), end_cause, ended_at_ms, now_ms])
                })
                .doing("updating a job's state")?;
            one_job(id, changed)
        })
    }

    /// Records the wall time of timeline frame 0.
    pub fn set_job_started(&self, id: &str, started_at_ms: i64) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET started_at_ms = ?2, updated_at_ms = MAX(updated_at_ms, ?2) \
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, started_at_ms]))
            .doing("setting a job's start time")?;
        one_job(id, changed)
    }

    pub fn set_job_progress(&self, id: &str, captured_frames: u64, now_ms: i64) -> Result<()> {
        let captured_frames = to_sql_u64(captured_frames, "captured_frames")?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET captured_frames = ?2, updated_at_ms = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, captured_frames, now_ms]))
            .doing("setting a job's progress")?;
        one_job(id, changed)
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql).doing("reading a job")?;
        let mut rows = stmt.query([id]).doing("reading a job")?;
        match rows.next().doing("reading a job")? {
            Some(r) => {
                let mut job = job_from_row(r)?;
                job.dir = resolve_dir(&self.dir, &job.dir);
                super::run_files::overlay_progress(&self.dir, &mut job);
                Ok(Some(job))
            }
            None => Ok(None),
        }
    }

    /// The job claimed under the controller's job id `controller_job_id` (stored as data;
    /// the row's own id and directory are the agent's).
    pub fn job_by_controller_id(&self, controller_job_id: &str) -> Result<Option<JobRow>> {
        const DOING: &str = "reading a job by its controller id";
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE controller_job_id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql).doing(DOING)?;
        let mut rows = stmt.query([controller_job_id]).doing(DOING)?;
        match rows.next().doing(DOING)? {
            Some(r) => {
                let mut job = job_from_row(r)?;
                job.dir = resolve_dir(&self.dir, &job.dir);
                super::run_files::overlay_progress(&self.dir, &mut job);
                Ok(Some(job))
            }
            None => Ok(None),
        }
    }

    /// All jobs, newest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs ORDER BY created_at_ms DESC, rowid DESC");
        query_jobs(&self.conn, &self.dir, &sql, "listing jobs")
    }

    /// Jobs not yet delivered, failed or cancelled, oldest first (the order to resume them).
    pub fn non_terminal_jobs(&self) -> Result<Vec<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state NOT IN ({}) ORDER BY created_at_ms, rowid",
            terminal_names_sql()
        );
        query_jobs(&self.conn, &self.dir, &sql, "listing non-terminal jobs")
    }
}

impl Journal {
    /// Rewrites job directories stored absolute (before paths were relative) that now
    /// resolve inside the journal's directory, so the journal stays relocatable. Writes
    /// only rows that need it; a failure leaves them to be resolved at every read.
    pub(super) fn relativize_job_dirs(&self) -> Result<usize> {
        const DOING: &str = "making job directories relative";
        let rows: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, dir FROM jobs WHERE dir LIKE '/%'")
                .doing(DOING)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .doing(DOING)?
                .collect::<rusqlite::Result<_>>()
                .doing(DOING)?
        };
        let mut changed = 0;
        for (id, dir) in rows {
            let now = resolve_dir(&self.dir, Path::new(&dir));
            let rel = stored_dir(&self.dir, &now);
            if rel.is_relative() {
                self.conn
                    .execute(
                        "UPDATE jobs SET dir = ?2 WHERE id = ?1",
                        params![id, path_text(&rel)?],
                    )
                    .doing(DOING)?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}
