//! The job state machine: pure code, one transition table, `(state, event) -> (state,
//! actions)`. No clock, no I/O: the caller feeds events, saves the new state in the journal,
//! and only then runs the actions (STYLE.md 7, "save before acting").
//!
//! # How a caller drives it
//! 1. `let (next, actions) = transition(&current, &event)?` (an `Err` is a bug or a stale
//!    event: log it, change nothing).
//! 2. In one journal transaction: write `next`, and apply every action whose
//!    [`Action::is_journal_write`] is true (outbox rows, flags). A crash then loses either
//!    both or neither.
//! 3. After the commit, run the other actions (start/stop capture, render).
//!
//! A crash between 2 and 3 loses only the side effects; the janitor then feeds
//! [`Event::Crashed`], whose rows re-issue them (capture restarts, render re-runs, the upload
//! is re-enqueued under the same idempotency key).
//!
//! # End paths
//! Every end path reaches exactly one terminal state, and the transition into it carries
//! exactly one [`Action::EnqueueReport`] (tested: `every_end_path_reaches_one_terminal`).
//! Terminal states absorb every later event without actions: late controller answers are
//! normal (a 409 arriving after the job already ended, a repeated GET).
//!
//! The policies the table encodes, all in one place:
//! - The controller being down, slow or lost never stops capture. A lease lost during an
//!   outage ([`Event::LeaseLost`]) is noted and capture runs on to the job's duration.
//! - A controller verdict (cancelled, failed, completed) finalizes locally: capture stops
//!   (except a lost lease), the audio is rendered into the local library, kept and flagged,
//!   and nothing is uploaded or reported (the controller already knows).
//! - Audio is never deleted because of controller state: every ending that leaves audio
//!   undelivered flags it ([`Action::FlagLocalRecording`]) with a health event.
//! - A stopped job (`stop_requested`) uploads its partial first; the `cancelled` report
//!   (`controller_stop_requested`) is queued only once the upload was accepted. This order
//!   lives in exactly two rows: `Rendered -> Upload` and `UploadAccepted -> report`.
//! - The primary cache-file PUT completes the job on the controller, so an accepted upload
//!   reports [`Report::Completed`] (nothing to post) unless a stop is pending.
//! - A local job (`edgerec record`, no controller) walks the same table; controller events
//!   are illegal for it, it never uploads, and its report is always [`Report::Local`].

use crate::core::job::JobState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;

/// How many times the janitor may restart one job after its owner died (crash, power loss,
/// kill). The next crash ends the job `failed` / `crash_loop`: a job that kills its role
/// every time must not turn the box into a reboot loop (STYLE.md 7).
pub const MAX_RECOVERIES: u32 = 20;

/// How many accepted uploads may come back with a checksum that is not ours before the job
/// ends `failed` / `checksum_mismatch` (the audio is kept).
pub const MAX_CHECKSUM_MISMATCHES: u32 = 3;

/// End causes and report reasons: stable codes for `jobs.end_cause`, `x-rakkr-reason` and
/// `edgerec status`. Details (device names, errors) go in health events, never here.
pub mod reason {
    pub const DURATION: &str = "duration";
    /// The controller's stop; also the `x-rakkr-reason` of the `cancelled` post.
    pub const CONTROLLER_STOP_REQUESTED: &str = "controller_stop_requested";
    /// A local job stopped by the operator (SIGINT/SIGTERM).
    pub const STOP_REQUESTED: &str = "stop_requested";
    /// A local job whose agent shut down.
    pub const SHUTDOWN: &str = "shutdown";
    /// Capture ended on its own (the writer reached the frame count, a file source ran out).
    pub const CAPTURE_ENDED: &str = "capture_ended";
    /// The owner died and the job's window closed before it came back.
    pub const CRASH: &str = "crash";
    pub const DEVICE_GONE: &str = "device_gone";
    pub const CAPTURE_FAILED: &str = "capture_failed";
    pub const NO_AUDIO: &str = "no_audio";
    pub const RENDER_FAILED: &str = "render_failed";
    /// The cache-file PUT answered 409 and the controller's reason is unknown.
    pub const UPLOAD_REFUSED: &str = "upload_refused";
    /// The cache-file PUT failed in a way retrying cannot fix (400, 413).
    pub const UPLOAD_REJECTED: &str = "upload_rejected";
    pub const CHECKSUM_MISMATCH: &str = "checksum_mismatch";
    /// The controller's lease runner failed the job (protocol: `failed` / `lease_expired`).
    pub const LEASE_EXPIRED: &str = "lease_expired";
    /// The controller says `completed` for a job whose audio it never received from us.
    pub const CONTROLLER_COMPLETED: &str = "controller_completed";
    /// The owner died and came back before the window closed: never started, never ended.
    pub const MISSED_WINDOW: &str = "missed_window";
    pub const CRASH_LOOP: &str = "crash_loop";
}

/// Who the job answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Claimed from the controller: uploads, terminal reports, health events.
    Controller,
    /// `edgerec record`: the output directory is the destination; nothing is sent.
    Local,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Controller => "controller",
            JobKind::Local => "local",
        })
    }
}

/// The rendered recording, as the upload needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedFile {
    pub path: PathBuf,
    /// Lowercase hex; compared with the `sha256:<hex>` the controller answers.
    pub sha256: String,
    pub bytes: u64,
}

/// What the controller decided about a job, before the agent finished it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    Completed,
    Failed { reason: String },
    Cancelled { reason: String },
}

impl Verdict {
    /// The local terminal state and end cause this verdict leads to. `completed` for audio
    /// the controller never got from us ends `cancelled`: the controller closed the job.
    fn terminal(&self) -> (JobState, &str) {
        match self {
            Verdict::Completed => (JobState::Cancelled, reason::CONTROLLER_COMPLETED),
            Verdict::Failed { reason } => (JobState::Failed, reason),
            Verdict::Cancelled { reason } => (JobState::Cancelled, reason),
        }
    }
}

/// A job's state plus the few facts the table needs. Serializable so it can be journaled
/// whole; a job row without these facts resumes with [`MachineState::at`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub state: JobState,
    pub kind: JobKind,
    /// Why capture ended, then (once terminal) why the job ended. Set by the first end path.
    pub end_cause: Option<String>,
    /// The controller asked for a stop: after the partial is uploaded, post `cancelled`.
    pub stop_pending: bool,
    /// The controller already ended the job: nothing is uploaded or reported.
    pub verdict: Option<Verdict>,
    /// Capture was closed for a shutdown, not ended: the janitor resumes it.
    pub parked: bool,
    /// The rendered recording, once there is one (what `Upload` sends).
    pub recording: Option<RenderedFile>,
    /// Times the janitor restarted this job; capped by [`MAX_RECOVERIES`].
    pub recoveries: u32,
    /// Accepted uploads whose checksum was not ours; capped by [`MAX_CHECKSUM_MISMATCHES`].
    pub checksum_mismatches: u32,
}

impl MachineState {
    /// A job just claimed (controller) or created (local).
    pub fn new(kind: JobKind) -> MachineState {
        MachineState::at(JobState::Claimed, kind)
    }

    /// A job read back from a journal row that holds only its state: the facts start
    /// empty (no stop pending, no verdict, no rendered file: a `cached` job re-renders).
    pub fn at(state: JobState, kind: JobKind) -> MachineState {
        MachineState {
            state,
            kind,
            end_cause: None,
            stop_pending: false,
            verdict: None,
            parked: false,
            recording: None,
            recoveries: 0,
            checksum_mismatches: 0,
        }
    }
}

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
            Event::UploadRefused409 => "upload_refused_409",
            Event::UploadFailed { .. } => "upload_failed",
            Event::Crashed { .. } => "crashed",
        }
    }

    /// The controller's decision this event reports, if it is one.
    fn verdict(&self) -> Option<Verdict> {
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
    const fn needs_controller(&self) -> bool {
        matches!(
            self,
            Event::CancelledByController { .. }
                | Event::FailedOnController { .. }
                | Event::CompletedOnController
                | Event::LeaseLost
                | Event::UploadStarted
                | Event::UploadAccepted { .. }
                | Event::UploadRefused409
                | Event::UploadFailed { .. }
        )
    }
}

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
    fn cancelled(reason: &str) -> Report {
        Report::Cancelled {
            reason: reason.into(),
        }
    }

    fn failed(reason: &str) -> Report {
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
    StopCapture,
    /// Queue the render of the captured segments.
    Render,
    /// Enqueue the cache-file PUT in the outbox. `attempt` counts re-uploads after a
    /// checksum mismatch: the outbox key is per attempt, so a re-issued `Upload` after a
    /// crash is a no-op and a deliberate re-upload is not.
    Upload { file: RenderedFile, attempt: u32 },
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
            | Action::DropUpload
            | Action::EnqueueReport(_)
            | Action::EnqueueHealthEvent(_)
            | Action::FlagLocalRecording { .. } => true,
            Action::StartCapture | Action::StopCapture | Action::Render => false,
        }
    }
}

/// An event the table has no row for in this state: a bug or a stale event. Log it and
/// change nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("job machine: event {event} is not legal for a {kind} job in state {state}")]
pub struct Illegal {
    pub state: JobState,
    pub kind: JobKind,
    pub event: &'static str,
}

/// The transition table. Read it top to bottom: the first matching row wins.
pub fn transition(m: &MachineState, event: &Event) -> Result<(MachineState, Vec<Action>), Illegal> {
    use Event as E;
    use JobState::*;
    let local = m.kind == JobKind::Local;
    let illegal = || Illegal {
        state: m.state,
        kind: m.kind,
        event: event.name(),
    };
    let next = match (m.state, event) {
        // ── Terminal: every late event is absorbed, with no actions ─────────────────────
        (Delivered | Failed | Cancelled, _) => Next::stay(m),

        // ── A local job has no controller, and is delivered as soon as it is rendered ───
        (_, e) if local && e.needs_controller() => return Err(illegal()),
        (Cached | Uploading, _) if local => return Err(illegal()),

        // ── Crash-loop guard: the restart after MAX_RECOVERIES ends the job ─────────────
        (Claimed, E::Crashed { .. }) if m.recoveries >= MAX_RECOVERIES => {
            Next::end(m, Failed, reason::CRASH_LOOP).health(crash_loop_event(m))
        }
        (_, E::Crashed { .. }) if m.recoveries >= MAX_RECOVERIES => {
            Next::end(m, Failed, reason::CRASH_LOOP)
                .health(crash_loop_event(m))
                .kept(reason::CRASH_LOOP)
        }

        // ── Claimed: nothing captured yet ───────────────────────────────────────────────
        (Claimed, E::Start) => Next::to(m, Capturing).act(Action::StartCapture),
        (
            Claimed,
            E::Crashed {
                window_open: true, ..
            },
        ) => Next::to(m, Capturing).recovered().act(Action::StartCapture),
        (
            Claimed,
            E::Crashed {
                window_open: false, ..
            },
        ) => Next::end(&m.recovered(), Failed, reason::MISSED_WINDOW),
        (Claimed, E::Shutdown) => Next::stay(m),
        (Claimed, E::StopRequested) if local => Next::end(m, Cancelled, reason::STOP_REQUESTED),
        (Claimed, E::StopRequested) => Next::end(m, Cancelled, reason::CONTROLLER_STOP_REQUESTED),
        (Claimed, E::CaptureFailed { detail }) => Next::end(m, Failed, &failed_because(detail))
            .health(failure_event("capture.failed", detail)),
        (
            Claimed,
            E::CancelledByController { .. }
            | E::FailedOnController { .. }
            | E::CompletedOnController
            | E::LeaseLost,
        ) => Next::decided(m.with_verdict(event), None),

        // ── Capturing: only the job's own end paths stop it; the network never does ─────
        (Capturing, E::DurationReached) => Next::to(m, Stopping)
            .cause(reason::DURATION)
            .act(Action::StopCapture),
        (Capturing, E::StopRequested | E::Shutdown) if local => Next::to(m, Stopping)
            .cause(local_stop_cause(event))
            .act(Action::StopCapture),
        (Capturing, E::StopRequested) => Next::to(m, Stopping)
            .stop_pending()
            .cause(reason::CONTROLLER_STOP_REQUESTED)
            .act(Action::StopCapture),
        (Capturing, E::Shutdown) => Next::stay(m).parked().act(Action::StopCapture),
        (Capturing, E::LeaseLost) => Next::stay(&m.with_verdict(event)),
        (
            Capturing,
            E::CancelledByController { .. }
            | E::FailedOnController { .. }
            | E::CompletedOnController,
        ) => Next::to(&m.with_verdict(event), Stopping).act(Action::StopCapture),
        (Capturing, E::DeviceGoneForGood { detail }) => Next::to(m, Stopping)
            .cause(reason::DEVICE_GONE)
            .act(Action::StopCapture)
            .health(failure_event("capture.device_gone", detail)),
        (Capturing, E::CaptureFailed { detail }) => Next::to(m, Stopping)
            .cause(&failed_because(detail))
            .act(Action::StopCapture)
            .health(failure_event("capture.failed", detail)),
        (Capturing, E::Captured { .. }) if m.parked => Next::stay(m),
        (Capturing, E::Captured { has_audio: true }) => Next::to(m, Captured)
            .cause(reason::CAPTURE_ENDED)
            .act(Action::Render),
        (Capturing, E::Captured { has_audio: false }) => {
            Next::no_audio(&m.with_cause(reason::CAPTURE_ENDED))
        }
        (
            Capturing,
            E::Crashed {
                window_open: true, ..
            },
        ) => Next::stay(m).recovered().act(Action::StartCapture),
        (
            Capturing,
            E::Crashed {
                window_open: false,
                has_audio: true,
            },
        ) => Next::to(m, Captured)
            .recovered()
            .cause(reason::CRASH)
            .act(Action::Render),
        (
            Capturing,
            E::Crashed {
                window_open: false,
                has_audio: false,
            },
        ) => Next::no_audio(&m.recovered().with_cause(reason::CRASH)),

        // ── Stopping: the writer is closing the last segment ────────────────────────────
        (
            Stopping,
            E::Captured { has_audio: true }
            | E::Crashed {
                has_audio: true, ..
            },
        ) => Next::to(&m.recovered_if_crash(event), Captured).act(Action::Render),
        (
            Stopping,
            E::Captured { has_audio: false }
            | E::Crashed {
                has_audio: false, ..
            },
        ) => Next::no_audio(&m.recovered_if_crash(event)),
        (Stopping, E::DurationReached | E::Shutdown) => Next::stay(m),
        (Stopping, E::DeviceGoneForGood { detail }) => {
            Next::stay(m).health(failure_event("capture.device_gone", detail))
        }
        (Stopping, E::CaptureFailed { detail }) => {
            Next::stay(m).health(failure_event("capture.failed", detail))
        }

        // ── Controller news while the audio is being finished locally: noted, acted on
        //    once the audio is safe (at Rendered) ────────────────────────────────────────
        (Stopping | Captured | Rendering, E::StopRequested) => Next::stay(m).stop_pending(),
        (
            Stopping | Captured | Rendering,
            E::CancelledByController { .. }
            | E::FailedOnController { .. }
            | E::CompletedOnController
            | E::LeaseLost,
        ) => Next::stay(&m.with_verdict(event)),

        // ── Captured / Rendering: segments -> one recording ─────────────────────────────
        (Captured, E::RenderStarted) => Next::to(m, Rendering),
        (Rendering, E::RenderStarted) => Next::stay(m),
        (Captured | Rendering, E::Rendered(file)) if local => Next::end(
            &m.with_recording(file),
            Delivered,
            m.cause_or(reason::CAPTURE_ENDED),
        ),
        (Captured | Rendering, E::Rendered(file)) if m.verdict.is_some() => {
            let m = m.with_recording(file);
            Next::decided(m.clone(), Some(m.verdict_reason()))
        }
        (Captured | Rendering, E::Rendered(file)) => {
            Next::to(&m.with_recording(file), Cached).act(Action::Upload {
                file: file.clone(),
                attempt: m.checksum_mismatches,
            })
        }
        (Captured | Rendering, E::RenderFailed { detail }) if m.verdict.is_some() => {
            Next::decided(m.clone(), Some(reason::RENDER_FAILED))
                .health(failure_event("render.failed", detail))
        }
        (Captured | Rendering, E::RenderFailed { detail }) => {
            Next::end(m, Failed, reason::RENDER_FAILED)
                .health(failure_event("render.failed", detail))
                .kept(reason::RENDER_FAILED)
        }
        (Captured | Rendering, E::Crashed { .. }) => {
            Next::to(m, Captured).recovered().act(Action::Render)
        }
        (Captured | Rendering, E::Shutdown) => Next::stay(m),

        // ── Cached / Uploading: the recording is safe locally; the PUT decides ──────────
        (Cached, E::UploadStarted) => Next::to(m, Uploading),
        (Uploading, E::UploadStarted) => Next::stay(m),
        (
            Cached | Uploading,
            E::UploadAccepted {
                checksum_matches: true,
            },
        ) if m.stop_pending => Next::end(m, Delivered, m.cause_or(reason::CAPTURE_ENDED))
            .report(Report::cancelled(reason::CONTROLLER_STOP_REQUESTED)),
        (
            Cached | Uploading,
            E::UploadAccepted {
                checksum_matches: true,
            },
        ) => Next::end(m, Delivered, m.cause_or(reason::CAPTURE_ENDED)).report(Report::Completed),
        (
            Cached | Uploading,
            E::UploadAccepted {
                checksum_matches: false,
            },
        ) if m.checksum_mismatches + 1 >= MAX_CHECKSUM_MISMATCHES => {
            // The PUT completed the job on the controller: a `failed` post would be a 404.
            Next::end(m, Failed, reason::CHECKSUM_MISMATCH)
                .report(Report::ControllerDecided)
                .health(checksum_event(m))
                .kept(reason::CHECKSUM_MISMATCH)
        }
        (
            Cached | Uploading,
            E::UploadAccepted {
                checksum_matches: false,
            },
        ) => Next::upload_again(&m.mismatched()).health(checksum_event(m)),
        (Cached | Uploading, E::UploadRefused409) => Next::end(m, Failed, reason::UPLOAD_REFUSED)
            .report(Report::ControllerDecided)
            .kept(reason::UPLOAD_REFUSED),
        (
            Cached | Uploading,
            E::UploadFailed {
                retryable: true, ..
            },
        ) => Next::stay(m),
        (
            Cached | Uploading,
            E::UploadFailed {
                retryable: false,
                detail,
            },
        ) => Next::end(m, Failed, reason::UPLOAD_REJECTED)
            .health(failure_event("upload.rejected", detail))
            .kept(reason::UPLOAD_REJECTED),
        (Cached | Uploading, E::StopRequested) => Next::stay(m).stop_pending(),
        // Perhaps our own earlier PUT: the retried PUT answers 201 with the checksum.
        (Cached | Uploading, E::CompletedOnController) => Next::stay(m),
        (
            Cached | Uploading,
            E::CancelledByController { .. } | E::FailedOnController { .. } | E::LeaseLost,
        ) => {
            let m = m.with_verdict(event);
            Next::decided(m.clone(), Some(m.verdict_reason())).act(Action::DropUpload)
        }
        (Cached | Uploading, E::Crashed { .. }) => Next::upload_again(&m.recovered()),
        (Cached | Uploading, E::Shutdown) => Next::stay(m),

        _ => return Err(illegal()),
    };
    Ok((next.m, next.actions))
}

// ── The pieces the table is built from ──────────────────────────────────────────────────

/// A transition being built: the new state and its actions, in order.
struct Next {
    m: MachineState,
    actions: Vec<Action>,
}

impl Next {
    fn stay(m: &MachineState) -> Next {
        Next {
            m: m.clone(),
            actions: Vec::new(),
        }
    }

    /// Moves to `state`; leaving `Capturing` un-parks.
    fn to(m: &MachineState, state: JobState) -> Next {
        let mut next = Next::stay(m);
        if state != m.state {
            next.m.parked = false;
        }
        next.m.state = state;
        next
    }

    /// The only way into a terminal state: sets the end cause and queues the one report.
    /// By default the report says what happened (`failed`/`cancelled` with `why`, or
    /// `completed`), or nothing once the controller has decided; [`Next::report`]
    /// overrides it. A local job's report is always `Local`.
    fn end(m: &MachineState, state: JobState, why: &str) -> Next {
        let mut next = Next::to(m, state);
        next.m.end_cause = Some(why.to_string());
        next.actions.push(Action::EnqueueReport(match state {
            _ if m.verdict.is_some() => Report::ControllerDecided,
            JobState::Cancelled => Report::cancelled(why),
            JobState::Failed => Report::failed(why),
            _ => Report::Completed,
        }));
        next.localize_report()
    }

    /// Replaces the report queued by [`Next::end`].
    fn report(mut self, report: Report) -> Next {
        for a in &mut self.actions {
            if let Action::EnqueueReport(r) = a {
                *r = report.clone();
            }
        }
        self.localize_report()
    }

    fn localize_report(mut self) -> Next {
        if self.m.kind == JobKind::Local {
            for a in &mut self.actions {
                if let Action::EnqueueReport(r) = a {
                    *r = Report::Local;
                }
            }
        }
        self
    }

    /// The controller already ended the job (`m.verdict` is set): end in its terminal
    /// state, report nothing; `kept` names why audio stays local, when there is audio.
    fn decided(m: MachineState, kept: Option<&str>) -> Next {
        let (state, why) = match &m.verdict {
            Some(v) => v.terminal(),
            None => (JobState::Failed, reason::UPLOAD_REFUSED),
        };
        let next = Next::end(&m, state, why).report(Report::ControllerDecided);
        match kept {
            Some(reason) => next.kept(reason),
            None => next,
        }
    }

    /// Capture ended without a single frame: nothing to render or upload.
    fn no_audio(m: &MachineState) -> Next {
        if m.verdict.is_some() {
            return Next::decided(m.clone(), None);
        }
        if m.stop_pending {
            return Next::end(m, JobState::Cancelled, reason::CONTROLLER_STOP_REQUESTED);
        }
        let why = match m.end_cause.as_deref() {
            Some(c) if c == reason::DEVICE_GONE || c.starts_with(reason::CAPTURE_FAILED) => c,
            _ => reason::NO_AUDIO,
        };
        Next::end(m, JobState::Failed, why)
    }

    /// (Re-)enqueues the upload of the rendered file, or re-renders when the file is not
    /// known (a job resumed from a row without its facts).
    fn upload_again(m: &MachineState) -> Next {
        match &m.recording {
            Some(file) => Next::to(m, JobState::Cached).act(Action::Upload {
                file: file.clone(),
                attempt: m.checksum_mismatches,
            }),
            None => Next::to(m, JobState::Captured).act(Action::Render),
        }
    }

    fn act(mut self, action: Action) -> Next {
        self.actions.push(action);
        self
    }

    /// A health event for the controller; a local job has no one to send it to.
    fn health(self, event: Alert) -> Next {
        if self.m.kind == JobKind::Local {
            return self;
        }
        self.act(Action::EnqueueHealthEvent(event))
    }

    /// The audio stays in the local library, undelivered: flag it, and say so.
    fn kept(self, why: &str) -> Next {
        let mut event = Alert::new("agent.recording.kept_locally", AlertLevel::Warning);
        event.details.insert("reason".into(), Value::from(why));
        self.act(Action::FlagLocalRecording {
            reason: why.to_string(),
        })
        .health(event)
    }

    fn cause(mut self, why: &str) -> Next {
        self.m = self.m.with_cause(why);
        self
    }

    fn stop_pending(mut self) -> Next {
        if self.m.kind == JobKind::Controller {
            self.m.stop_pending = true;
        }
        self
    }

    fn parked(mut self) -> Next {
        self.m.parked = true;
        self
    }

    fn recovered(mut self) -> Next {
        self.m = self.m.recovered();
        self
    }
}

impl MachineState {
    /// Keeps the first end cause: the one that actually ended capture.
    fn with_cause(&self, why: &str) -> MachineState {
        let mut m = self.clone();
        m.end_cause.get_or_insert_with(|| why.to_string());
        m
    }

    fn cause_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.end_cause.as_deref().unwrap_or(default)
    }

    /// Keeps the first verdict: the controller's transitions are compare-and-set, so a
    /// second, different one is noise.
    fn with_verdict(&self, event: &Event) -> MachineState {
        let mut m = self.clone();
        if m.verdict.is_none() {
            m.verdict = event.verdict();
        }
        m
    }

    fn verdict_reason(&self) -> &str {
        self.verdict
            .as_ref()
            .map_or(reason::UPLOAD_REFUSED, |v| v.terminal().1)
    }

    fn with_recording(&self, file: &RenderedFile) -> MachineState {
        let mut m = self.clone();
        m.recording = Some(file.clone());
        m
    }

    fn recovered(&self) -> MachineState {
        let mut m = self.clone();
        m.recoveries = m.recoveries.saturating_add(1);
        m.parked = false;
        m
    }

    fn recovered_if_crash(&self, event: &Event) -> MachineState {
        match event {
            Event::Crashed { .. } => self.recovered(),
            _ => self.clone(),
        }
    }

    fn mismatched(&self) -> MachineState {
        let mut m = self.clone();
        m.checksum_mismatches = m.checksum_mismatches.saturating_add(1);
        m
    }
}

fn local_stop_cause(event: &Event) -> &'static str {
    match event {
        Event::Shutdown => reason::SHUTDOWN,
        _ => reason::STOP_REQUESTED,
    }
}

/// A capture failure's reason for the controller: the kind, then what the device said.
fn failed_because(detail: &str) -> String {
    format!("{}: {detail}", reason::CAPTURE_FAILED)
}

fn failure_event(what: &str, detail: &str) -> Alert {
    let mut event = Alert::new(format!("agent.{what}"), AlertLevel::Critical);
    event.details.insert("detail".into(), Value::from(detail));
    event
}

fn crash_loop_event(m: &MachineState) -> Alert {
    let mut event = Alert::new("agent.job.crash_loop", AlertLevel::Critical);
    let mut details = Map::new();
    details.insert("state".into(), Value::from(m.state.name()));
    details.insert("recoveries".into(), Value::from(m.recoveries));
    event.details = details;
    event
}

fn checksum_event(m: &MachineState) -> Alert {
    let mut event = Alert::new("agent.upload.checksum_mismatch", AlertLevel::Warning);
    event
        .details
        .insert("mismatches".into(), Value::from(m.checksum_mismatches + 1));
    event
}

#[cfg(test)]
mod tests;
