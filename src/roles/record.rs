//! `edgerec record`: one local job, no controller. Opens the device, runs the capture
//! thread and the segment writer until the duration is reached, the device ends or a
//! signal arrives, then finalizes (stitch + timeline). Every path ends in exactly one
//! terminal state in the journal.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::capture::{self, CaptureEnd, CaptureRequest, OpenError, StopFlag};
use crate::config::RecordSettings;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{JobSource, Journal, JournalError, NewJob};
use crate::roles::finalize::{self, FinalizeError, Finalized};
use crate::roles::{owner, repair};
use crate::segment::writer::{self, WriterConfig, WriterEnd, WriterError};

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

/// How long the capture thread gets to leave after a stop, and the writer to drain.
const CAPTURE_STOP_DEADLINE: Duration = Duration::from_secs(2);
const WRITER_DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Extra wall time past the duration before we give up waiting for frames (a stall).
const DURATION_GRACE: Duration = Duration::from_secs(5);

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
fn ensure_writable(dir: &Path) -> Result<(), RecordError> {
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

/// Records one job as `settings` say. `shutdown` is the process's signal flag.
pub fn record(settings: &RecordSettings, shutdown: &StopFlag) -> Result<Finalized, RecordError> {
    ensure_writable(&settings.out)?;
    let journal_path = finalize::journal_path(&settings.out);
    if journal_path.exists() {
        // Start-up is when crashes are found: finalize whatever a dead process left.
        let summary = repair::repair_dir(&settings.out, settings.gap_fill)?;
        for job in &summary.finalized {
            log::warn!(
                "finalized {} left by an earlier crash ({} frames)",
                job.job_id,
                job.frames
            );
        }
    }
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
    let spec = settings.spec;
    let command = serde_json::json!({
        "backend": settings.backend, "device": settings.device, "format": spec.format.name(),
        "rate": spec.rate, "channels": spec.channels,
        "duration_seconds": settings.duration.map(|d| d.as_secs_f64()),
    });
    // The state is written before its actions run: a crash from here on leaves a
    // `capturing` row that repair finalizes.
    journal.create_job(&NewJob {
        id: job_id.clone(),
        source: JobSource::Local,
        controller_job_id: None,
        recording_id: None,
        command_json: command.to_string(),
        backend: settings.backend.clone(),
        device: settings.device.clone(),
        spec,
        duration_frames: settings.duration.map(|d| spec.frames_in(d)),
        dir: job_dir.clone(),
        state: JobState::Capturing,
        created_at_ms: writer::now_ms(),
    })?;

    let (sink, source) = capture::ring(spec, settings.ring_seconds);
    let stats = source.stats.clone();
    let drain = StopFlag::new();
    let (writer_thread, progress) = writer::spawn(
        WriterConfig {
            job_id: job_id.clone(),
            job_dir: job_dir.clone(),
            journal_path: journal_path.clone(),
            spec,
            segment_frames: settings.segment_seconds * spec.rate as u64,
            flush_interval: settings.flush_interval,
            sync_interval: settings.sync_interval,
            timeline_origin: 0,
            first_seq: 1,
            stop_at: settings.duration.map(|d| spec.frames_in(d)),
        },
        source,
        drain.clone(),
    )?;

    let start = capture::backend(&settings.backend).expect("backend validated by config");
    let mut request = CaptureRequest::new(settings.device.clone(), spec);
    request.period_frames = spec.frames_in(settings.period).max(16) as u32;
    request.buffer_frames = request.period_frames * 50;
    let capture = match start(&request, sink) {
        Ok(handle) => handle,
        Err(e) => {
            drain.stop();
            let _ = writer_thread.join();
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
    };
    log::info!(
        "{job_id}: capturing {spec} from {}:{} into {}",
        settings.backend,
        settings.device,
        job_dir.display()
    );

    // Supervise: nothing here touches the audio; it only watches and decides when to end.
    let started = Instant::now();
    let deadline = settings.duration.map(|d| started + d + DURATION_GRACE);
    let mut started_recorded = false;
    let mut last_progress = Instant::now();
    let mut stop_cause: Option<String> = None;
    while !progress.finished.load(Ordering::Acquire) {
        if !started_recorded && progress.origin_wall_ms.load(Ordering::Acquire) != 0 {
            let origin = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
            journal.set_job_started(&job_id, origin)?;
            journal.add_event(&job_id, &TimelineEvent::new(EventKind::Started, 0, origin))?;
            started_recorded = true;
        }
        if shutdown.is_stopped() {
            let at = progress.timeline_frames.load(Ordering::Acquire);
            journal.add_event(
                &job_id,
                &TimelineEvent::new(EventKind::StopRequested, at, writer::now_ms())
                    .with_detail("signal"),
            )?;
            stop_cause = Some("stop_requested: signal".into());
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop_cause = Some("deadline: device delivered too few frames for the duration".into());
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            journal.set_job_progress(
                &job_id,
                progress.timeline_frames.load(Ordering::Acquire),
                writer::now_ms(),
            )?;
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // Teardown, each step bounded: stop capture, let the writer drain the ring, join.
    if let Err(e) = capture.stop(CAPTURE_STOP_DEADLINE) {
        log::error!("{job_id}: {e}; draining what was captured and leaving the thread behind");
    }
    drain.stop();
    let until = Instant::now() + WRITER_DRAIN_DEADLINE;
    while !writer_thread.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let writer_result = if writer_thread.is_finished() {
        writer_thread.join().unwrap_or_else(|_| {
            Err(WriterError::Segment {
                path: job_dir.clone(),
                source: std::io::Error::other("writer thread panicked"),
            })
        })
    } else {
        log::error!(
            "{job_id}: segment writer did not finish within {WRITER_DRAIN_DEADLINE:?}; finalizing from the files"
        );
        Err(WriterError::Segment {
            path: job_dir.clone(),
            source: std::io::Error::other("writer wedged"),
        })
    };
    if !started_recorded && progress.origin_wall_ms.load(Ordering::Acquire) != 0 {
        let origin = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
        journal.set_job_started(&job_id, origin)?;
        journal.add_event(&job_id, &TimelineEvent::new(EventKind::Started, 0, origin))?;
    }
    let end_cause = match (&writer_result, stop_cause) {
        (Err(e), _) => format!("writer_failed: {e}"),
        (Ok(_), Some(cause)) => cause,
        (Ok(report), None) => end_cause(&report.end),
    };
    if let Err(e) = &writer_result {
        log::error!("{job_id}: {e}");
    }
    let overruns = stats.overruns.load(Ordering::Relaxed);
    if overruns > 0 {
        log::warn!(
            "{job_id}: {overruns} device overruns, {} frames dropped",
            stats.frames_dropped.load(Ordering::Relaxed)
        );
    }
    journal.set_job_state(&job_id, JobState::Captured, None, writer::now_ms())?;
    let job = journal.job(&job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?;
    let ended_at = match progress.end_wall_ms.load(Ordering::Acquire) {
        0 => None,
        ms => Some(ms as i64),
    };
    Ok(finalize::finalize(
        &mut journal,
        &job,
        &end_cause,
        ended_at,
        settings.gap_fill,
    )?)
}

fn end_cause(end: &WriterEnd) -> String {
    match end {
        WriterEnd::DurationReached => "duration_reached".into(),
        WriterEnd::Drained => "capture_wedged: capture thread did not stop".into(),
        WriterEnd::Capture(CaptureEnd::Stopped) => "stopped".into(),
        WriterEnd::Capture(CaptureEnd::SourceExhausted) => "source_exhausted".into(),
        WriterEnd::Capture(CaptureEnd::DeviceGone(d)) => format!("device_gone: {d}"),
        WriterEnd::Capture(CaptureEnd::Failed(d)) => format!("device_failed: {d}"),
    }
}
