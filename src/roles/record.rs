//! `edgerec record`: one local job, no controller. Creates the job in the journal, runs
//! its capture (device loss, stalls and gaps handled by the runner) until the duration is
//! reached or a signal arrives, then finalizes (stitch + timeline). Every path ends in
//! exactly one terminal state in the journal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::{OpenError, StopFlag};
use crate::config::RecordSettings;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, GapFill, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal, JournalError, NewJob};
use crate::render::job::OutputOptions;
use crate::roles::finalize::{self, FinalizeError, Finalized, JobEnd};
use crate::roles::runner::{self, RunError, RunSettings};
use crate::roles::{owner, repair};
use crate::segment::writer::{self, WriterError};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Device(#[from] OpenError),
    #[error(
        "output directory {path} is not writable: {detail}; choose another --out or fix its permissions"
    )]
    Unwritable { path: PathBuf, detail: String },
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("segment writer: {0}")]
    Writer(#[from] WriterError),
    #[error("finalize: {0}")]
    Finalize(#[from] FinalizeError),
    #[error("start-up repair: {0}")]
    Repair(#[from] repair::RepairError),
}

impl RecordError {
    /// A full disk: trying again once space returns will work.
    pub fn is_disk_full(&self) -> bool {
        use crate::segment::disk::is_journal_disk_full;
        match self {
            RecordError::Finalize(e) | RecordError::Repair(repair::RepairError::Finalize(e)) => {
                e.is_disk_full()
            }
            RecordError::Journal(e) | RecordError::Repair(repair::RepairError::Journal(e)) => {
                is_journal_disk_full(e)
            }
            _ => false,
        }
    }
}

impl From<RunError> for RecordError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Device(e) => RecordError::Device(e),
            RunError::Journal(e) => RecordError::Journal(e),
            RunError::Writer(e) => RecordError::Writer(e),
        }
    }
}

/// A unique, sortable job id: `job_<UTC time>_<pid><nanos>`.
pub fn new_job_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "job_{stamp}_{:x}{:05x}",
        std::process::id(),
        nanos & 0xfffff
    )
}

/// Creates `dir` and proves we can create files in it.
pub fn ensure_writable(dir: &Path) -> Result<(), RecordError> {
    let unwritable = |e: std::io::Error| RecordError::Unwritable {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let probe = dir.join(format!(".edgerec-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(unwritable)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The runner settings a `record` uses.
pub fn run_settings(settings: &RecordSettings) -> RunSettings {
    let mut run = RunSettings::new(finalize::journal_path(&settings.out), settings.out.clone());
    run.period = settings.period;
    run.ring_seconds = settings.ring_seconds;
    run.ring_max_bytes = settings.ring_max_bytes;
    run.segment_seconds = settings.segment_seconds;
    run.flush_interval = settings.flush_interval;
    run.sync_interval = settings.sync_interval;
    run.stall_guard = settings.stall_guard;
    run.reopen_cap = settings.reopen_cap;
    run.no_audio_timeout = settings.no_audio_timeout;
    run.meter = settings.meter;
    run
}

/// Records one job as `settings` say. `shutdown` is the process's signal flag.
pub fn record(settings: &RecordSettings, shutdown: &StopFlag) -> Result<Finalized, RecordError> {
    record_with(settings, &OutputOptions::default(), shutdown)
}

/// [`record`], rendering the recording as `output` says (codec, channel map, rate).
pub fn record_with(
    settings: &RecordSettings,
    output: &OutputOptions,
    shutdown: &StopFlag,
) -> Result<Finalized, RecordError> {
    ensure_writable(&settings.out)?;
    let journal_path = finalize::journal_path(&settings.out);
    if journal_path.exists() {
        // Start-up is when crashes are found.
        finalize_earlier_crashes(settings)?;
    }
    crate::journal::run_files::prepare_run_dir_logged(&settings.out);
    let mut journal = Journal::open(&journal_path)?;
    let job_id = new_job_id();
    let job_dir = settings.out.join(&job_id);
    ensure_writable(&job_dir)?;
    // Held until we return: tells repair (in this or another process) the job is live.
    let _owner = owner::try_lock(&job_dir)
        .map_err(|e| RecordError::Unwritable {
            path: job_dir.clone(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| RecordError::Unwritable {
            path: job_dir.clone(),
            detail: "job directory is locked by another process".into(),
        })?;
    let job = create_local_job(&journal, settings, output, &job_id, &job_dir)?;
    let spec = settings.spec;
    log::info!(
        "{job_id}: capturing {spec} from {}:{} into {}",
        settings.backend,
        settings.device,
        job_dir.display()
    );

    let mut run = run_settings(settings);
    // At a console, a device that is not there now is an error now, unless asked to wait.
    run.fail_fast_on_first_open = !settings.wait_for_device;
    let result = match runner::run_job(&mut journal, &job, &run, shutdown, None) {
        Ok(result) => result,
        Err(RunError::Device(e)) => {
            let cause = format!("device: {e}");
            let ended =
                TimelineEvent::new(EventKind::Ended, 0, writer::now_ms()).with_detail(&cause);
            journal.transition(
                &job_id,
                JobState::Failed,
                Some(&cause),
                Some(&ended),
                writer::now_ms(),
            )?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let how = JobEnd {
        cause: result.outcome.cause(),
        ended_at_ms: result.ended_at_ms,
        total_frames: result.total_frames,
        capture_failed: result.outcome.is_failure(),
        no_stitch: settings.no_stitch,
        mark_captured: false,
    };
    finalize_when_there_is_room(&mut journal, &job_id, &how, settings.gap_fill)
}

/// Finalizes whatever a dead process left in the output directory.
fn finalize_earlier_crashes(settings: &RecordSettings) -> Result<(), RecordError> {
    let summary = repair::repair_dir(&settings.out, settings.gap_fill)?;
    for job in &summary.finalized {
        log::warn!(
            "finalized {} left by an earlier crash ({} frames)",
            job.job_id,
            job.frames
        );
    }
    Ok(())
}

/// Creates the local job in `capturing`: the state is written before its actions run, so
/// a crash from here on leaves a row that repair finalizes.
fn create_local_job(
    journal: &Journal,
    settings: &RecordSettings,
    output: &OutputOptions,
    job_id: &str,
    job_dir: &Path,
) -> Result<JobRow, RecordError> {
    let spec = settings.spec;
    let mut command = serde_json::json!({
        "backend": settings.backend, "device": settings.device, "format": spec.format.name(),
        "rate": spec.rate, "channels": spec.channels,
        "duration_seconds": settings.duration.map(|d| d.as_secs_f64()),
    });
    // The render options under their wire names, read back by finalize.
    if let (Some(c), Ok(serde_json::Value::Object(o))) =
        (command.as_object_mut(), serde_json::to_value(output))
    {
        c.extend(o);
    }
    journal.create_job(&NewJob {
        id: job_id.to_string(),
        source: JobSource::Local,
        controller_job_id: None,
        recording_id: None,
        command_json: command.to_string(),
        backend: settings.backend.clone(),
        device: settings.device.clone(),
        spec,
        duration_frames: settings.duration.map(|d| spec.frames_in(d)),
        dir: job_dir.to_path_buf(),
        state: JobState::Capturing,
        created_at_ms: writer::now_ms(),
    })?;
    Ok(journal.job(job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?)
}

/// How long `record` waits for a full disk to give room for the stitched file before it
/// leaves the job to `edgerec repair` (the segments keep the audio meanwhile).
const FULL_DISK_PATIENCE: Duration = Duration::from_secs(60);

/// Finalizes the captured job; a full disk is waited out (bounded), never an abort.
fn finalize_when_there_is_room(
    journal: &mut Journal,
    job_id: &str,
    how: &JobEnd,
    fill: GapFill,
) -> Result<Finalized, RecordError> {
    let until = Instant::now() + FULL_DISK_PATIENCE;
    let mut logged = false;
    loop {
        match finalize_once(journal, job_id, how, fill) {
            Err(e) if e.is_disk_full() && Instant::now() < until => {
                if !logged {
                    log::warn!("{job_id}: disk full while finalizing ({e}); waiting for space");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

fn finalize_once(
    journal: &mut Journal,
    job_id: &str,
    how: &JobEnd,
    fill: GapFill,
) -> Result<Finalized, RecordError> {
    let job = journal.job(job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?;
    // A full disk may have kept segment rows from their final lengths: the files say.
    repair::reconcile_job_segments(journal, &job, &mut Default::default())?;
    let job = journal.job(job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?;
    // `captured` goes in the commit that starts rendering.
    let how = JobEnd {
        mark_captured: job.state == JobState::Capturing,
        ..how.clone()
    };
    Ok(finalize::finalize(journal, &job, &how, fill)?)
}
