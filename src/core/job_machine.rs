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
mod tests {
    use super::*;
    use Event as E;
    use JobState::*;
    use std::collections::{HashSet, VecDeque};

    // ── A small world around the machine ────────────────────────────────────────────────
    //
    // It plays the capture role, the renderer and the controller: it answers the actions
    // the way those parts would, and injects the faults a row asks for. A crash drops what
    // the dead process had in flight (its side effects and their answers), keeps what was
    // journaled with the state, and feeds the janitor's `Crashed`.

    /// How the controller answers one cache-file PUT.
    #[derive(Clone, Copy, Debug)]
    enum Put {
        Accept,
        Mismatch,
        Refuse409,
        Retry5xx,
        Reject400,
    }

    #[derive(Clone, Debug)]
    struct World {
        /// Events that happen regardless of the agent (controller, operator, clock).
        script: Vec<Event>,
        /// When the job first enters the state, this event comes next.
        inject: Vec<(JobState, Event)>,
        /// The agent dies the first time the job enters this state (after saving it,
        /// before its side effects ran).
        crash_in_state: Option<JobState>,
        /// Whether the job's window is still open when the janitor finds a crash.
        window_open_after_crash: bool,
        /// Whether the writer wrote any frame.
        has_audio: bool,
        render_ok: bool,
        /// Successive PUT answers; past the end, `Accept`.
        puts: Vec<Put>,
    }

    impl Default for World {
        fn default() -> World {
            World {
                script: Vec::new(),
                inject: Vec::new(),
                crash_in_state: None,
                window_open_after_crash: true,
                has_audio: true,
                render_ok: true,
                puts: Vec::new(),
            }
        }
    }

    #[derive(Debug)]
    enum Item {
        /// From the script or an injection: survives a crash.
        World(Event),
        /// An answer to a side effect of the running process: lost in a crash.
        Answer(Event),
        /// The start of a PUT for an upload attempt: lost in a crash (the row is re-sent).
        PutStarted(u32),
        /// The controller's answer to that PUT, drawn from `World::puts` when it arrives.
        PutAnswer(u32),
    }

    #[derive(Debug)]
    struct Trace {
        end: MachineState,
        /// Every action issued (a crash drops the side effects, not the journal writes).
        actions: Vec<Action>,
        /// Actions issued after the job was terminal (must stay empty).
        after_terminal: Vec<Action>,
        crashes: u32,
    }

    impl Trace {
        fn reports(&self) -> Vec<&Report> {
            self.actions
                .iter()
                .filter_map(|a| match a {
                    Action::EnqueueReport(r) => Some(r),
                    _ => None,
                })
                .collect()
        }

        fn health(&self) -> Vec<&str> {
            self.actions
                .iter()
                .filter_map(|a| match a {
                    Action::EnqueueHealthEvent(e) => Some(e.kind.as_str()),
                    _ => None,
                })
                .collect()
        }

        fn flags(&self) -> Vec<&str> {
            self.actions
                .iter()
                .filter_map(|a| match a {
                    Action::FlagLocalRecording { reason } => Some(reason.as_str()),
                    _ => None,
                })
                .collect()
        }

        fn position(&self, f: impl Fn(&Action) -> bool) -> Option<usize> {
            self.actions.iter().position(f)
        }

        fn uploads(&self) -> usize {
            self.actions
                .iter()
                .filter(|a| matches!(a, Action::Upload { .. }))
                .count()
        }
    }

    fn file() -> RenderedFile {
        RenderedFile {
            path: PathBuf::from("/var/lib/edgerec/jobs/j/recording.wav"),
            sha256: "ab".repeat(32),
            bytes: 1_234_567,
        }
    }

    const MAX_STEPS: usize = 500;

    /// Runs `world` against the machine from `start` until the job is terminal. When
    /// nothing is left to happen and the job is not terminal, the box restarts after the
    /// window closed: the janitor's `Crashed`. An illegal event is an `Err`.
    fn simulate(start: MachineState, world: &World) -> Result<Trace, String> {
        let mut m = start;
        let mut queue: VecDeque<Item> = world.script.iter().cloned().map(Item::World).collect();
        let mut puts = world.puts.iter().copied();
        let mut entered: HashSet<JobState> = HashSet::new();
        // Upload attempts the sync role has sent, or finished: the outbox key dedupes them.
        let mut in_flight: HashSet<u32> = HashSet::new();
        let mut done: HashSet<u32> = HashSet::new();
        let mut trace = Trace {
            end: m.clone(),
            actions: Vec::new(),
            after_terminal: Vec::new(),
            crashes: 0,
        };
        // What happens when the job first enters `s`: the row's injected event, and before
        // it, the crash (the agent dies right after saving `s`). Returns whether it crashed.
        let on_enter =
            |s: JobState, entered: &mut HashSet<JobState>, queue: &mut VecDeque<Item>| {
                if !entered.insert(s) {
                    return false;
                }
                if let Some((_, e)) = world.inject.iter().find(|(st, _)| *st == s) {
                    queue.push_front(Item::World(e.clone()));
                }
                let crash = world.crash_in_state == Some(s);
                if crash {
                    queue.push_front(Item::World(E::Crashed {
                        window_open: world.window_open_after_crash,
                        has_audio: world.has_audio,
                    }));
                }
                crash
            };
        on_enter(m.state, &mut entered, &mut queue);
        for _ in 0..MAX_STEPS {
            let item = match queue.pop_front() {
                Some(i) => i,
                None if m.state.is_terminal() => {
                    trace.end = m;
                    return Ok(trace);
                }
                None => Item::World(E::Crashed {
                    window_open: false,
                    has_audio: world.has_audio,
                }),
            };
            let (event, attempt) = match item {
                Item::World(e) | Item::Answer(e) => (e, None),
                Item::PutStarted(a) => (E::UploadStarted, Some(a)),
                Item::PutAnswer(a) => {
                    let answer = match puts.next().unwrap_or(Put::Accept) {
                        Put::Accept => E::UploadAccepted {
                            checksum_matches: true,
                        },
                        Put::Mismatch => E::UploadAccepted {
                            checksum_matches: false,
                        },
                        Put::Refuse409 => E::UploadRefused409,
                        Put::Retry5xx => {
                            // The outbox tries the row again.
                            queue.push_front(Item::PutAnswer(a));
                            E::UploadFailed {
                                retryable: true,
                                detail: "503".into(),
                            }
                        }
                        Put::Reject400 => E::UploadFailed {
                            retryable: false,
                            detail: "400 bad duration".into(),
                        },
                    };
                    (answer, Some(a))
                }
            };
            // The capture role reports these only while it captures: after a crash that
            // ended capture, they never come.
            let capture_side = match event {
                E::Start => Some(&[Claimed][..]),
                E::DurationReached | E::DeviceGoneForGood { .. } => Some(&[Capturing][..]),
                _ => None,
            };
            if capture_side.is_some_and(|states| !states.contains(&m.state))
                && !m.state.is_terminal()
            {
                continue;
            }
            if matches!(event, E::Crashed { .. }) {
                // The dead process's work in flight is gone; the outbox rows are not.
                trace.crashes += 1;
                queue.retain(|i| matches!(i, Item::World(_)));
                in_flight.clear();
            }
            let was_terminal = m.state.is_terminal();
            let (next, actions) =
                transition(&m, &event).map_err(|e| format!("{e} (after {:?})", trace.actions))?;
            if next.verdict.is_some() && actions.iter().any(|a| matches!(a, Action::Upload { .. }))
            {
                return Err(format!("upload after a verdict: {event:?} in {m:?}"));
            }
            let final_answer = matches!(
                event,
                E::UploadAccepted { .. }
                    | E::UploadRefused409
                    | E::UploadFailed {
                        retryable: false,
                        ..
                    }
            );
            if let (Some(a), true) = (attempt, final_answer) {
                in_flight.remove(&a);
                done.insert(a);
            }
            let moved = next.state != m.state;
            m = next;
            if was_terminal {
                trace.after_terminal.extend(actions);
                continue;
            }
            let crashed = moved && on_enter(m.state, &mut entered, &mut queue);
            for a in actions {
                // A crash right after this save loses the side effects, not the journal.
                if crashed && !a.is_journal_write() {
                    continue;
                }
                match &a {
                    Action::StopCapture if !m.parked => {
                        queue.push_back(Item::Answer(E::Captured {
                            has_audio: world.has_audio,
                        }));
                    }
                    Action::Render => {
                        queue.push_back(Item::Answer(E::RenderStarted));
                        queue.push_back(Item::Answer(if world.render_ok {
                            E::Rendered(file())
                        } else {
                            E::RenderFailed {
                                detail: "stitch: bad segment".into(),
                            }
                        }));
                    }
                    Action::Upload { attempt, .. }
                        if !in_flight.contains(attempt) && !done.contains(attempt) =>
                    {
                        in_flight.insert(*attempt);
                        queue.push_back(Item::PutStarted(*attempt));
                        queue.push_back(Item::PutAnswer(*attempt));
                    }
                    _ => {}
                }
                trace.actions.push(a);
            }
        }
        Err(format!("no terminal state after {MAX_STEPS} steps: {m:?}"))
    }

    fn run(kind: JobKind, world: &World) -> Trace {
        simulate(MachineState::new(kind), world).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cancelled(reason: &str) -> Report {
        Report::cancelled(reason)
    }

    fn failed(reason: &str) -> Report {
        Report::failed(reason)
    }

    // ── The table of scenarios (STYLE.md 8: fault fields) ───────────────────────────────

    struct Row {
        name: &'static str,
        kind: JobKind,
        world: World,
        state: JobState,
        cause: &'static str,
        report: Report,
        health: &'static [&'static str],
        flag: Option<&'static str>,
        uploads: usize,
    }

    const KEPT: &str = "agent.recording.kept_locally";

    fn rows() -> Vec<Row> {
        use JobKind::{Controller, Local};
        let script = |events: &[Event]| events.to_vec();
        vec![
            Row {
                name: "duration reached, upload accepted",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: Report::Completed,
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "stop mid-capture: the partial is uploaded, then cancelled is posted",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::StopRequested]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::CONTROLLER_STOP_REQUESTED,
                report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "stop while uploading: cancelled follows the accepted upload",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    inject: vec![(Uploading, E::StopRequested)],
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "stop before any frame: cancelled, nothing to upload",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::StopRequested]),
                    has_audio: false,
                    ..World::default()
                },
                state: Cancelled,
                cause: reason::CONTROLLER_STOP_REQUESTED,
                report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "stop before capture started",
                kind: Controller,
                world: World {
                    script: script(&[E::StopRequested]),
                    ..World::default()
                },
                state: Cancelled,
                cause: reason::CONTROLLER_STOP_REQUESTED,
                report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "cancel mid-capture: finalized locally, kept, no report",
                kind: Controller,
                world: World {
                    script: script(&[
                        E::Start,
                        E::CancelledByController {
                            reason: "operator".into(),
                        },
                    ]),
                    ..World::default()
                },
                state: Cancelled,
                cause: "operator",
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some("operator"),
                uploads: 0,
            },
            Row {
                name: "failed on the controller mid-capture: finalized locally, no report",
                kind: Controller,
                world: World {
                    script: script(&[
                        E::Start,
                        E::FailedOnController {
                            reason: "operator_failed".into(),
                        },
                    ]),
                    ..World::default()
                },
                state: Failed,
                cause: "operator_failed",
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some("operator_failed"),
                uploads: 0,
            },
            Row {
                name: "completed on the controller mid-capture: kept, no report",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::CompletedOnController]),
                    ..World::default()
                },
                state: Cancelled,
                cause: reason::CONTROLLER_COMPLETED,
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some(reason::CONTROLLER_COMPLETED),
                uploads: 0,
            },
            Row {
                name: "lease lost mid-capture: capture runs to its duration, kept, no upload",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::LeaseLost, E::DurationReached]),
                    ..World::default()
                },
                state: Failed,
                cause: reason::LEASE_EXPIRED,
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some(reason::LEASE_EXPIRED),
                uploads: 0,
            },
            Row {
                name: "lease lost during outage, upload refused 409: kept once, failed(lease_expired)",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    // The PUT answers 409; the GET that follows says lease_expired.
                    inject: vec![(Uploading, E::LeaseLost)],
                    puts: vec![Put::Refuse409],
                    ..World::default()
                },
                state: Failed,
                cause: reason::LEASE_EXPIRED,
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some(reason::LEASE_EXPIRED),
                uploads: 1,
            },
            Row {
                name: "upload refused 409, reason unknown: kept, no report",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    puts: vec![Put::Refuse409],
                    ..World::default()
                },
                state: Failed,
                cause: reason::UPLOAD_REFUSED,
                report: Report::ControllerDecided,
                health: &[KEPT],
                flag: Some(reason::UPLOAD_REFUSED),
                uploads: 1,
            },
            Row {
                name: "controller 5xx twice, then accepted: delivered",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    puts: vec![Put::Retry5xx, Put::Retry5xx, Put::Accept],
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: Report::Completed,
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "upload rejected 400: failed report, kept",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    puts: vec![Put::Reject400],
                    ..World::default()
                },
                state: Failed,
                cause: reason::UPLOAD_REJECTED,
                report: failed(reason::UPLOAD_REJECTED),
                health: &["agent.upload.rejected", KEPT],
                flag: Some(reason::UPLOAD_REJECTED),
                uploads: 1,
            },
            Row {
                name: "checksum mismatch once: uploaded again, delivered",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    puts: vec![Put::Mismatch, Put::Accept],
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: Report::Completed,
                health: &["agent.upload.checksum_mismatch"],
                flag: None,
                uploads: 2,
            },
            Row {
                name: "checksum never matches: failed, kept, nothing posted",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    puts: vec![Put::Mismatch; 5],
                    ..World::default()
                },
                state: Failed,
                cause: reason::CHECKSUM_MISMATCH,
                report: Report::ControllerDecided,
                health: &[
                    "agent.upload.checksum_mismatch",
                    "agent.upload.checksum_mismatch",
                    "agent.upload.checksum_mismatch",
                    KEPT,
                ],
                flag: Some(reason::CHECKSUM_MISMATCH),
                uploads: 3,
            },
            Row {
                name: "render failure: failed report, audio kept",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    render_ok: false,
                    ..World::default()
                },
                state: Failed,
                cause: reason::RENDER_FAILED,
                report: failed(reason::RENDER_FAILED),
                health: &["agent.render.failed", KEPT],
                flag: Some(reason::RENDER_FAILED),
                uploads: 0,
            },
            Row {
                name: "device gone for good: the partial is delivered",
                kind: Controller,
                world: World {
                    script: script(&[
                        E::Start,
                        E::DeviceGoneForGood {
                            detail: "usb-1.2 ENODEV".into(),
                        },
                    ]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DEVICE_GONE,
                report: Report::Completed,
                health: &["agent.capture.device_gone"],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "device gone before any frame: failed(device_gone)",
                kind: Controller,
                world: World {
                    script: script(&[
                        E::Start,
                        E::DeviceGoneForGood {
                            detail: "usb-1.2 ENODEV".into(),
                        },
                    ]),
                    has_audio: false,
                    ..World::default()
                },
                state: Failed,
                cause: reason::DEVICE_GONE,
                report: failed(reason::DEVICE_GONE),
                health: &["agent.capture.device_gone"],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "capture cannot start: failed(capture_failed)",
                kind: Controller,
                world: World {
                    script: script(&[E::CaptureFailed {
                        detail: "bad command".into(),
                    }]),
                    ..World::default()
                },
                state: Failed,
                // The reason names what the device said, so the operator sees why.
                cause: "capture_failed: bad command",
                report: failed("capture_failed: bad command"),
                health: &["agent.capture.failed"],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "shutdown mid-capture parks; after the window the janitor finalizes",
                kind: Controller,
                world: World {
                    script: script(&[E::Start, E::Shutdown]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::CRASH,
                report: Report::Completed,
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "shutdown mid-capture, restart inside the window: capture resumes",
                kind: Controller,
                world: World {
                    script: script(&[
                        E::Start,
                        E::Shutdown,
                        E::Crashed {
                            window_open: true,
                            has_audio: true,
                        },
                        E::DurationReached,
                    ]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: Report::Completed,
                health: &[],
                flag: None,
                uploads: 1,
            },
            Row {
                name: "crash before start, window closed: failed(missed_window)",
                kind: Controller,
                world: World {
                    crash_in_state: Some(Claimed),
                    window_open_after_crash: false,
                    ..World::default()
                },
                state: Failed,
                cause: reason::MISSED_WINDOW,
                report: failed(reason::MISSED_WINDOW),
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "local job: duration, rendered into the output directory",
                kind: Local,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::DURATION,
                report: Report::Local,
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "local job: SIGTERM stops and delivers what was captured",
                kind: Local,
                world: World {
                    script: script(&[E::Start, E::Shutdown]),
                    ..World::default()
                },
                state: Delivered,
                cause: reason::SHUTDOWN,
                report: Report::Local,
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "local job: no audio at all ends failed",
                kind: Local,
                world: World {
                    script: script(&[E::Start, E::StopRequested]),
                    has_audio: false,
                    ..World::default()
                },
                state: Failed,
                cause: reason::NO_AUDIO,
                report: Report::Local,
                health: &[],
                flag: None,
                uploads: 0,
            },
            Row {
                name: "local job: render failure keeps the segments, flagged",
                kind: Local,
                world: World {
                    script: script(&[E::Start, E::DurationReached]),
                    render_ok: false,
                    ..World::default()
                },
                state: Failed,
                cause: reason::RENDER_FAILED,
                report: Report::Local,
                health: &[],
                flag: Some(reason::RENDER_FAILED),
                uploads: 0,
            },
        ]
    }

    fn check_row(row: &Row, trace: &Trace, label: &str) {
        assert_eq!(trace.end.state, row.state, "{label}: final state");
        assert_eq!(
            trace.end.end_cause.as_deref(),
            Some(row.cause),
            "{label}: end cause"
        );
        assert_eq!(
            trace.reports(),
            [&row.report],
            "{label}: exactly one report"
        );
        assert_eq!(trace.health(), row.health, "{label}: health events");
        let flags = trace.flags();
        assert_eq!(flags.first().copied(), row.flag, "{label}: flag");
        assert!(flags.len() <= 1, "{label}: flagged twice: {flags:?}");
        assert!(trace.after_terminal.is_empty(), "{label}");
    }

    #[test]
    fn scenarios() {
        for row in rows() {
            let trace = run(row.kind, &row.world);
            check_row(&row, &trace, row.name);
            assert_eq!(trace.uploads(), row.uploads, "{}: uploads", row.name);
        }
    }

    /// Each scenario again, with the agent crashing in each state the scenario passes
    /// through (after saving it, before its side effects ran), the janitor finding the
    /// window still open. The outcome must not change, save the end cause of a crash that
    /// ended capture, and the health events a re-run re-issues.
    #[test]
    fn scenarios_survive_a_crash_in_each_state() {
        for row in rows() {
            let clean = run(row.kind, &row.world);
            for crash_in in [
                Claimed, Capturing, Stopping, Captured, Rendering, Cached, Uploading,
            ] {
                let world = World {
                    crash_in_state: Some(crash_in),
                    ..row.world.clone()
                };
                let label = format!("{} / crash in {crash_in}", row.name);
                let trace = simulate(MachineState::new(row.kind), &world)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(trace.reports().len(), 1, "{label}: {:?}", trace.actions);
                assert!(trace.after_terminal.is_empty(), "{label}");
                if trace.crashes == 0 || row.world.crash_in_state.is_some() {
                    check_row(&row, &trace, &label);
                    continue;
                }
                // A crash before the job started resumes it first, so what the row does
                // next meets a capturing job: a different, equally legal story.
                if crash_in == Claimed {
                    continue;
                }
                assert_eq!(trace.end.state, clean.end.state, "{label}: final state");
                assert_eq!(trace.reports(), clean.reports(), "{label}: report");
                assert!(trace.flags().len() <= 1, "{label}: {:?}", trace.flags());
                assert_eq!(trace.flags(), clean.flags(), "{label}: flag");
            }
        }
    }

    #[test]
    fn stop_uploads_the_partial_before_the_cancel_report() {
        let world = World {
            script: vec![E::Start, E::StopRequested],
            ..World::default()
        };
        let trace = run(JobKind::Controller, &world);
        let upload = trace.position(|a| matches!(a, Action::Upload { .. }));
        let report = trace.position(|a| {
            *a == Action::EnqueueReport(cancelled(reason::CONTROLLER_STOP_REQUESTED))
        });
        assert!(
            matches!((upload, report), (Some(u), Some(r)) if u < r),
            "{:?}",
            trace.actions
        );
    }

    #[test]
    fn crash_in_each_capture_state_then_janitor_finalizes() {
        // (crash in, window still open?, final state, end cause)
        let table = [
            (Claimed, true, Delivered, reason::DURATION),
            (Claimed, false, Failed, reason::MISSED_WINDOW),
            (Capturing, true, Delivered, reason::DURATION),
            (Capturing, false, Delivered, reason::CRASH),
            (Stopping, true, Delivered, reason::DURATION),
            (Stopping, false, Delivered, reason::DURATION),
            (Captured, false, Delivered, reason::DURATION),
            (Rendering, false, Delivered, reason::DURATION),
            (Cached, false, Delivered, reason::DURATION),
            (Uploading, false, Delivered, reason::DURATION),
        ];
        for (crash_in, window_open, state, cause) in table {
            let world = World {
                script: vec![E::Start, E::DurationReached],
                crash_in_state: Some(crash_in),
                window_open_after_crash: window_open,
                ..World::default()
            };
            let label = format!("crash in {crash_in}, window open {window_open}");
            let trace = simulate(MachineState::new(JobKind::Controller), &world)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(trace.crashes, 1, "{label}");
            assert_eq!(trace.end.state, state, "{label}");
            assert_eq!(trace.end.end_cause.as_deref(), Some(cause), "{label}");
            assert_eq!(trace.end.recoveries, 1, "{label}");
            assert_eq!(trace.reports().len(), 1, "{label}");
            // The upload row is keyed per attempt: a re-issued Upload is one PUT.
            assert!(trace.uploads() <= 2, "{label}");
        }
    }

    // ── The invariant, over every state and every end path ──────────────────────────────

    /// A job brought to `state` the way the table would, with optional facts.
    fn reached(
        kind: JobKind,
        state: JobState,
        stop_pending: bool,
        lease_lost: bool,
    ) -> MachineState {
        let mut m = MachineState::at(state, kind);
        if kind == JobKind::Controller {
            m.stop_pending = stop_pending && state != Claimed;
            // A lost lease only survives, unacted on, until the audio is rendered.
            if lease_lost && matches!(state, Capturing | Stopping | Captured | Rendering) {
                m.verdict = Some(Verdict::Failed {
                    reason: reason::LEASE_EXPIRED.into(),
                });
            }
        }
        if state != Claimed && state != Capturing {
            m.end_cause = Some(reason::DURATION.into());
        }
        if matches!(state, Cached | Uploading) {
            m.recording = Some(file());
        }
        m
    }

    fn end_paths() -> Vec<Event> {
        vec![
            E::DurationReached,
            E::StopRequested,
            E::Shutdown,
            E::CancelledByController {
                reason: "operator".into(),
            },
            E::FailedOnController {
                reason: "operator_failed".into(),
            },
            E::CompletedOnController,
            E::LeaseLost,
            E::DeviceGoneForGood {
                detail: "gone".into(),
            },
            E::CaptureFailed {
                detail: "broken".into(),
            },
            E::UploadRefused409,
            E::UploadFailed {
                retryable: false,
                detail: "413".into(),
            },
            E::Crashed {
                window_open: true,
                has_audio: true,
            },
            E::Crashed {
                window_open: false,
                has_audio: true,
            },
            E::Crashed {
                window_open: false,
                has_audio: false,
            },
        ]
    }

    /// One run of the invariant test: a job brought to some state, one end path, and the
    /// world's answers and faults.
    struct Case {
        label: String,
        start: MachineState,
        world: World,
    }

    /// Every non-terminal state (with and without a pending stop or a lost lease), every
    /// legal end-path event, and every way the PUT, the render and a crash can go.
    fn end_path_cases() -> Vec<Case> {
        let put_scripts: [&[Put]; 6] = [
            &[],
            &[Put::Retry5xx],
            &[Put::Mismatch],
            &[Put::Mismatch; 3],
            &[Put::Refuse409],
            &[Put::Reject400],
        ];
        let outcomes = [(true, true), (true, false), (false, true)]; // (has_audio, render_ok)
        let crashes = [None, Some(Capturing), Some(Rendering), Some(Uploading)];
        let mut cases = Vec::new();
        for kind in [JobKind::Controller, JobKind::Local] {
            for state in JobState::ALL.into_iter().filter(|s| !s.is_terminal()) {
                if kind == JobKind::Local && matches!(state, Cached | Uploading) {
                    continue; // a local job is delivered when rendered
                }
                for (stop, lease_lost) in [(false, false), (true, false), (false, true)] {
                    let start = reached(kind, state, stop, lease_lost);
                    for event in end_paths() {
                        if transition(&start, &event).is_err() {
                            continue; // the property is about legal sequences
                        }
                        for (puts, (has_audio, render_ok), crash_in) in put_scripts
                            .iter()
                            .flat_map(|p| outcomes.iter().map(move |o| (p, o)))
                            .flat_map(|(p, o)| crashes.iter().map(move |c| (p, o, c)))
                        {
                            if matches!(event, E::Crashed { has_audio: h, .. } if h != *has_audio) {
                                continue; // the janitor and the writer agree on the audio
                            }
                            cases.push(Case {
                                label: format!(
                                    "{kind} {state} stop={stop} lease_lost={lease_lost} \
                                     {event:?} puts={puts:?} audio={has_audio} \
                                     render={render_ok} crash={crash_in:?}"
                                ),
                                start: start.clone(),
                                world: World {
                                    script: vec![event.clone()],
                                    crash_in_state: *crash_in,
                                    has_audio: *has_audio,
                                    render_ok: *render_ok,
                                    puts: puts.to_vec(),
                                    ..World::default()
                                },
                            });
                        }
                    }
                }
            }
        }
        cases
    }

    fn check_invariants(case: &Case, t: &Trace) {
        let label = &case.label;
        assert!(t.end.state.is_terminal(), "{label}");
        let reports = t.reports();
        assert_eq!(reports.len(), 1, "{label}: {:?}", t.actions);
        assert!(t.after_terminal.is_empty(), "{label}");
        if case.start.kind == JobKind::Local {
            assert_eq!(reports[0], &Report::Local, "{label}");
            assert_eq!(t.uploads(), 0, "{label}");
            assert!(t.health().is_empty(), "{label}");
        } else {
            assert_ne!(reports[0], &Report::Local, "{label}");
        }
        // Undelivered audio is flagged exactly once; delivered or absent audio never is.
        let audio = match case.start.state {
            Claimed => case.world.has_audio && t.actions.contains(&Action::StartCapture),
            Capturing | Stopping => case.world.has_audio,
            _ => true,
        };
        let undelivered = audio && t.end.state != Delivered;
        assert_eq!(
            t.flags().len(),
            usize::from(undelivered),
            "{label}: {:?}",
            t.actions
        );
        // A controller that already decided is never answered with a post.
        if t.end.verdict.is_some() {
            assert_eq!(reports[0], &Report::ControllerDecided, "{label}");
        }
        // The cancel for a stop is queued after every upload.
        let stop_report = Action::EnqueueReport(cancelled(reason::CONTROLLER_STOP_REQUESTED));
        if let Some(r) = t.position(|a| *a == stop_report) {
            let last_upload = t
                .actions
                .iter()
                .rposition(|a| matches!(a, Action::Upload { .. }));
            assert!(last_upload.is_none_or(|u| u < r), "{label}");
        }
    }

    #[test]
    fn every_end_path_reaches_one_terminal() {
        let cases = end_path_cases();
        assert!(cases.len() > 10_000, "only {} cases", cases.len());
        let mut crashed = 0;
        for case in &cases {
            let trace = simulate(case.start.clone(), &case.world)
                .unwrap_or_else(|e| panic!("{}: {e}", case.label));
            check_invariants(case, &trace);
            crashed += usize::from(trace.crashes > 0);
        }
        assert!(
            crashed > cases.len() / 4,
            "{crashed} of {} crashed",
            cases.len()
        );
    }

    #[test]
    fn terminal_states_absorb_every_event() {
        let mut events = end_paths();
        events.extend([
            E::Start,
            E::Captured { has_audio: true },
            E::RenderStarted,
            E::Rendered(file()),
            E::RenderFailed { detail: "x".into() },
            E::UploadStarted,
            E::UploadAccepted {
                checksum_matches: true,
            },
            E::UploadFailed {
                retryable: true,
                detail: "503".into(),
            },
        ]);
        for kind in [JobKind::Controller, JobKind::Local] {
            for state in [Delivered, Failed, Cancelled] {
                let mut m = MachineState::at(state, kind);
                m.end_cause = Some("whatever".into());
                for e in &events {
                    let (next, actions) = transition(&m, e).unwrap();
                    assert_eq!(next, m, "{kind} {state} {e:?}");
                    assert!(actions.is_empty(), "{kind} {state} {e:?}");
                }
            }
        }
    }

    #[test]
    fn crash_loop_guard_ends_the_job() {
        let crashed = E::Crashed {
            window_open: true,
            has_audio: true,
        };
        let (mut m, _) = transition(&MachineState::new(JobKind::Controller), &E::Start).unwrap();
        for i in 1..=MAX_RECOVERIES {
            let (next, actions) = transition(&m, &crashed).unwrap();
            assert_eq!(next.state, Capturing, "recovery {i}");
            assert_eq!(next.recoveries, i);
            assert_eq!(actions, [Action::StartCapture]);
            m = next;
        }
        let (end, actions) = transition(&m, &crashed).unwrap();
        assert_eq!(end.state, Failed);
        assert_eq!(end.end_cause.as_deref(), Some(reason::CRASH_LOOP));
        let reports: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, Action::EnqueueReport(_)))
            .collect();
        assert_eq!(
            reports,
            [&Action::EnqueueReport(failed(reason::CRASH_LOOP))]
        );
        assert!(actions.contains(&Action::FlagLocalRecording {
            reason: reason::CRASH_LOOP.into()
        }));
        assert!(actions.iter().any(
            |a| matches!(a, Action::EnqueueHealthEvent(e) if e.kind == "agent.job.crash_loop")
        ));
        assert!(!actions.contains(&Action::StartCapture));

        // The same guard stops a render that kills its role every time.
        let mut m = MachineState::at(Rendering, JobKind::Local);
        m.recoveries = MAX_RECOVERIES;
        let (end, actions) = transition(&m, &crashed).unwrap();
        assert_eq!(end.state, Failed);
        assert!(actions.contains(&Action::EnqueueReport(Report::Local)));
        assert!(!actions.contains(&Action::Render));
    }

    #[test]
    fn illegal_pairs_are_typed_errors() {
        // (kind, state, event)
        let table = [
            (JobKind::Controller, Claimed, E::Rendered(file())),
            (JobKind::Controller, Claimed, E::DurationReached),
            (JobKind::Controller, Capturing, E::Start),
            (
                JobKind::Controller,
                Capturing,
                E::UploadAccepted {
                    checksum_matches: true,
                },
            ),
            (JobKind::Controller, Cached, E::Captured { has_audio: true }),
            (JobKind::Controller, Uploading, E::RenderStarted),
            (JobKind::Local, Capturing, E::LeaseLost),
            (JobKind::Local, Captured, E::UploadStarted),
        ];
        for (kind, state, event) in table {
            let m = MachineState::at(state, kind);
            assert_eq!(
                transition(&m, &event),
                Err(Illegal {
                    state,
                    kind,
                    event: event.name()
                }),
                "{kind} {state} {event:?}"
            );
        }
        let e = transition(&MachineState::new(JobKind::Local), &E::LeaseLost).unwrap_err();
        assert_eq!(
            e.to_string(),
            "job machine: event lease_lost is not legal for a local job in state claimed"
        );
    }

    #[test]
    fn repeated_controller_news_is_idempotent() {
        let (m, _) = transition(&MachineState::new(JobKind::Controller), &E::Start).unwrap();
        let (m, a) = transition(&m, &E::StopRequested).unwrap();
        assert_eq!(a, [Action::StopCapture]);
        for e in [E::StopRequested, E::DurationReached, E::Shutdown] {
            let (again, actions) = transition(&m, &e).unwrap();
            assert_eq!(again, m, "{e:?}");
            assert!(actions.is_empty(), "{e:?}");
        }
        // The first verdict stands.
        let (m, _) = transition(&m, &E::LeaseLost).unwrap();
        let (again, _) = transition(&m, &E::CancelledByController { reason: "x".into() }).unwrap();
        assert_eq!(again.verdict, m.verdict);
    }

    #[test]
    fn reports_say_what_to_post() {
        let table = [
            (Report::Completed, None),
            (
                cancelled(reason::CONTROLLER_STOP_REQUESTED),
                Some((TerminalPost::Cancelled, reason::CONTROLLER_STOP_REQUESTED)),
            ),
            (
                failed(reason::RENDER_FAILED),
                Some((TerminalPost::Failed, reason::RENDER_FAILED)),
            ),
            (Report::ControllerDecided, None),
            (Report::Local, None),
        ];
        for (report, post) in table {
            assert_eq!(report.post(), post, "{report:?}");
        }
        assert_eq!(TerminalPost::Cancelled.path(), "cancelled");
        assert_eq!(
            serde_json::to_value(failed("x")).unwrap(),
            serde_json::json!({"outcome": "failed", "reason": "x"})
        );
    }

    #[test]
    fn machine_state_round_trips_through_json() {
        let mut m = reached(JobKind::Controller, Uploading, true, false);
        m.verdict = Some(Verdict::Cancelled {
            reason: "operator".into(),
        });
        m.recoveries = 3;
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<MachineState>(&text).unwrap(), m);
    }

    #[test]
    fn actions_split_into_journal_writes_and_side_effects() {
        let side_effects = [Action::StartCapture, Action::StopCapture, Action::Render];
        assert!(side_effects.iter().all(|a| !a.is_journal_write()));
        let writes = [
            Action::Upload {
                file: file(),
                attempt: 0,
            },
            Action::DropUpload,
            Action::EnqueueReport(Report::Completed),
            Action::FlagLocalRecording { reason: "x".into() },
        ];
        assert!(writes.iter().all(Action::is_journal_write));
    }
}
