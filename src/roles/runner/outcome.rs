//! What a job's capture came to: why it ended, and how its end cause reads back.

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
