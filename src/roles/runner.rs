//! Runs one job's capture to its end, surviving whatever the device does.
//!
//! A job is a sequence of *runs*: each run opens the device, feeds a writer, and ends
//! when the device goes away, stalls, or the job ends. Between runs the device is
//! reopened with bounded backoff (woken at once by a hotplug datagram) for as long as the
//! job's window is open, and the gap is measured and put on the timeline when the next
//! run's first frame arrives. The caller finalizes.
//!
//! - this file: the run loop ([`run_job`]) and the job's end (stop, window, no audio, a
//!   device that never opens).
//! - `outcome`: what a job's capture came to ([`CaptureOutcome`], [`CaptureResult`]).
//! - `settings`: how a job's capture is run ([`RunSettings`]).
//! - `one_run`: one run's supervision, from the open device to how the run ended.
//! - `gaps`: the job's leading gap, its start (frame 0), and a gap left open at the end.

use std::time::{Duration, Instant};

use crate::capture::hotplug::HotplugListener;
use crate::capture::{self, CaptureRequest, OpenError, StopFlag, StopHook};
use crate::core::backoff::Backoff;
use crate::core::timeline::{self, EventKind, PlacedSegment, TimelineEvent};
use crate::journal::{JobRow, Journal, JournalError};
use crate::roles::device_loss::{DeviceLoss, FlapLog};
use crate::segment::disk::{self, JournalReserve};
use crate::segment::writer::{self, ResumeGap, WriterError};

mod gaps;
mod one_run;
mod outcome;
mod settings;

pub use outcome::{CaptureOutcome, CaptureResult, NEVER_DELIVERED, cause_is_capture_failure};
pub use settings::RunSettings;

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
    /// Where the capture is, for a source that dates its stops (a capture group's).
    fn note_frames(&self, _timeline_frames: u64) {}
    /// Runs `wake` when a stop is asked, while the guard lives (sources that can say so).
    fn on_stop(&self, wake: Box<dyn Fn() + Send + Sync>) -> Option<StopHook>;
    /// How often `stop_reason` must be asked again (`None`: `on_stop` always says so).
    fn recheck_every(&self) -> Option<Duration> {
        None
    }
}

impl StopSource for StopFlag {
    fn stop_reason(&self) -> Option<String> {
        self.is_stopped().then(|| "signal".to_string())
    }
    fn on_stop(&self, wake: Box<dyn Fn() + Send + Sync>) -> Option<StopHook> {
        Some(StopFlag::on_stop(self, wake))
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
        let (sink, source) = capture::ring(spec, settings.ring_seconds, settings.ring_max_bytes);
        log_ring(&job.id, &source);
        let mut request = CaptureRequest::new(job.device.clone(), spec);
        request.period_frames = spec.frames_in(settings.period).max(16) as u32;
        request.buffer_frames = capture::buffer_frames(spec, request.period_frames);
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
    /// How this job's device losses reach the log (a flapping device is folded).
    flaps: FlapLog,
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
            flaps: FlapLog::default(),
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
}

/// The wall-clock end of the job's window: fixed when the job was created (claimed, or
/// started by `record`), whether or not a frame ever arrives. `None` without a duration.
pub fn window_end(job: &JobRow) -> Option<i64> {
    let frames = job.duration_frames?;
    let rate = job.spec.rate.max(1) as u128;
    Some(job.created_at_ms + (frames as u128 * 1000 / rate) as i64)
}

/// Sleeps `delay` or until a hotplug datagram or a stop arrives (the stop wakes the
/// wait; a stop source that must be asked is asked at its own cadence).
fn wait_for_device(hotplug: Option<&HotplugListener>, delay: Duration, stop: &dyn StopSource) {
    let until = Instant::now() + delay;
    let cadence = stop.recheck_every().unwrap_or(delay);
    let bell = std::sync::Arc::new(capture::Doorbell::default());
    let _hook = match hotplug.and_then(|l| l.waker().ok()) {
        Some(wake) => stop.on_stop(Box::new(wake)),
        None => {
            let bell = bell.clone();
            stop.on_stop(Box::new(move || bell.ring()))
        }
    };
    while Instant::now() < until && stop.stop_reason().is_none() {
        let slice = until.saturating_duration_since(Instant::now()).min(cadence);
        match hotplug {
            Some(listener) => match listener.wait(slice) {
                Some(ev) if ev.action != HotplugListener::WAKE => {
                    log::debug!("hotplug {} {}: reopening now", ev.action, ev.devpath);
                    return;
                }
                _ => {}
            },
            None => {
                bell.wait_timeout(slice);
            }
        }
    }
}

/// Says what the ring holds (the byte budget may have cut its seconds).
fn log_ring(job: &str, source: &capture::FrameSource) {
    use ringbuf::traits::Observer as _;
    let bytes = source.cons.capacity().get();
    let seconds = (bytes / source.spec.bytes_per_frame()) as f64 / f64::from(source.spec.rate);
    let mib = bytes as f64 / (1024.0 * 1024.0);
    log::debug!("{job}: ring {seconds:.2} s, {mib:.1} MiB");
}

/// A jitter value in 0..1 without a RNG dependency: the clock's low bits.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 1_000_000) as f64 / 1_000_000.0
}
