//! The segment writer thread: drains the ring into WAV segments.
//!
//! - A segment's data is `fdatasync`ed every `sync_interval`, on every other of the
//!   writer's turns (`turn`), in whole pages where the stream allows
//!   (`file::page_hold_sync`: the partial last page waits in memory, and the sync comes a
//!   page's worth earlier), so no page is rewritten at every sync.
//! - Its header is rewritten every `flush_interval` (30 s by default, with the journal
//!   row) and on close: repair trusts the file length, not the header.
//! - Segments rotate every `segment_frames` on an exact frame boundary.
//! - A gap in the stream (device overrun, full ring, drop-out) closes the segment: the
//!   next one starts after the gap on the job's timeline, so every segment is one
//!   contiguous run of device time and the stitcher fills the gaps between them.
//! - A file is created (O_EXCL, file and directory fsynced) before its journal row is
//!   written, and audio is written only after the row exists, so the journal never names
//!   a file that might not exist and a file without a row holds no audio.
//!
//! - this file: the write path (drain, segment open/rotate/close, timeline events and
//!   their journal writes).
//! - `turn`: the periodic work done in one wake-up (disk check, meter, header, sync).
//! - `disk_pause`: pausing and resuming writing on the spool's free space.
//! - `stream_clock`: dating the run's first frame and the timeline's end.
//! - `wake`: when the thread wakes (deadlines and capture events, never a poll).

mod disk_pause;
mod journaled;
mod stream_clock;
mod turn;
mod wake;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::{CaptureEnd, CaptureEvent, Doorbell, FrameSource, GapCause, StopFlag};
use crate::core::disk_budget::DiskAction;
use crate::core::format::StreamSpec;
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{Journal, JournalError, NewSegment, SegmentState};
use crate::segment::disk;
use crate::segment::file::SegmentFile;
use crate::segment::meter_file::MeterPublisher;
use crate::segment::spool::{SpoolGuard, SpoolSettings};
use crate::segment::wav::SegmentIdentity;
use stream_clock::StreamClock;

/// What the writer needs to know about its job.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub job_id: String,
    pub job_dir: PathBuf,
    pub journal_path: PathBuf,
    pub spec: StreamSpec,
    /// The device's period: audio in flight there is what a kill -9 loses besides the ring.
    pub period: Duration,
    pub segment_frames: u64,
    pub flush_interval: Duration,
    pub sync_interval: Duration,
    /// Timeline position of the first frame this writer receives.
    pub timeline_origin: u64,
    /// Sequence number of the first segment this writer creates.
    pub first_seq: u32,
    /// Stop once the timeline reaches this frame (the job's duration).
    pub stop_at: Option<u64>,
    /// This run resumes after a gap (device loss, crash) that began at `since`: the gap
    /// is measured when the first frame arrives and put on the timeline before it.
    pub resume_gap: Option<ResumeGap>,
    /// Budget the spool's free space (pause below the reserve, reclaim, resume).
    pub spool: Option<SpoolSettings>,
    /// Where the level detectors open.
    pub meter: crate::core::meter::Thresholds,
    /// Someone listens live (a controller's job): publish listen chunks with the levels.
    pub listen: bool,
}

/// A gap that ends when this run's first frame arrives.
#[derive(Clone, Debug)]
pub struct ResumeGap {
    pub since: GapSince,
    /// The event that closes the gap (`device_restored`, `crash_recovered`).
    pub kind: EventKind,
    pub detail: String,
}

/// When a gap began: a monotonic instant inside one process, or wall time across a crash.
#[derive(Clone, Copy, Debug)]
pub enum GapSince {
    Monotonic(Instant),
    WallMs(i64),
}

/// Progress the writer publishes for its supervisor.
#[derive(Debug, Default)]
pub struct WriterProgress {
    /// Timeline position of the next frame (frames written + gaps).
    pub timeline_frames: AtomicU64,
    /// Frames written to segments by this writer.
    pub written_frames: AtomicU64,
    /// Wall time (ms since epoch) of timeline frame `timeline_origin`, once known.
    pub origin_wall_ms: AtomicU64,
    /// Wall time (ms since epoch) of the timeline's end, set when the writer stops.
    pub end_wall_ms: AtomicU64,
    pub finished: AtomicBool,
    /// Rung when the writer finishes; the supervisor parks on it (stops ring it too).
    pub wake: Doorbell,
}

/// Why the writer stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// The job's duration was reached.
    DurationReached,
    /// The capture stream ended (stopped, device gone, source exhausted, failed).
    Capture(CaptureEnd),
    /// The supervisor asked it to drain and stop (capture thread wedged).
    Drained,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("segment {path}: {source}")]
    Segment {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a finished writer reports.
#[derive(Debug)]
pub struct WriterReport {
    pub end: WriterEnd,
    /// Monotonic time of the timeline's end (the last frame's capture), if any arrived.
    pub end_instant: Option<Instant>,
    /// Timeline position after the last frame.
    pub timeline_frames: u64,
    pub written_frames: u64,
    pub segments: u32,
}

struct OpenSegment {
    file: SegmentFile,
    id: i64,
    last_row_update: Instant,
    last_flush: Instant,
    last_sync: Instant,
}

struct Writer {
    cfg: WriterConfig,
    source: FrameSource,
    journal: Journal,
    progress: Arc<WriterProgress>,
    current: Option<OpenSegment>,
    next_seq: u32,
    /// Ring frames consumed so far (the capture stream's position).
    ring_pos: u64,
    /// Timeline position of the next frame.
    timeline_pos: u64,
    pending: VecDeque<CaptureEvent>,
    buf: Vec<u8>,
    /// Whether this run's first frame has been dated (and its resume gap closed).
    origin_known: bool,
    /// Dates the stream against the monotonic clock, scheduling delay filtered out.
    clock: StreamClock,
    spool: Option<SpoolGuard>,
    /// While writing is paused for disk space: where the pause began and frames dropped.
    disk_pause: Option<(u64, u64)>,
    /// Timeline events the journal had no room for yet (a full disk), oldest first.
    deferred_events: Vec<TimelineEvent>,
    journal_full_logged: bool,
    /// Live levels of what is captured (written or not), published every few seconds.
    meter: MeterPublisher,
    /// Segments hold their partial last page between syncs (`file::page_hold_sync`).
    hold_pages: bool,
    /// How often the writer takes its turn and syncs (`turn::cadence`).
    cadence: turn::Cadence,
    /// When the next turn is due (`None`: the first is due at once and looks at the disk).
    next_turn: Option<Instant>,
    /// When the progress run file was last rewritten, and the file (held open).
    last_progress: Option<Instant>,
    progress_file: Option<crate::journal::run_files::ProgressFile>,
}

/// Most bytes moved per write call: the writer wakes about once a second and writes what
/// the ring holds in a few large calls (a second of stereo is one call).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// How often an open segment's journal row learns its length (closing it always does).
const SEGMENT_ROW_EVERY: Duration = Duration::from_secs(30);

/// The writer thread; joining it gives its report.
pub type WriterThread = JoinHandle<Result<WriterReport, WriterError>>;

pub fn spawn(
    cfg: WriterConfig,
    source: FrameSource,
    drain: StopFlag,
) -> Result<(WriterThread, Arc<WriterProgress>), WriterError> {
    let journal = Journal::open(&cfg.journal_path)?;
    let progress = Arc::new(WriterProgress::default());
    let hold_pages = crate::segment::file::page_hold_sync(&cfg.spec, cfg.sync_interval).is_some();
    let held = if hold_pages {
        crate::segment::file::page_duration(&cfg.spec)
    } else {
        Duration::ZERO
    };
    progress
        .timeline_frames
        .store(cfg.timeline_origin, Ordering::Release);
    let mut writer = Writer {
        next_seq: cfg.first_seq,
        timeline_pos: cfg.timeline_origin,
        source,
        journal,
        progress: progress.clone(),
        current: None,
        ring_pos: 0,
        pending: VecDeque::new(),
        buf: Vec::with_capacity(MAX_BATCH_BYTES),
        origin_known: false,
        clock: StreamClock::default(),
        spool: None,
        disk_pause: None,
        deferred_events: Vec::new(),
        journal_full_logged: false,
        meter: MeterPublisher::new(
            cfg.journal_path
                .parent()
                .unwrap_or(std::path::Path::new(".")),
            &cfg.job_id,
            cfg.spec,
            cfg.meter,
            cfg.listen,
        ),
        hold_pages,
        cadence: turn::cadence(cfg.sync_interval, cfg.period, held),
        next_turn: None,
        last_progress: None,
        progress_file: None,
        cfg,
    };
    writer.progress_file = writer.journal.progress_file(&writer.cfg.job_id).ok();
    if let Some(settings) = writer.cfg.spool.clone() {
        match SpoolGuard::open(settings) {
            Ok(guard) => writer.spool = Some(guard),
            Err(e) => log::warn!("disk budget off: {e}"),
        }
    }
    let handle = std::thread::Builder::new()
        .name("edgerec-writer".into())
        .spawn(move || {
            writer.source.wake_me_at_the_end();
            let result = writer.run(&drain);
            writer.progress.finished.store(true, Ordering::Release);
            writer.progress.wake.ring();
            result
        })
        .map_err(|source| WriterError::Segment {
            path: PathBuf::from("<writer thread>"),
            source,
        })?;
    Ok((handle, progress))
}

impl Writer {
    fn run(&mut self, drain: &StopFlag) -> Result<WriterReport, WriterError> {
        let result = loop {
            match self.step(drain.is_stopped()) {
                Ok(Some(end)) => break Ok(end),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        // Close whatever is open even after an error: the segment stays valid up to its
        // last whole frame and the journal learns its length.
        let closed = self.close_segment();
        if self.disk_pause.is_some()
            && let Err(e) = self.resume_writing("capture ended while writing was paused")
        {
            log::error!(
                "{}: recording the end of a disk pause: {e}",
                self.cfg.job_id
            );
        }
        self.note_end_time();
        self.meter.remove();
        let end = result?;
        closed?;
        Ok(WriterReport {
            end,
            timeline_frames: self.timeline_pos,
            written_frames: self.progress.written_frames.load(Ordering::Acquire),
            segments: self.next_seq - self.cfg.first_seq,
            end_instant: self.end_instant(),
        })
    }

    /// One pass: take events, write what is available up to the next event, apply events.
    fn step(&mut self, draining: bool) -> Result<Option<WriterEnd>, WriterError> {
        self.observe_clock();
        while let Ok(ev) = self.source.events.try_recv() {
            self.pending.push_back(ev);
        }
        if let Some(end) = self.apply_due_events()? {
            return Ok(Some(end));
        }
        if self.duration_reached() {
            return Ok(Some(WriterEnd::DurationReached));
        }
        let wrote = if self.disk_pause.is_some() {
            self.drop_available()?
        } else {
            self.write_available()?
        };
        self.turn()?;
        if wrote == 0 {
            if draining && self.source.frames_available() == 0 && self.source.events.is_empty() {
                return Ok(Some(WriterEnd::Drained));
            }
            self.park();
        }
        Ok(None)
    }

    fn duration_reached(&self) -> bool {
        self.cfg
            .stop_at
            .is_some_and(|stop| self.timeline_pos >= stop)
    }

    /// Frames we may still write before the next event or the job's end.
    fn writable_limit(&self) -> u64 {
        let until_event = match self.pending.front() {
            Some(CaptureEvent::Gap { at, .. } | CaptureEvent::Ended { at, .. }) => {
                at.saturating_sub(self.ring_pos)
            }
            None => u64::MAX,
        };
        let until_stop = self
            .cfg
            .stop_at
            .map_or(u64::MAX, |s| s.saturating_sub(self.timeline_pos));
        until_event.min(until_stop)
    }

    fn write_available(&mut self) -> Result<u64, WriterError> {
        let mut total = 0;
        loop {
            let batch = (MAX_BATCH_BYTES / self.cfg.spec.bytes_per_frame()).max(1);
            let mut want = self.writable_limit().min(batch as u64);
            if want == 0 {
                break;
            }
            if self.current.is_none() {
                if self.source.frames_available() == 0 {
                    break;
                }
                if !self.origin_known {
                    self.first_frames_arrived()?;
                    continue; // the gap may have moved the timeline or reached the end
                }
                self.open_segment()?;
                if self.current.is_none() {
                    break; // no room for it: paused, the frames become the pause's gap
                }
            }
            let seg = self.current.as_ref().expect("opened above");
            want = want.min(self.cfg.segment_frames - seg.file.frames());
            let got = self.source.pop_frames(&mut self.buf, want as usize) as u64;
            if got == 0 {
                break;
            }
            self.meter.feed(&self.buf);
            let seg = self.current.as_mut().expect("opened above");
            let before = seg.file.frames();
            if let Err(source) = seg.file.write_frames(&self.buf) {
                if !disk::is_disk_full(&source) || self.spool.is_none() {
                    return Err(WriterError::Segment {
                        path: seg.file.path().to_path_buf(),
                        source,
                    });
                }
                // The segment keeps its whole frames on disk; the rest of the batch, and
                // the held partial page of earlier ones if it was lost, start the gap.
                let after = seg.file.frames();
                let kept = after.saturating_sub(before);
                let lost = before.saturating_sub(after);
                self.advance(kept);
                self.timeline_pos -= lost;
                self.progress
                    .written_frames
                    .fetch_sub(lost, Ordering::AcqRel);
                self.ring_pos += got - kept;
                let action = self.spool.as_mut().expect("checked above").write_failed();
                if action == DiskAction::Pause {
                    self.pause_writing("write failed: disk full (ENOSPC/EDQUOT)")?;
                }
                if let Some(pause) = self.disk_pause.as_mut() {
                    pause.1 += got - kept + lost;
                }
                self.timeline_pos += got - kept + lost;
                return Ok(total + got);
            }
            self.ring_pos += got;
            self.timeline_pos += got;
            total += got;
            self.progress
                .timeline_frames
                .store(self.timeline_pos, Ordering::Release);
            self.progress
                .written_frames
                .fetch_add(got, Ordering::AcqRel);
            if seg.file.frames() >= self.cfg.segment_frames {
                self.close_segment()?; // rotation on an exact frame boundary
            }
        }
        Ok(total)
    }

    /// Counts `frames` written to the current segment on the timeline.
    fn advance(&mut self, frames: u64) {
        self.ring_pos += frames;
        self.timeline_pos += frames;
        self.progress
            .timeline_frames
            .store(self.timeline_pos, Ordering::Release);
        self.progress
            .written_frames
            .fetch_add(frames, Ordering::AcqRel);
    }

    /// While paused for disk space: the ring is drained unwritten (the device stays
    /// happy), and the frames become the pause's gap.
    fn drop_available(&mut self) -> Result<u64, WriterError> {
        let want = self
            .writable_limit()
            .min(self.source.frames_available() as u64);
        if want == 0 {
            return Ok(0);
        }
        if !self.origin_known {
            self.first_frames_arrived()?;
            return Ok(1);
        }
        let got = self.source.pop_frames(&mut self.buf, want as usize) as u64;
        self.meter.feed(&self.buf);
        self.ring_pos += got;
        self.timeline_pos += got;
        self.progress
            .timeline_frames
            .store(self.timeline_pos, Ordering::Release);
        if let Some(pause) = self.disk_pause.as_mut() {
            pause.1 += got;
        }
        Ok(got)
    }

    fn apply_due_events(&mut self) -> Result<Option<WriterEnd>, WriterError> {
        while let Some(ev) = self.pending.front() {
            let at = match ev {
                CaptureEvent::Gap { at, .. } | CaptureEvent::Ended { at, .. } => *at,
            };
            if at > self.ring_pos {
                return Ok(None);
            }
            match self.pending.pop_front().expect("front exists") {
                CaptureEvent::Gap { frames, cause, .. } => self.apply_gap(frames, cause)?,
                CaptureEvent::Ended { end, .. } => return Ok(Some(WriterEnd::Capture(end))),
            }
        }
        Ok(None)
    }

    /// A gap closes the run: the next segment starts after it on the timeline.
    fn apply_gap(&mut self, frames: u64, cause: GapCause) -> Result<(), WriterError> {
        self.close_segment()?;
        self.clock.restart_window(self.ring_pos);
        let (kind, detail) = match cause {
            GapCause::DeviceOverrun => (EventKind::Overrun, "device overrun (EPIPE), recovered"),
            GapCause::RingFull => (EventKind::Overrun, "ring full: writer fell behind"),
            GapCause::DropOut => (EventKind::DropOut, "source delivered no audio"),
        };
        let frames = match self.cfg.stop_at {
            Some(stop) => frames.min(stop.saturating_sub(self.timeline_pos)),
            None => frames,
        };
        let ev = TimelineEvent::new(kind, self.timeline_pos, now_ms())
            .with_detail(detail)
            .with_gap(frames);
        self.add_event(&ev)?;
        log::warn!(
            "{}: {} frames missing at frame {} ({detail})",
            self.cfg.job_id,
            frames,
            self.timeline_pos
        );
        self.timeline_pos += frames;
        self.progress
            .timeline_frames
            .store(self.timeline_pos, Ordering::Release);
        Ok(())
    }

    fn open_segment(&mut self) -> Result<(), WriterError> {
        let name = format!("{:06}.wav", self.next_seq);
        let path = self.cfg.job_dir.join(&name);
        // Self-describing: a lost journal can be rebuilt from the files (repair --rebuild).
        let identity = SegmentIdentity {
            job: self.cfg.job_id.clone(),
            seq: self.next_seq,
            first_frame: self.timeline_pos,
            opened_at_ms: now_ms(),
        };
        let file = match SegmentFile::create_identified(&path, self.cfg.spec, Some(&identity)) {
            Ok(mut file) => {
                file.hold_partial_page(self.hold_pages);
                file
            }
            // No room for a new file is a full disk like a failed write: pause.
            Err(source) if disk::is_disk_full(&source) && self.spool.is_some() => {
                let _ = std::fs::remove_file(&path);
                let action = self.spool.as_mut().expect("checked above").write_failed();
                if action == DiskAction::Pause {
                    self.pause_writing("creating a segment failed: disk full (ENOSPC/EDQUOT)")?;
                }
                return Ok(());
            }
            Err(source) => return Err(WriterError::Segment { path, source }),
        };
        // The file and its directory entry are durable: now the journal may name it.
        let row = NewSegment {
            job_id: self.cfg.job_id.clone(),
            seq: self.next_seq,
            path: name,
            first_frame: self.timeline_pos,
            spec: self.cfg.spec,
            opened_at_ms: now_ms(),
        };
        let Some(id) = self.journaled(|j| j.insert_segment(&row))? else {
            // No room even for the row: the file goes (it holds no audio yet) and the
            // frames become the pause's gap until space returns.
            let _ = std::fs::remove_file(&path);
            return Ok(());
        };
        self.next_seq += 1;
        let now = Instant::now();
        self.current = Some(OpenSegment {
            file,
            id,
            last_row_update: now,
            last_flush: now,
            last_sync: now,
        });
        Ok(())
    }

    fn close_segment(&mut self) -> Result<(), WriterError> {
        let Some(seg) = self.current.take() else {
            return Ok(());
        };
        let path = seg.file.path().to_path_buf();
        let frames = seg
            .file
            .close()
            .map_err(|source| WriterError::Segment { path, source })?;
        // Without room for the row, the segment stays `open` in the journal and repair
        // closes it from the file, which is valid up to its last frame.
        self.journaled(|j| j.close_segment(seg.id, frames, SegmentState::Closed, now_ms()))?;
        Ok(())
    }
}

/// Wall clock, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
