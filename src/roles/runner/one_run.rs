//! One run of a job's capture: the device is open and a writer thread fills segments;
//! the supervisor watches it (stop, stall, the job's window) and reads how it ended.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    CaptureOutcome, JobCapture, RunEnd, RunError, SLOW_DEVICE_SLACK_MS, timeline_position,
};
use crate::capture::{self, CaptureEnd, StopFlag};
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::roles::device_loss::DeviceLoss;
use crate::segment::writer::{self, GapSince, ResumeGap, WriterConfig, WriterEnd, WriterProgress};

impl JobCapture<'_> {
    /// One run: the device is open; capture into segments until the run or the job ends.
    pub(super) fn run(
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
                period: self.settings.period,
                segment_frames: self.settings.segment_seconds * spec.rate as u64,
                flush_interval: self.settings.flush_interval,
                sync_interval: self.settings.sync_interval,
                timeline_origin: timeline_pos,
                first_seq: next_seq,
                stop_at: self.job.duration_frames,
                resume_gap: inherited_gap.clone(),
                spool: self.settings.spool.clone(),
                meter: self.settings.meter,
                listen: self.job.source == crate::journal::JobSource::Controller,
                stall_guard: self.settings.stall_guard,
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
        let report = join_writer(writer_thread, &progress, WRITER_STALL, WRITER_DRAIN_CAP);
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
        // The writer refined the start over the run's first second: keep the refined one,
        // in the same commit as the run's frame count.
        let refined = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
        let refined = (started_here
            && watched.leading_gap.is_none()
            && refined > 0
            && self.started_at_ms != Some(refined))
        .then_some(refined);
        let frames = report.timeline_frames;
        self.write(|j, id| {
            j.atomically(|j| {
                if let Some(start) = refined {
                    j.set_job_started(id, start)?;
                }
                j.set_job_progress(id, frames, writer::now_ms())
            })
        })?;
        if refined.is_some() {
            self.started_at_ms = refined;
        }
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
            (since, report.end_seen),
            &detail,
            &mut self.flaps,
        ));
        Ok(None)
    }

    /// Watches one run: ends it on stop, stall, or the job's window closing. `None`
    /// means "the writer finished by itself: read its report". Parked between looks
    /// until the earliest deadline; the writer's end and a stop ring it awake.
    fn supervise(&mut self, run: &WatchedRun) -> Result<Option<RunEnd>, RunError> {
        let (progress, stats) = (run.progress, run.stats);
        let bell = progress.clone();
        let _hook = self.stop.on_stop(Box::new(move || bell.wake.ring()));
        while !progress.finished.load(Ordering::Acquire) {
            let flowing = progress.origin_wall_ms.load(Ordering::Acquire) != 0;
            if flowing {
                self.note_start(progress, run.leading_gap)?;
                if let Some(loss) = self.loss.take() {
                    loss.restored(self.journal);
                }
            }
            // Where the capture is, for a stop source that dates its stops (a group's).
            self.stop
                .note_frames(progress.timeline_frames.load(Ordering::Acquire));
            if let Some(end) = self.look(run, flowing)? {
                return Ok(Some(end));
            }
            // The progress run file (the sync role's proof that capture advances) is the
            // writer's, on its turn: this thread wakes only for its own deadlines.
            let wait = self.next_look(stats, flowing);
            progress
                .wake
                .wait_timeout(wait.max(Duration::from_millis(1)));
        }
        Ok(None)
    }

    /// One look: a stop asked, a stall, or the window closed ends the run.
    fn look(&mut self, run: &WatchedRun, flowing: bool) -> Result<Option<RunEnd>, RunError> {
        let (progress, stats) = (run.progress, run.stats);
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
        if let Some(deadline) = self.window_deadline_ms(flowing)
            && writer::now_ms() >= deadline
        {
            return Ok(Some(RunEnd::Job(CaptureOutcome::DurationReached)));
        }
        Ok(None)
    }

    fn window_deadline_ms(&self, flowing: bool) -> Option<i64> {
        let slack = if flowing { SLOW_DEVICE_SLACK_MS } else { 0 };
        self.next_deadline_ms().map(|d| d + slack)
    }

    /// Until the next look is due: the stall guard's end (measured from the last
    /// frames), the window's end, or the stop source's own cadence.
    fn next_look(&self, stats: &capture::CaptureStats, flowing: bool) -> Duration {
        // The writer rings the bell at a stall (it wakes on its turns anyway); this look
        // is the backstop for a writer stuck in a write.
        let stall = if stats.ended.load(Ordering::Acquire) {
            Duration::from_secs(1) // no stall to watch: the writer's end rings the bell
        } else {
            (stats.last_frames_at() + self.settings.stall_guard + STALL_BACKSTOP)
                .saturating_duration_since(Instant::now())
        };
        let window = self.window_deadline_ms(flowing).map_or(Duration::MAX, |d| {
            Duration::from_millis((d - writer::now_ms()).max(0) as u64)
        });
        let recheck = self.stop.recheck_every().unwrap_or(Duration::MAX);
        stall.min(window).min(recheck)
    }
}

/// How long past the stall guard the supervisor looks for a stall itself, should the
/// writer (which rings it at the stall) be stuck in a write.
const STALL_BACKSTOP: Duration = Duration::from_secs(25);
/// A draining writer that writes nothing for this long is wedged (a dead disk).
const WRITER_STALL: Duration = Duration::from_secs(5);
/// The longest a writer may take to drain what the ring held at the stop.
const WRITER_DRAIN_CAP: Duration = Duration::from_secs(60);

/// What the supervisor watches during one run.
struct WatchedRun<'a> {
    progress: &'a std::sync::Arc<WriterProgress>,
    stats: &'a capture::CaptureStats,
    /// When this run closes the job's leading gap: the window's opening.
    leading_gap: Option<GapSince>,
}

/// Joins the writer while it drains the ring. A writer that is still writing is slow, not
/// wedged (a debug build draining 256 channels, a busy box): leaving it behind would lose
/// the audio it holds. It is wedged when it writes nothing for `stall`; `cap` bounds the
/// whole wait (the ring holds at most a few seconds of audio).
fn join_writer<T>(
    thread: std::thread::JoinHandle<T>,
    progress: &WriterProgress,
    stall: Duration,
    cap: Duration,
) -> Option<T> {
    let until = Instant::now() + cap;
    let mut written = progress.written_frames.load(Ordering::Acquire);
    let mut last_progress = Instant::now();
    while !progress.finished.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= until || now.duration_since(last_progress) >= stall {
            return None;
        }
        // Rung when the writer finishes; woken each second to look at its progress.
        progress.wake.wait_timeout(Duration::from_secs(1));
        let now_written = progress.written_frames.load(Ordering::Acquire);
        if now_written != written {
            written = now_written;
            last_progress = Instant::now();
        }
    }
    // `finished` is the thread's last step: the join returns at once.
    thread.join().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn writer_like(
        progress: Arc<WriterProgress>,
        steps: u32,
        step: Duration,
    ) -> std::thread::JoinHandle<u32> {
        std::thread::spawn(move || {
            for _ in 0..steps {
                std::thread::sleep(step);
                progress.written_frames.fetch_add(1, Ordering::AcqRel);
            }
            progress.finished.store(true, Ordering::Release);
            progress.wake.ring();
            steps
        })
    }

    #[test]
    fn a_slow_writer_that_keeps_writing_is_joined_past_the_stall_bound() {
        let progress = Arc::new(WriterProgress::default());
        // 3.2 s in all, a write every 200 ms: past the 1.5 s stall bound twice over,
        // never near it between writes.
        let thread = writer_like(progress.clone(), 16, Duration::from_millis(200));
        let joined = join_writer(
            thread,
            &progress,
            Duration::from_millis(1500),
            Duration::from_secs(30),
        );
        assert_eq!(joined, Some(16));
    }

    #[test]
    fn a_writer_that_writes_nothing_is_left_behind_after_the_stall_bound() {
        let progress = Arc::new(WriterProgress::default());
        // Silent for 10 s: left after about the 1 s stall bound, long before (the margin
        // is for a loaded test machine that wakes the waiter late).
        let thread = writer_like(progress.clone(), 1, Duration::from_secs(10));
        let started = Instant::now();
        let joined = join_writer(
            thread,
            &progress,
            Duration::from_secs(1),
            Duration::from_secs(30),
        );
        assert_eq!(joined, None);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
    }

    #[test]
    fn the_drain_cap_bounds_a_writer_that_writes_forever() {
        let progress = Arc::new(WriterProgress::default());
        let thread = writer_like(progress.clone(), 40, Duration::from_millis(100));
        let joined = join_writer(
            thread,
            &progress,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        assert_eq!(joined, None);
    }
}
