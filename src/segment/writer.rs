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
//! - this file: the write path (the drain, batch by batch, and rotation).
//! - `types`: the config it is given, the progress it publishes, its report.
//! - `segments`: opening and closing segment files and their journal rows.
//! - `events`: the capture stream's gaps and end, applied in stream order.
//! - `journaled`: journal writes that a full disk defers instead of failing.
//! - `turn`: the periodic work done in one wake-up (disk check, meter, header, sync,
//!   progress run file).
//! - `disk_pause`: pausing and resuming writing on the spool's free space.
//! - `stream_clock`: dating the run's first frame and the timeline's end.
//! - `wake`: when the thread wakes (deadlines and capture events, never a poll).

mod disk_pause;
mod events;
mod journaled;
mod segments;
mod stream_clock;
mod turn;
mod types;
mod wake;

pub use types::*;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::{CaptureEvent, FrameSource, StopFlag};
use crate::core::disk_budget::DiskAction;
use crate::core::timeline::TimelineEvent;
use crate::journal::Journal;
use crate::segment::disk;
use crate::segment::meter_file::MeterPublisher;
use crate::segment::spool::SpoolGuard;
use segments::OpenSegment;
use stream_clock::StreamClock;

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
    /// The last frame's arrival a stall was rung for (one ring per silence).
    stall_rung_for: Option<Instant>,
}

/// Most bytes moved per write call: the writer wakes about once a second and writes what
/// the ring holds in a few large calls (a second of stereo is one call).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// How often an open segment's journal row learns its length (closing it always does).
const SEGMENT_ROW_EVERY: Duration = Duration::from_secs(30);

/// The writer thread; joining it gives its report.
pub type WriterThread = JoinHandle<Result<WriterReport, WriterError>>;

/// `journal` is the writer's own connection (a sibling of the job's: `Journal::sibling`).
pub fn spawn(
    cfg: WriterConfig,
    journal: Journal,
    source: FrameSource,
    drain: StopFlag,
) -> Result<(WriterThread, Arc<WriterProgress>), WriterError> {
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
        stall_rung_for: None,
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
        let end_seen = Instant::now();
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
            end_seen,
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
        self.ring_on_stall();
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
            // Metered and written from the ring in place, then freed there, however the
            // write went (frames it could not keep become the pause's gap).
            let (first, second) = self.source.peek_frames(want as usize);
            let got = ((first.len() + second.len()) / self.cfg.spec.bytes_per_frame()) as u64;
            if got == 0 {
                break;
            }
            self.meter.feed(first);
            self.meter.feed(second);
            let seg = self.current.as_mut().expect("opened above");
            let before = seg.file.frames();
            let written = seg.file.write_frames(first).and_then(|()| match second {
                [] => Ok(()),
                more => seg.file.write_frames(more),
            });
            self.source.consume_frames(got as usize);
            if let Err(source) = written {
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
}

/// Wall clock, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
