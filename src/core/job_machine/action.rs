//! What a transition asks for: the actions (journal writes first, then side effects), the
//! report each end path queues, and the alerts it raises.

use super::RenderedFile;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The terminal POST a report needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalPost {
    /// `POST /recording-jobs/{id}/cancelled`
    Cancelled,
    /// `POST /recording-jobs/{id}/failed`
    Failed,
}

impl TerminalPost {
    /// The last path segment of the call.
    pub const fn path(self) -> &'static str {
        match self {
            TerminalPost::Cancelled => "cancelled",
            TerminalPost::Failed => "failed",
        }
    }
}

/// The one terminal report of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Report {
    /// The primary cache-file PUT completed the job: nothing to post.
    Completed,
    /// Post `cancelled` with this `x-rakkr-reason`.
    Cancelled { reason: String },
    /// Post `failed` with this `x-rakkr-reason`.
    Failed { reason: String },
    /// The controller already ended the job (it said completed, failed or cancelled, or
    /// refused the upload): nothing to post.
    ControllerDecided,
    /// A local job: there is no controller.
    Local,
}

impl Report {
    pub(super) fn cancelled(reason: &str) -> Report {
        Report::Cancelled {
            reason: reason.into(),
        }
    }

    pub(super) fn failed(reason: &str) -> Report {
        Report::Failed {
            reason: reason.into(),
        }
    }

    /// The POST to make and its `x-rakkr-reason`, or `None` when nothing is posted. Only
    /// these go into the outbox as a `terminal_report`.
    pub fn post(&self) -> Option<(TerminalPost, &str)> {
        match self {
            Report::Cancelled { reason } => Some((TerminalPost::Cancelled, reason)),
            Report::Failed { reason } => Some((TerminalPost::Failed, reason)),
            Report::Completed | Report::ControllerDecided | Report::Local => None,
        }
    }
}

/// What to do after the new state is saved.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start (or, after a crash, resume) capture.
    StartCapture,
    /// Close capture: the writer finishes its segment and reports [`Event::Captured`].
    ///
    /// [`Event::Captured`]: super::Event::Captured
    StopCapture,
    /// Queue the render of the captured segments.
    Render,
    /// Enqueue the cache-file PUT in the outbox. `attempt` counts re-uploads after a
    /// checksum mismatch: the outbox key is per attempt, so a re-issued `Upload` after a
    /// crash is a no-op and a deliberate re-upload is not.
    Upload { file: RenderedFile, attempt: u32 },
    /// Enqueue the PUT of one chunk rendered while the job still captures (no
    /// `chunkTotal`: the job's end decides the total). Keyed by job and chunk, so a
    /// re-issue after a crash is a no-op.
    UploadChunk { index: u32 },
    /// Abandon the job's undelivered upload rows: the controller ended the job.
    DropUpload,
    /// The terminal report; exactly one per job.
    EnqueueReport(Report),
    /// Something the controller's operator should hear about (the sync role sends it as a
    /// health event).
    EnqueueHealthEvent(Alert),
    /// Keep the audio, mark it undelivered for `edgerec status`; retention never deletes it.
    FlagLocalRecording { reason: String },
}

/// How much an [`Alert`] matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertLevel {
    Warning,
    Critical,
}

/// What the machine wants an operator to know, in its own terms: a kind
/// (`agent.job.crash_loop`), a level and details. No wire format here.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub kind: String,
    pub level: AlertLevel,
    pub details: Map<String, Value>,
}

impl Alert {
    pub fn new(kind: impl Into<String>, level: AlertLevel) -> Alert {
        Alert {
            kind: kind.into(),
            level,
            details: Map::new(),
        }
    }
}

impl Action {
    /// Whether the action is a journal write, to commit in the same transaction as the new
    /// state; the others run after the commit.
    pub const fn is_journal_write(&self) -> bool {
        match self {
            Action::Upload { .. }
            | Action::UploadChunk { .. }
            | Action::DropUpload
            | Action::EnqueueReport(_)
            | Action::EnqueueHealthEvent(_)
            | Action::FlagLocalRecording { .. } => true,
            Action::StartCapture | Action::StopCapture | Action::Render => false,
        }
    }
}
