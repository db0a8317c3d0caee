//! What the writer is given (its job's config) and what it publishes and reports.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use crate::capture::{CaptureEnd, Doorbell};
use crate::core::format::StreamSpec;
use crate::core::timeline::EventKind;
use crate::journal::JournalError;
use crate::segment::spool::SpoolSettings;

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
    /// No frames for this long while the stream claims to run is a stall: the writer, which
    /// wakes on its turns anyway, rings the supervisor then, so the supervisor need not
    /// wake to look for one.
    pub stall_guard: Duration,
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
    /// When the writer saw the stream end (before its own teardown): a device loss is
    /// dated between the last frame and this, not the supervisor's later look.
    pub end_seen: Instant,
    /// Timeline position after the last frame.
    pub timeline_frames: u64,
    pub written_frames: u64,
    pub segments: u32,
}
