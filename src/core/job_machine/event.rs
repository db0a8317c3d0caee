//! What the machine is fed: facts from the capture, render and sync sides, and the
//! controller's answers as the verdicts they imply.

use super::{RenderedFile, Verdict, reason};

/// What happened. Past tense is a fact from the capture, render or sync side; the
/// controller's answers arrive as the verdict they imply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The capture role takes up a claimed job.
    Start,
    /// The writer reached the job's frame count.
    DurationReached,
    /// The controller says `stop_requested` (a local job: the operator's SIGINT/SIGTERM).
    StopRequested,
    /// The agent is shutting down (service stop, update, reboot). A controller job is
    /// parked and resumed by the janitor if its window is still open; a local job stops.
    Shutdown,
    /// GET shows `cancelled` (e.g. `stop_request_lease_expired`).
    CancelledByController {
        reason: String,
    },
    /// GET shows `failed` for any reason but `lease_expired`.
    FailedOnController {
        reason: String,
    },
    /// GET shows `completed`.
    CompletedOnController,
    /// GET shows `failed` / `lease_expired`: the lease lapsed, typically during an outage.
    LeaseLost,
    /// The device did not come back within the capture role's patience.
    DeviceGoneForGood {
        detail: String,
    },
    /// Capture cannot start or go on (bad command, backend error).
    CaptureFailed {
        detail: String,
    },
    /// The writer closed the last segment; `has_audio` if any frame was written.
    Captured {
        has_audio: bool,
    },
    RenderStarted,
    Rendered(RenderedFile),
    RenderFailed {
        detail: String,
    },
    /// The sync role began the PUT.
    UploadStarted,
    /// The PUT answered 201; `checksum_matches` compares its `sha256:` with ours.
    UploadAccepted {
        checksum_matches: bool,
    },
    /// A chunk before the last answered 201 with a checksum that is not ours: that PUT
    /// did not complete the job, so the controller can still be told `failed`.
    ChunkChecksumMismatch,
    /// While the job captures (or finishes its render), the capture role rendered chunk
    /// `index` of a chunked job and journaled it complete: it may go up at once.
    ChunkRendered {
        index: u32,
    },
    /// The PUT answered 409 and a GET could not say why (else feed the verdict instead).
    UploadRefused409,
    /// The PUT failed: retryable (timeout, 5xx) or not (400, 413).
    UploadFailed {
        retryable: bool,
        detail: String,
    },
    /// The janitor found the job with no live owner (crash, kill, power loss, or the
    /// restart after a [`Event::Shutdown`]). Segments are already repaired.
    Crashed {
        window_open: bool,
        has_audio: bool,
    },
}

impl Event {
    pub const fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::DurationReached => "duration_reached",
            Event::StopRequested => "stop_requested",
            Event::Shutdown => "shutdown",
            Event::CancelledByController { .. } => "cancelled_by_controller",
            Event::FailedOnController { .. } => "failed_on_controller",
            Event::CompletedOnController => "completed_on_controller",
            Event::LeaseLost => "lease_lost",
            Event::DeviceGoneForGood { .. } => "device_gone_for_good",
            Event::CaptureFailed { .. } => "capture_failed",
            Event::Captured { .. } => "captured",
            Event::RenderStarted => "render_started",
            Event::Rendered(_) => "rendered",
            Event::RenderFailed { .. } => "render_failed",
            Event::UploadStarted => "upload_started",
            Event::UploadAccepted { .. } => "upload_accepted",
            Event::ChunkChecksumMismatch => "chunk_checksum_mismatch",
            Event::ChunkRendered { .. } => "chunk_rendered",
            Event::UploadRefused409 => "upload_refused_409",
            Event::UploadFailed { .. } => "upload_failed",
            Event::Crashed { .. } => "crashed",
        }
    }

    /// The controller's decision this event reports, if it is one.
    pub(super) fn verdict(&self) -> Option<Verdict> {
        match self {
            Event::CancelledByController { reason } => Some(Verdict::Cancelled {
                reason: reason.clone(),
            }),
            Event::FailedOnController { reason } => Some(Verdict::Failed {
                reason: reason.clone(),
            }),
            Event::CompletedOnController => Some(Verdict::Completed),
            Event::LeaseLost => Some(Verdict::Failed {
                reason: reason::LEASE_EXPIRED.into(),
            }),
            _ => None,
        }
    }

    /// Events only a controller job can receive.
    pub(super) const fn needs_controller(&self) -> bool {
        matches!(
            self,
            Event::CancelledByController { .. }
                | Event::FailedOnController { .. }
                | Event::CompletedOnController
                | Event::LeaseLost
                | Event::UploadStarted
                | Event::UploadAccepted { .. }
                | Event::ChunkChecksumMismatch
                | Event::ChunkRendered { .. }
                | Event::UploadRefused409
                | Event::UploadFailed { .. }
        )
    }
}
