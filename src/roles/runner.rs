//! Runs one job's capture to its end, surviving whatever the device does.
//!
//! A job is a sequence of *runs*: each run opens the device, feeds a writer, and ends
//! when the device goes away, stalls, or the job ends. Between runs the device is
//! reopened with bounded backoff (woken at once by a hotplug datagram) for as long as the
//! job's window is open, and the gap is measured and put on the timeline when the next
//! run's first frame arrives. The caller finalizes.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::capture::hotplug::HotplugListener;
use crate::capture::{self, CaptureEnd, CaptureRequest, OpenError, StopFlag};
use crate::core::backoff::Backoff;
use crate::core::timeline::{self, EventKind, PlacedSegment, TimelineEvent};
use crate::journal::{JobRow, Journal, JournalError};
use crate::segment::spool::SpoolSettings;
use crate::segment::writer::{
    self, GapSince, ResumeGap, WriterConfig, WriterEnd, WriterError, WriterProgress,
};

/// How a job's capture is run: everything not stored on the job itself.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub journal_path: PathBuf,
    /// Where hotplug sockets live (the state / output directory).
    pub state_dir: PathBuf,
    pub period: Duration,
    pub ring_seconds: f64,
    pub segment_seconds: u64,
    pub flush_interval: Duration,
    pub sync_interval: Duration,
    /// No frames for this long while the stream claims to run means the device is gone.
    pub stall_guard: Duration,
    pub reopen_base: Duration,
    pub reopen_cap: Duration,
    /// A device that cannot be opened at the very start fails the job at once (an
    /// operator at a console gets the error now) instead of waiting for it to appear.
    pub fail_fast_on_first_open: bool,
    /// The spool's disk budget; `None` writes until the disk says no.
    pub spool: Option<SpoolSettings>,
}

impl RunSettings {
    pub fn new(journal_path: PathBuf, state_dir: PathBuf) -> Self {
        RunSettings {
            journal_path,
            state_dir: state_dir.clone(),
            period: Duration::from_millis(20),
            ring_seconds: 10.0,
            segment_seconds: 300,
            flush_interval: Duration::from_secs(1),
            sync_interval: Duration::from_secs(1),
            stall_guard: Duration::from_secs(5),
            reopen_base: Duration::from_millis(50),
            reopen_cap: Duration::from_secs(2),
            fail_fast_on_first_open: false,
            spool: Some(SpoolSettings::new(state_dir.clone())),
        }
    }
}

/// Why a job's capture ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// The job's duration (or window) is over.
    DurationReached,
    /// A stop was asked for (signal, operator, controller).
    Stopped(String),
    /// A finite source ran out (the file backend).
    SourceExhausted,
    /// The device came back unable to deliver the job's format: capture fails, the audio
    /// recorded before stays.
    DeviceMismatch(String),
    /// The device failed in a way reopening will not fix.
    DeviceFailed(String),
    /// Writing failed for a reason other than a full disk.
    WriterFailed(String),
}

impl CaptureOutcome {
    /// The end cause as the journal and the timeline say it.
    pub fn cause(&self) -> String {
        match self {
            CaptureOutcome::DurationReached => "duration_reached".into(),
            CaptureOutcome::Stopped(why) => format!("stop_requested: {why}"),
            CaptureOutcome::SourceExhausted => "source_exhausted".into(),
            CaptureOutcome::DeviceMismatch(d) => format!("device_mismatch: {d}"),
            CaptureOutcome::DeviceFailed(d) => format!("device_failed: {d}"),
            CaptureOutcome::WriterFailed(d) => format!("writer_failed: {d}"),
        }
    }

    /// Whether the job's capture failed (its audio is still rendered and kept).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            CaptureOutcome::DeviceMismatch(_)
                | CaptureOutcome::DeviceFailed(_)
                | CaptureOutcome::WriterFailed(_)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The device could not be opened at the start and the settings say fail fast.
    #[error(transparent)]
    Device(#[from] OpenError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("segment writer: {0}")]
    Writer(#[from] WriterError),
}

/// Asks a running job to stop; checked between and during runs.
pub trait StopSource {
    /// `Some(reason)` once the job should stop.
    fn stop_reason(&self) -> Option<String>;
}

impl StopSource for StopFlag {
    fn stop_reason(&self) -> Option<String> {
        self.is_stopped().then(|| "signal".to_string())
    }
}

/// How one run ended.
enum RunEnd {
    Job(CaptureOutcome),
    /// The device went away (or stalled); reopen after a gap that began at `since`.
    Lost {
        since: Instant,
        kind: EventKind,
        detail: String,
    },
}

/// Where the job's timeline stands in the journal: its end and the next segment number.
pub fn timeline_position(journal: &Journal, job_id: &str) -> Result<(u64, u32), JournalError> {
    let segments = journal.segments(job_id)?;
    let placed: Vec<PlacedSegment<()>> = segments
        .iter()
        .map(|s| PlacedSegment {
            file: (),
            first_frame: s.first_frame,
            frames: s.frames,
        })
        .collect();
    let end = timeline::timeline_end(&placed, &journal.events(job_id)?);
    let next_seq = segments.iter().map(|s| s.seq + 1).max().unwrap_or(1);
    Ok((end, next_seq))
}

/// Rate-limits what a flapping or absent device logs: state changes, plus one summary a
/// minute while it stays away.
struct LossLog {
    job: String,
    since: Instant,
    attempts: u64,
    last_summary: Instant,
}

impl LossLog {
    fn new(job: &str, detail: &str) -> Self {
        log::warn!("{job}: device lost ({detail}); reopening");
        LossLog {
            job: job.to_string(),
            since: Instant::now(),
            attempts: 0,
            last_summary: Instant::now(),
        }
    }
    fn attempt_failed(&mut self, e: &OpenError) {
        self.attempts += 1;
        if self.last_summary.elapsed() >= Duration::from_secs(60) {
            log::warn!(
                "{}: device still lost after {:.0} s; {} reopen attempts (last: {e})",
                self.job,
                self.since.elapsed().as_secs_f64(),
                self.attempts
            );
            self.last_summary = Instant::now();
        }
    }
    fn restored(&self) {
        log::info!(
            "{}: device restored after {:.3} s, {} reopen attempts",
            self.job,
            self.since.elapsed().as_secs_f64(),
            self.attempts
        );
    }
}

/// What a job's capture came to.
#[derive(Clone, Debug)]
pub struct CaptureResult {
    pub outcome: CaptureOutcome,
    /// Wall time (ms) of the timeline's last captured frame, when one was captured.
    pub ended_at_ms: Option<i64>,
}

/// Captures `job` until it ends. `resume` is the gap a previous owner left open (a crash).
pub fn run_job(
    journal: &mut Journal,
    job: &JobRow,
    settings: &RunSettings,
    stop: &dyn StopSource,
    resume: Option<ResumeGap>,
) -> Result<CaptureResult, RunError> {
    let mut ended_at_ms = None;
    let outcome = run_job_inner(journal, job, settings, stop, resume, &mut ended_at_ms)?;
    Ok(CaptureResult {
        outcome,
        ended_at_ms,
    })
}

fn run_job_inner(
    journal: &mut Journal,
    job: &JobRow,
    settings: &RunSettings,
    stop: &dyn StopSource,
    resume: Option<ResumeGap>,
    ended_at_ms: &mut Option<i64>,
) -> Result<CaptureOutcome, RunError> {
    let start = capture::backend(&job.backend).ok_or_else(|| OpenError::Failed {
        device: job.device.clone(),
        detail: format!("unknown backend {:?}", job.backend),
    })?;
    let spec = job.spec;
    let stop_at = job.duration_frames;
    let mut window_end = window_end(job);
    let mut started_at_ms = job.started_at_ms;
    let hotplug = HotplugListener::bind(&settings.state_dir)
        .map_err(|e| log::warn!("hotplug socket unavailable ({e}); reopening on backoff alone"))
        .ok();
    let mut backoff = Backoff::new(settings.reopen_base, settings.reopen_cap);
    let mut pending_gap = resume;
    let mut ever_opened = pending_gap.is_some() || job.started_at_ms.is_some();
    let mut loss: Option<LossLog> = None;

    loop {
        let (timeline_pos, next_seq) = timeline_position(journal, &job.id)?;
        if let Some(reason) = stop.stop_reason() {
            close_open_gap(
                journal,
                job,
                &mut pending_gap,
                timeline_pos,
                None,
                started_at_ms.is_some(),
            )?;
            return Ok(CaptureOutcome::Stopped(reason));
        }
        if stop_at.is_some_and(|s| timeline_pos >= s)
            || window_end.is_some_and(|w| writer::now_ms() >= w)
        {
            close_open_gap(
                journal,
                job,
                &mut pending_gap,
                timeline_pos,
                stop_at,
                started_at_ms.is_some(),
            )?;
            return Ok(CaptureOutcome::DurationReached);
        }

        let (sink, source) = capture::ring(spec, settings.ring_seconds);
        let mut request = CaptureRequest::new(job.device.clone(), spec);
        request.period_frames = spec.frames_in(settings.period).max(16) as u32;
        request.buffer_frames = request.period_frames * 50;
        let handle = match start(&request, sink) {
            Ok(handle) => handle,
            Err(OpenError::Unsupported {
                device,
                wanted,
                detail,
            }) if ever_opened => {
                let detail = format!("{device} no longer offers {wanted}: {detail}");
                let ev =
                    TimelineEvent::new(EventKind::DeviceMismatch, timeline_pos, writer::now_ms())
                        .with_detail(&detail);
                journal.add_event(&job.id, &ev)?;
                log::error!(
                    "{}: {detail}; capture fails, the audio recorded so far is kept",
                    job.id
                );
                return Ok(CaptureOutcome::DeviceMismatch(detail));
            }
            Err(e) if !ever_opened && settings.fail_fast_on_first_open => return Err(e.into()),
            Err(e) => {
                if pending_gap.is_none() {
                    // Missing from the start: the gap runs from now until it appears.
                    pending_gap = Some(ResumeGap {
                        since: GapSince::Monotonic(Instant::now()),
                        kind: EventKind::DeviceRestored,
                        detail: "device appeared".into(),
                    });
                }
                loss.get_or_insert_with(|| LossLog::new(&job.id, &e.to_string()))
                    .attempt_failed(&e);
                let delay = backoff.next_delay(jitter());
                wait_for_device(hotplug.as_ref(), delay, stop);
                continue;
            }
        };
        backoff.reset();
        if let Some(l) = loss.take() {
            l.restored();
        }
        ever_opened = true;

        let drain = StopFlag::new();
        let stats = source.stats.clone();
        // The run that captures the job's first frame dates the job's start.
        let this_run_starts_the_job = started_at_ms.is_none();
        // The gap this run closes when its first frame arrives; if none ever does, the
        // gap is still open and keeps its start.
        let inherited_gap = pending_gap.take();
        let (writer_thread, progress) = writer::spawn(
            WriterConfig {
                job_id: job.id.clone(),
                job_dir: job.dir.clone(),
                journal_path: settings.journal_path.clone(),
                spec,
                segment_frames: settings.segment_seconds * spec.rate as u64,
                flush_interval: settings.flush_interval,
                sync_interval: settings.sync_interval,
                timeline_origin: timeline_pos,
                first_seq: next_seq,
                stop_at,
                resume_gap: inherited_gap.clone(),
                spool: settings.spool.clone(),
            },
            source,
            drain.clone(),
        )?;

        let watched = WatchedRun {
            progress: &progress,
            stats: &stats,
            window_end,
        };
        let end = supervise_run(journal, job, settings, stop, &watched, &mut started_at_ms)?;
        // Teardown, each step bounded: stop capture, let the writer drain the ring, join.
        if let Err(e) = handle.stop(Duration::from_secs(2)) {
            log::error!(
                "{}: {e}; draining what was captured and leaving the thread behind",
                job.id
            );
        }
        drain.stop();
        let report = join_bounded(writer_thread, Duration::from_secs(5));
        match progress.end_wall_ms.load(Ordering::Acquire) {
            0 => {}
            ms => *ended_at_ms = Some(ms as i64),
        }
        let report = match report {
            Some(Ok(report)) => report,
            Some(Err(e)) => return Ok(CaptureOutcome::WriterFailed(e.to_string())),
            None => return Ok(CaptureOutcome::WriterFailed("segment writer wedged".into())),
        };
        record_start(journal, job, &progress, &mut started_at_ms)?;
        if this_run_starts_the_job {
            // The writer refined the start over the run's first second: keep the refined one.
            let refined = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
            if refined > 0 {
                journal.set_job_started(&job.id, refined)?;
                started_at_ms = Some(refined);
            }
        }
        journal.set_job_progress(&job.id, report.timeline_frames, writer::now_ms())?;
        if let (Some(started), Some(frames)) = (started_at_ms, job.duration_frames) {
            window_end = Some(started + (frames as u128 * 1000 / spec.rate.max(1) as u128) as i64);
        }
        let end = match (end, &report.end) {
            (Some(end), _) => end,
            (None, WriterEnd::DurationReached) => RunEnd::Job(CaptureOutcome::DurationReached),
            (None, WriterEnd::Capture(CaptureEnd::Stopped)) => match stop.stop_reason() {
                Some(reason) => RunEnd::Job(CaptureOutcome::Stopped(reason)),
                None => RunEnd::Job(CaptureOutcome::DurationReached),
            },
            (None, WriterEnd::Capture(CaptureEnd::SourceExhausted)) => {
                RunEnd::Job(CaptureOutcome::SourceExhausted)
            }
            (None, WriterEnd::Capture(CaptureEnd::Failed(d))) => {
                RunEnd::Job(CaptureOutcome::DeviceFailed(d.clone()))
            }
            (None, WriterEnd::Capture(CaptureEnd::DeviceGone(d))) => RunEnd::Lost {
                since: report.end_instant.unwrap_or_else(Instant::now),
                kind: EventKind::DeviceLost,
                detail: d.clone(),
            },
            (None, WriterEnd::Drained) => RunEnd::Lost {
                since: report.end_instant.unwrap_or_else(Instant::now),
                kind: EventKind::DeviceLost,
                detail: "capture thread wedged".into(),
            },
        };
        match end {
            RunEnd::Job(outcome) => return Ok(outcome),
            RunEnd::Lost { .. } if report.end_instant.is_none() && inherited_gap.is_some() => {
                // Reopened but no frame came (still stalled, gone again at once): the
                // earlier gap simply goes on.
                pending_gap = inherited_gap;
            }
            RunEnd::Lost {
                since,
                kind,
                detail,
            } => {
                // The gap begins at the run's last captured frame.
                let since = report.end_instant.map_or(since, |last| last.min(since));
                let at = report.timeline_frames;
                let ev = TimelineEvent::new(
                    kind,
                    at,
                    writer::now_ms() - since.elapsed().as_millis() as i64,
                )
                .with_detail(&detail);
                journal.add_event(&job.id, &ev)?;
                pending_gap = Some(ResumeGap {
                    since: GapSince::Monotonic(since),
                    kind: EventKind::DeviceRestored,
                    detail: format!("after {detail}"),
                });
                loss = Some(LossLog::new(&job.id, &detail));
            }
        }
    }
}

/// What the supervisor watches during one run.
struct WatchedRun<'a> {
    progress: &'a WriterProgress,
    stats: &'a capture::CaptureStats,
    window_end: Option<i64>,
}

/// Watches one run: ends it on stop, stall, or the job's wall-clock window closing.
/// `None` means "the writer finished by itself: read its report".
fn supervise_run(
    journal: &Journal,
    job: &JobRow,
    settings: &RunSettings,
    stop: &dyn StopSource,
    run: &WatchedRun,
    started_at_ms: &mut Option<i64>,
) -> Result<Option<RunEnd>, RunError> {
    let (progress, stats, window_end) = (run.progress, run.stats, run.window_end);
    let mut last_progress = Instant::now();
    while !progress.finished.load(Ordering::Acquire) {
        record_start(journal, job, progress, started_at_ms)?;
        if let Some(reason) = stop.stop_reason() {
            let at = progress.timeline_frames.load(Ordering::Acquire);
            let ev = TimelineEvent::new(EventKind::StopRequested, at, writer::now_ms())
                .with_detail(&reason);
            journal.add_event(&job.id, &ev)?;
            return Ok(Some(RunEnd::Job(CaptureOutcome::Stopped(reason))));
        }
        let silent_for = stats.last_frames_at().elapsed();
        if silent_for >= settings.stall_guard && !stats.ended.load(Ordering::Acquire) {
            let detail = format!(
                "no frames for {:.1} s while the stream claimed to run",
                silent_for.as_secs_f64()
            );
            log::warn!("{}: stall: {detail}", job.id);
            return Ok(Some(RunEnd::Lost {
                since: stats.last_frames_at(),
                kind: EventKind::Stall,
                detail,
            }));
        }
        if window_end.is_some_and(|w| writer::now_ms() >= w + 2_000) {
            // Frames stopped short of the duration (a device slower than its rate): the
            // window is what the operator booked.
            return Ok(Some(RunEnd::Job(CaptureOutcome::DurationReached)));
        }
        // Progress is the sync role's proof that capture advances (it looks every 2 s and
        // allows 5 s): every 2 s is enough, and each write costs the card an fsync.
        if last_progress.elapsed() >= Duration::from_secs(2) {
            journal.set_job_progress(
                &job.id,
                progress.timeline_frames.load(Ordering::Acquire),
                writer::now_ms(),
            )?;
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

/// Puts the job's start (the wall time of timeline frame 0) in the journal, once.
fn record_start(
    journal: &Journal,
    job: &JobRow,
    progress: &WriterProgress,
    started_at_ms: &mut Option<i64>,
) -> Result<(), JournalError> {
    let origin = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
    if started_at_ms.is_some() || origin == 0 {
        return Ok(());
    }
    journal.set_job_started(&job.id, origin)?;
    journal.add_event(&job.id, &TimelineEvent::new(EventKind::Started, 0, origin))?;
    *started_at_ms = Some(origin);
    Ok(())
}

/// The wall-clock end of the job's window, once it has started and has a duration.
pub fn window_end(job: &JobRow) -> Option<i64> {
    let started = job.started_at_ms?;
    let frames = job.duration_frames?;
    Some(started + (frames as u128 * 1000 / job.spec.rate.max(1) as u128) as i64)
}

/// A gap still open when the job ends (the device never came back) is closed here, so the
/// timeline and the stitched output reach the job's end: to `until` frames (the duration)
/// or to now.
fn close_open_gap(
    journal: &Journal,
    job: &JobRow,
    pending: &mut Option<ResumeGap>,
    timeline_pos: u64,
    until: Option<u64>,
    started: bool,
) -> Result<(), JournalError> {
    let Some(gap) = pending.take() else {
        return Ok(());
    };
    let frames = match (until, gap.since) {
        (Some(end), _) => end.saturating_sub(timeline_pos),
        (None, GapSince::Monotonic(since)) => job.spec.frames_in(since.elapsed()),
        (None, GapSince::WallMs(since)) => job.spec.frames_in(Duration::from_millis(
            (writer::now_ms() - since).max(0) as u64,
        )),
    };
    if frames == 0 || !started {
        return Ok(());
    }
    // A crash gap keeps its kind; a device that never came back gets its own.
    let kind = if gap.kind == EventKind::CrashRecovered {
        EventKind::CrashRecovered
    } else {
        EventKind::DeviceStillLost
    };
    let ev = TimelineEvent::new(kind, timeline_pos, writer::now_ms())
        .with_gap(frames)
        .with_detail("the device did not come back before the job ended");
    journal.add_event(&job.id, &ev).map(drop)
}

/// Sleeps `delay` or until a hotplug datagram or a stop arrives.
fn wait_for_device(hotplug: Option<&HotplugListener>, delay: Duration, stop: &dyn StopSource) {
    let until = Instant::now() + delay;
    while Instant::now() < until && stop.stop_reason().is_none() {
        let slice = (until - Instant::now()).min(Duration::from_millis(100));
        match hotplug {
            Some(listener) => {
                if let Some(ev) = listener.wait(slice) {
                    log::info!("hotplug {} {}: reopening now", ev.action, ev.devpath);
                    return;
                }
            }
            None => std::thread::sleep(slice),
        }
    }
}

fn join_bounded<T>(thread: std::thread::JoinHandle<T>, deadline: Duration) -> Option<T> {
    let until = Instant::now() + deadline;
    while !thread.is_finished() {
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().ok()
}

/// A jitter value in 0..1 without a RNG dependency: the clock's low bits.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 1_000_000) as f64 / 1_000_000.0
}
