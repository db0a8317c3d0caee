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
use crate::roles::device_loss::DeviceLoss;
use crate::segment::disk::{self, JournalReserve};
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
    /// A job whose device has delivered no frame this long after its window opened ends
    /// `failed` now, freeing the node for the next job; `None` waits out the window.
    pub no_audio_timeout: Option<Duration>,
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
            no_audio_timeout: None,
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
    /// The window closed (or the no-audio timeout passed) without a single frame: the
    /// device and the last thing it said.
    NeverDelivered { device: String, last_error: String },
    /// The device refuses the job's format: retrying will not change that.
    FormatRefused(String),
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
            CaptureOutcome::NeverDelivered { device, last_error } => {
                format!("{NEVER_DELIVERED}: device {device}: {last_error}")
            }
            CaptureOutcome::FormatRefused(d) => format!("format_refused: {d}"),
        }
    }

    /// Whether the job's capture failed (its audio is still rendered and kept).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            CaptureOutcome::DeviceMismatch(_)
                | CaptureOutcome::DeviceFailed(_)
                | CaptureOutcome::WriterFailed(_)
                | CaptureOutcome::NeverDelivered { .. }
                | CaptureOutcome::FormatRefused(_)
        )
    }
}

/// The end-cause prefix of a job whose device never delivered a frame.
pub const NEVER_DELIVERED: &str = "device_never_delivered";

/// Whether an end cause (as [`CaptureOutcome::cause`] wrote it, possibly wrapped by
/// finalize) says the capture failed: the sync role reports such a job `failed` with it.
pub fn cause_is_capture_failure(cause: &str) -> bool {
    [
        "device_mismatch",
        "device_failed",
        "writer_failed",
        NEVER_DELIVERED,
        "format_refused",
        crate::roles::capture::GAVE_UP,
    ]
    .iter()
    .any(|p| cause.contains(p))
}

/// How long past its window a run whose frames flow may go on (a device slower than its
/// rate): the writer stops at the job's frame count, this only bounds a slow clock.
const SLOW_DEVICE_SLACK_MS: i64 = 2_000;

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

/// What a job's capture came to.
#[derive(Clone, Debug)]
pub struct CaptureResult {
    pub outcome: CaptureOutcome,
    /// Wall time (ms) of the timeline's last captured frame, when one was captured.
    pub ended_at_ms: Option<i64>,
    /// The timeline's length when capture ran to the job's booked end with audio flowing
    /// (the last frames of a device slightly slower than its rate are filled); `None`
    /// ends the recording at its last captured frame.
    pub total_frames: Option<u64>,
}

/// Captures `job` until it ends. `resume` is the gap a previous owner left open (a crash).
///
/// Every path ends by the job's window (fixed when the job was created: claimed or
/// started), frames or not: a device that never opens or never delivers is retried with
/// backoff, woken by hotplug, until then.
pub fn run_job(
    journal: &mut Journal,
    job: &JobRow,
    settings: &RunSettings,
    stop: &dyn StopSource,
    resume: Option<ResumeGap>,
) -> Result<CaptureResult, RunError> {
    let start = capture::backend(&job.backend).ok_or_else(|| OpenError::Failed {
        device: job.device.clone(),
        detail: format!("unknown backend {:?}", job.backend),
    })?;
    let mut cap = JobCapture::new(journal, job, settings, stop, resume);
    let outcome = loop {
        if let Some(outcome) = cap.check_end()? {
            break outcome;
        }
        let spec = job.spec;
        let (sink, source) = capture::ring(spec, settings.ring_seconds);
        let mut request = CaptureRequest::new(job.device.clone(), spec);
        request.period_frames = spec.frames_in(settings.period).max(16) as u32;
        request.buffer_frames = request.period_frames * 50;
        let handle = match start(&request, sink) {
            Ok(handle) => handle,
            Err(e) => match cap.open_failed(e)? {
                Some(outcome) => break outcome,
                None => continue,
            },
        };
        if let Some(outcome) = cap.run(handle, source)? {
            break outcome;
        }
    };
    Ok(CaptureResult {
        total_frames: cap.total_frames(&outcome),
        ended_at_ms: cap.ended_at_ms,
        outcome,
    })
}

/// A job's capture in progress: what carries over from one run to the next.
struct JobCapture<'a> {
    journal: &'a mut Journal,
    job: &'a JobRow,
    settings: &'a RunSettings,
    stop: &'a dyn StopSource,
    /// Fixed when the job was created; `None` only for a job without a duration.
    window_end: Option<i64>,
    started_at_ms: Option<i64>,
    /// The gap the next run's first frame closes: a loss, a crash, or a late start.
    pending_gap: Option<ResumeGap>,
    ever_opened: bool,
    loss: Option<DeviceLoss>,
    last_error: Option<String>,
    backoff: Backoff,
    hotplug: Option<HotplugListener>,
    ended_at_ms: Option<i64>,
    /// The last run ended with frames flowing (not lost, not stalled).
    flowing_at_end: bool,
}

impl<'a> JobCapture<'a> {
    fn new(
        journal: &'a mut Journal,
        job: &'a JobRow,
        settings: &'a RunSettings,
        stop: &'a dyn StopSource,
        resume: Option<ResumeGap>,
    ) -> Self {
        let hotplug = HotplugListener::bind(&settings.state_dir)
            .map_err(|e| log::warn!("hotplug socket unavailable ({e}); reopening on backoff alone"))
            .ok();
        JobCapture {
            window_end: window_end(job),
            started_at_ms: job.started_at_ms,
            ever_opened: resume.is_some() || job.started_at_ms.is_some(),
            pending_gap: resume,
            loss: None,
            last_error: None,
            backoff: Backoff::new(settings.reopen_base, settings.reopen_cap),
            hotplug,
            ended_at_ms: None,
            flowing_at_end: false,
            journal,
            job,
            settings,
            stop,
        }
    }

    /// The job's end, if it has come: a stop, its frame count or window, or the no-audio
    /// timeout. Closes what is still open on the timeline.
    fn check_end(&mut self) -> Result<Option<CaptureOutcome>, RunError> {
        let (timeline_pos, _) = timeline_position(self.journal, &self.job.id)?;
        let now = writer::now_ms();
        let outcome = if let Some(reason) = self.stop.stop_reason() {
            CaptureOutcome::Stopped(reason)
        } else if self.job.duration_frames.is_some_and(|s| timeline_pos >= s)
            || self.window_end.is_some_and(|w| now >= w)
        {
            self.never_delivered()
                .unwrap_or(CaptureOutcome::DurationReached)
        } else if let Some(outcome) = self.no_audio_timeout(now) {
            outcome
        } else {
            return Ok(None);
        };
        self.close_open_gap(timeline_pos)?;
        Ok(Some(outcome))
    }

    fn never_delivered(&self) -> Option<CaptureOutcome> {
        self.started_at_ms
            .is_none()
            .then(|| CaptureOutcome::NeverDelivered {
                device: self.job.device.clone(),
                last_error: self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no frame arrived".into()),
            })
    }

    fn no_audio_timeout(&self, now: i64) -> Option<CaptureOutcome> {
        let limit = self.settings.no_audio_timeout?;
        let deadline = self.job.created_at_ms + limit.as_millis() as i64;
        if now < deadline {
            return None;
        }
        self.never_delivered()
    }

    /// The earliest moment the job may end by itself: its window, or the no-audio timeout.
    fn next_deadline_ms(&self) -> Option<i64> {
        let timeout = self
            .settings
            .no_audio_timeout
            .filter(|_| self.started_at_ms.is_none())
            .map(|t| self.job.created_at_ms + t.as_millis() as i64);
        match (self.window_end, timeout) {
            (Some(w), Some(t)) => Some(w.min(t)),
            (w, t) => w.or(t),
        }
    }

    /// A failed open: wait and retry, or end the job when retrying cannot help.
    fn open_failed(&mut self, e: OpenError) -> Result<Option<CaptureOutcome>, RunError> {
        if !self.ever_opened && self.settings.fail_fast_on_first_open {
            return Err(e.into());
        }
        if let OpenError::Unsupported {
            device,
            wanted,
            detail,
        } = &e
        {
            return self.format_refused(device, wanted, detail).map(Some);
        }
        let error = e.to_string();
        self.last_error = Some(error.clone());
        self.begin_gap_if_none("device unavailable", &error)?;
        if let Some(loss) = self.loss.as_mut() {
            loss.attempt_failed(&error);
        }
        let delay = self.backoff.next_delay(jitter());
        let until_deadline = self
            .next_deadline_ms()
            .map(|d| Duration::from_millis((d - writer::now_ms()).max(0) as u64));
        let delay = until_deadline.map_or(delay, |d| delay.min(d));
        wait_for_device(self.hotplug.as_ref(), delay, self.stop);
        Ok(None)
    }

    fn format_refused(
        &mut self,
        device: &str,
        wanted: &str,
        detail: &str,
    ) -> Result<CaptureOutcome, RunError> {
        let (timeline_pos, _) = timeline_position(self.journal, &self.job.id)?;
        if !self.ever_opened {
            log::error!(
                "{}: {device} refuses {wanted} ({detail}); the job fails now",
                self.job.id
            );
            self.close_open_gap(timeline_pos)?;
            return Ok(CaptureOutcome::FormatRefused(format!(
                "{device} refuses {wanted}: {detail}"
            )));
        }
        let detail = format!("{device} no longer offers {wanted}: {detail}");
        let ev = TimelineEvent::new(EventKind::DeviceMismatch, timeline_pos, writer::now_ms())
            .with_detail(&detail);
        self.write(|j, id| j.add_event(id, &ev))?;
        log::error!(
            "{}: {detail}; capture fails, the audio recorded so far is kept",
            self.job.id
        );
        Ok(CaptureOutcome::DeviceMismatch(detail))
    }

    /// A job with nothing captured yet starts with a gap from its window's opening: the
    /// first frame closes it (`late_start`), so frame 0 stays the window's start.
    fn begin_gap_if_none(&mut self, what: &str, detail: &str) -> Result<(), RunError> {
        if self.pending_gap.is_some() {
            return Ok(());
        }
        let (timeline_pos, _) = timeline_position(self.journal, &self.job.id)?;
        let window_start = self.job.created_at_ms;
        let since = Instant::now()
            .checked_sub(Duration::from_millis(
                (writer::now_ms() - window_start).max(0) as u64,
            ))
            .unwrap_or_else(Instant::now);
        self.pending_gap = Some(ResumeGap {
            since: GapSince::WallMs(window_start),
            kind: EventKind::LateStart,
            detail: format!("{what} at the start of the job: {detail}"),
        });
        self.loss = Some(DeviceLoss::begin(
            self.journal,
            self.job,
            timeline_pos,
            since,
            detail,
        ));
        Ok(())
    }

    /// One run: the device is open; capture into segments until the run or the job ends.
    fn run(
        &mut self,
        handle: capture::CaptureHandle,
        source: capture::FrameSource,
    ) -> Result<Option<CaptureOutcome>, RunError> {
        self.backoff.reset();
        self.ever_opened = true;
        let (timeline_pos, next_seq) = timeline_position(self.journal, &self.job.id)?;
        let spec = self.job.spec;
        let drain = StopFlag::new();
        let stats = source.stats.clone();
        // The gap this run closes when its first frame arrives; if none ever does, the
        // gap is still open and keeps its start.
        let inherited_gap = self.pending_gap.take();
        let (writer_thread, progress) = writer::spawn(
            WriterConfig {
                job_id: self.job.id.clone(),
                job_dir: self.job.dir.clone(),
                journal_path: self.settings.journal_path.clone(),
                spec,
                segment_frames: self.settings.segment_seconds * spec.rate as u64,
                flush_interval: self.settings.flush_interval,
                sync_interval: self.settings.sync_interval,
                timeline_origin: timeline_pos,
                first_seq: next_seq,
                stop_at: self.job.duration_frames,
                resume_gap: inherited_gap.clone(),
                spool: self.settings.spool.clone(),
            },
            source,
            drain.clone(),
        )?;
        let watched = WatchedRun {
            progress: &progress,
            stats: &stats,
            leading_gap: inherited_gap
                .as_ref()
                .filter(|g| g.kind == EventKind::LateStart)
                .map(|g| g.since),
        };
        let end = self.supervise(&watched)?;
        // Teardown, each step bounded: stop capture, let the writer drain the ring, join.
        if let Err(e) = handle.stop(Duration::from_secs(2)) {
            log::error!(
                "{}: {e}; draining what was captured and leaving the thread behind",
                self.job.id
            );
        }
        drain.stop();
        let report = join_bounded(writer_thread, Duration::from_secs(5));
        if let ms @ 1.. = progress.end_wall_ms.load(Ordering::Acquire) {
            self.ended_at_ms = Some(ms as i64);
        }
        let report = match report {
            Some(Ok(report)) => report,
            Some(Err(e)) => return Ok(Some(CaptureOutcome::WriterFailed(e.to_string()))),
            None => {
                let wedged = "segment writer wedged".to_string();
                return Ok(Some(CaptureOutcome::WriterFailed(wedged)));
            }
        };
        let started_here = self.started_at_ms.is_none();
        self.note_start(&progress, watched.leading_gap)?;
        if started_here && watched.leading_gap.is_none() {
            // The writer refined the start over the run's first second: keep the refined one.
            let refined = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
            if refined > 0 && self.started_at_ms != Some(refined) {
                self.write(|j, id| j.set_job_started(id, refined))?;
                self.started_at_ms = Some(refined);
            }
        }
        let frames = report.timeline_frames;
        self.write(|j, id| j.set_job_progress(id, frames, writer::now_ms()))?;
        let end = end.unwrap_or_else(|| self.writer_end(&report));
        self.after_run(end, &report, inherited_gap)
    }

    /// The run's end as the writer reported it (it finished by itself).
    fn writer_end(&self, report: &writer::WriterReport) -> RunEnd {
        let lost = |detail: String| RunEnd::Lost {
            since: report.end_instant.unwrap_or_else(Instant::now),
            kind: EventKind::DeviceLost,
            detail,
        };
        match &report.end {
            WriterEnd::DurationReached => RunEnd::Job(CaptureOutcome::DurationReached),
            WriterEnd::Capture(CaptureEnd::Stopped) => match self.stop.stop_reason() {
                Some(reason) => RunEnd::Job(CaptureOutcome::Stopped(reason)),
                None => RunEnd::Job(CaptureOutcome::DurationReached),
            },
            WriterEnd::Capture(CaptureEnd::SourceExhausted) => {
                RunEnd::Job(CaptureOutcome::SourceExhausted)
            }
            WriterEnd::Capture(CaptureEnd::Failed(d)) => {
                RunEnd::Job(CaptureOutcome::DeviceFailed(d.clone()))
            }
            WriterEnd::Capture(CaptureEnd::DeviceGone(d)) => lost(d.clone()),
            WriterEnd::Drained => lost("capture thread wedged".into()),
        }
    }

    /// After a run: the job's end, or the gap before the next run.
    fn after_run(
        &mut self,
        end: RunEnd,
        report: &writer::WriterReport,
        inherited_gap: Option<ResumeGap>,
    ) -> Result<Option<CaptureOutcome>, RunError> {
        let no_frames = report.end_instant.is_none();
        if no_frames && inherited_gap.is_some() {
            // Reopened but no frame came (still stalled, gone again at once): the
            // earlier gap simply goes on.
            self.pending_gap = inherited_gap;
        }
        let (since, kind, detail) = match end {
            RunEnd::Job(outcome) => {
                self.flowing_at_end = !no_frames;
                let (timeline_pos, _) = timeline_position(self.journal, &self.job.id)?;
                self.close_open_gap(timeline_pos)?;
                if outcome == CaptureOutcome::DurationReached {
                    return Ok(Some(self.never_delivered().unwrap_or(outcome)));
                }
                return Ok(Some(outcome));
            }
            RunEnd::Lost {
                since,
                kind,
                detail,
            } => (since, kind, detail),
        };
        self.last_error = Some(detail.clone());
        if self.pending_gap.is_some() {
            return Ok(None);
        }
        if self.started_at_ms.is_none() {
            // Not a frame yet: the job's leading gap begins.
            return self.begin_gap_if_none("no frames", &detail).map(|()| None);
        }
        // The gap begins at the run's last captured frame.
        let since = report.end_instant.map_or(since, |last| last.min(since));
        let at = report.timeline_frames;
        let wall = writer::now_ms() - since.elapsed().as_millis() as i64;
        let ev = TimelineEvent::new(kind, at, wall).with_detail(&detail);
        self.write(|j, id| j.add_event(id, &ev))?;
        self.pending_gap = Some(ResumeGap {
            since: GapSince::Monotonic(since),
            kind: EventKind::DeviceRestored,
            detail: format!("after {detail}"),
        });
        self.loss = Some(DeviceLoss::begin(
            self.journal,
            self.job,
            at,
            since,
            &detail,
        ));
        Ok(None)
    }

    /// The timeline's length for finalize: the booked length when audio flowed to the
    /// end; else the recording ends at its last captured frame.
    fn total_frames(&self, outcome: &CaptureOutcome) -> Option<u64> {
        let booked_end = *outcome == CaptureOutcome::DurationReached
            && self.flowing_at_end
            && self.pending_gap.is_none();
        self.job.duration_frames.filter(|_| booked_end)
    }

    /// A journal write from the supervisor. A full disk (`SQLITE_FULL`) never ends the
    /// job: the journal's reserve is released for it and the write tried once more;
    /// `None` when there is still no room (callers retry at their next look, or go
    /// without a hint the files also hold).
    fn write<T>(
        &mut self,
        write: impl Fn(&mut Journal, &str) -> Result<T, JournalError>,
    ) -> Result<Option<T>, JournalError> {
        match write(self.journal, &self.job.id) {
            Ok(v) => return Ok(Some(v)),
            Err(e) if !disk::is_journal_disk_full(&e) => return Err(e),
            Err(_) => {}
        }
        if let Some(spool) = &self.settings.spool
            && let Ok(mut reserve) = JournalReserve::open(&spool.dir, JournalReserve::DEFAULT_BYTES)
            && let Err(e) = reserve.release()
        {
            log::warn!("{}: releasing the journal reserve: {e}", self.job.id);
        }
        match write(self.journal, &self.job.id) {
            Ok(v) => Ok(Some(v)),
            Err(e) if disk::is_journal_disk_full(&e) => {
                log::warn!("{}: journal full; the write waits for space", self.job.id);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Watches one run: ends it on stop, stall, or the job's window closing. `None`
    /// means "the writer finished by itself: read its report".
    fn supervise(&mut self, run: &WatchedRun) -> Result<Option<RunEnd>, RunError> {
        let (progress, stats) = (run.progress, run.stats);
        let mut last_progress = Instant::now();
        while !progress.finished.load(Ordering::Acquire) {
            let flowing = progress.origin_wall_ms.load(Ordering::Acquire) != 0;
            if flowing {
                self.note_start(progress, run.leading_gap)?;
                if let Some(loss) = self.loss.take() {
                    loss.restored(self.journal);
                }
            }
            if let Some(reason) = self.stop.stop_reason() {
                let at = progress.timeline_frames.load(Ordering::Acquire);
                let ev = TimelineEvent::new(EventKind::StopRequested, at, writer::now_ms())
                    .with_detail(&reason);
                self.write(|j, id| j.add_event(id, &ev))?;
                return Ok(Some(RunEnd::Job(CaptureOutcome::Stopped(reason))));
            }
            let silent_for = stats.last_frames_at().elapsed();
            if silent_for >= self.settings.stall_guard && !stats.ended.load(Ordering::Acquire) {
                let detail = format!(
                    "no frames for {:.1} s while the stream claimed to run",
                    silent_for.as_secs_f64()
                );
                log::warn!("{}: stall: {detail}", self.job.id);
                return Ok(Some(RunEnd::Lost {
                    since: stats.last_frames_at(),
                    kind: EventKind::Stall,
                    detail,
                }));
            }
            // Frames flowing: the writer stops at the job's frame count, and the slack
            // only bounds a device slower than its rate. No frames: the window is all.
            let slack = if flowing { SLOW_DEVICE_SLACK_MS } else { 0 };
            if let Some(deadline) = self.next_deadline_ms()
                && writer::now_ms() >= deadline + slack
            {
                return Ok(Some(RunEnd::Job(CaptureOutcome::DurationReached)));
            }
            // Progress is the sync role's proof that capture advances (it looks every 2 s
            // and allows 5 s): every 2 s is enough, and each write costs the card an fsync.
            if last_progress.elapsed() >= Duration::from_secs(2) {
                let frames = progress.timeline_frames.load(Ordering::Acquire);
                self.write(|j, id| j.set_job_progress(id, frames, writer::now_ms()))?;
                last_progress = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    /// Puts the job's start (the wall time of timeline frame 0) in the journal, once: the
    /// window's opening when the job began with a gap, else the first frame's time as the
    /// writer refined it over the run's first second.
    fn note_start(
        &mut self,
        progress: &WriterProgress,
        leading_gap: Option<GapSince>,
    ) -> Result<(), JournalError> {
        let origin = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
        if origin == 0 {
            return Ok(());
        }
        let start = match leading_gap {
            Some(GapSince::WallMs(window_start)) => window_start,
            _ => origin,
        };
        match self.started_at_ms {
            None => {
                let ev = TimelineEvent::new(EventKind::Started, 0, start);
                let written = self.write(|j, id| {
                    j.atomically(|j| {
                        j.set_job_started(id, start)?;
                        j.add_event(id, &ev).map(drop)
                    })
                })?;
                if written.is_none() {
                    return Ok(()); // no room yet: tried again at the next look
                }
            }
            Some(_) => return Ok(()),
        }
        self.started_at_ms = Some(start);
        Ok(())
    }

    /// A gap still open when the job ends: the device never came back (or a crash gap
    /// was never closed by a frame). The timeline says why; the recording ends at its
    /// last captured frame, never padded past it.
    fn close_open_gap(&mut self, timeline_pos: u64) -> Result<(), JournalError> {
        let Some(gap) = self.pending_gap.take() else {
            return Ok(());
        };
        if self.started_at_ms.is_none() {
            return Ok(()); // nothing captured: the job's failure says it all
        }
        let away_ms = match gap.since {
            GapSince::Monotonic(since) => since.elapsed().as_millis() as i64,
            GapSince::WallMs(since) => writer::now_ms() - since,
        };
        let kind = if gap.kind == EventKind::CrashRecovered {
            EventKind::CrashRecovered
        } else {
            EventKind::DeviceStillLost
        };
        let detail = format!(
            "capture stopped at frame {timeline_pos} and did not resume before the job ended \
             ({:.1} s later; last: {})",
            away_ms.max(0) as f64 / 1000.0,
            self.last_error.as_deref().unwrap_or(&gap.detail)
        );
        log::warn!("{}: {detail}", self.job.id);
        let ev = TimelineEvent::new(kind, timeline_pos, writer::now_ms()).with_detail(&detail);
        self.write(|j, id| j.add_event(id, &ev)).map(drop)
    }
}

/// What the supervisor watches during one run.
struct WatchedRun<'a> {
    progress: &'a WriterProgress,
    stats: &'a capture::CaptureStats,
    /// When this run closes the job's leading gap: the window's opening.
    leading_gap: Option<GapSince>,
}

/// The wall-clock end of the job's window: fixed when the job was created (claimed, or
/// started by `record`), whether or not a frame ever arrives. `None` without a duration.
pub fn window_end(job: &JobRow) -> Option<i64> {
    let frames = job.duration_frames?;
    let rate = job.spec.rate.max(1) as u128;
    Some(job.created_at_ms + (frames as u128 * 1000 / rate) as i64)
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
