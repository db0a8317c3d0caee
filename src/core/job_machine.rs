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
//!
//! # Files
//! - this file: the transition table ([`transition`]) and the limits and reasons it uses.
//! - `state`: what the machine holds ([`MachineState`], [`JobKind`], [`Verdict`]).
//! - `event`: what it is fed ([`Event`]).
//! - `action`: what a transition asks for ([`Action`], [`Report`], [`Alert`]).
//! - `pieces`: the builder and state edits the table's rows are made of.
//! - `tests`: a small simulated world that walks every row, with crashes in each state.

mod action;
mod event;
mod pieces;
mod state;

pub use action::{Action, Alert, AlertLevel, Report, TerminalPost};
pub use event::Event;
pub use state::{JobKind, MachineState, RenderedFile, Verdict};

use crate::core::job::JobState;
use pieces::{
    Next, checksum_event, crash_loop_event, failed_because, failure_event, local_stop_cause,
    render_failed_because,
};

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
#[allow(
    clippy::too_many_lines,
    reason = "one visible transition table (STYLE.md 7); its rows are built from `pieces`"
)]
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
        (Capturing, E::LeaseLost) => Next::stay(m).verdict(event),
        (
            Capturing,
            E::CancelledByController { .. }
            | E::FailedOnController { .. }
            | E::CompletedOnController,
        ) => Next::to(m, Stopping)
            .verdict(event)
            .act(Action::StopCapture),
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
        ) => Next::stay(m).verdict(event),

        // ── Chunks rendered while capture goes on go up one by one; the job's end (at
        //    Cached) sends what is left, the final chunk with `chunkTotal` ──────────────
        (Capturing | Stopping | Captured | Rendering, E::ChunkRendered { index })
            if m.verdict.is_none() && m.checksum_mismatches < MAX_CHECKSUM_MISMATCHES =>
        {
            Next::stay(m).act(Action::UploadChunk { index: *index })
        }
        (
            Capturing | Stopping | Captured | Rendering | Cached | Uploading,
            E::ChunkRendered { .. },
        ) => Next::stay(m),
        // Counted like the end's mismatches; at the limit no more chunks go up while
        // capturing, and the render's end fails the job (`Rendered` below).
        (Capturing | Stopping | Captured | Rendering, E::ChunkChecksumMismatch)
            if m.checksum_mismatches + 1 >= MAX_CHECKSUM_MISMATCHES =>
        {
            Next::stay(&m.mismatched())
                .health(checksum_event(m))
                .act(Action::DropUpload)
        }
        (Capturing | Stopping | Captured | Rendering, E::ChunkChecksumMismatch) => {
            Next::stay(&m.mismatched()).health(checksum_event(m))
        }

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
        (Captured | Rendering, E::Rendered(file))
            if m.checksum_mismatches >= MAX_CHECKSUM_MISMATCHES =>
        {
            Next::end(&m.with_recording(file), Failed, reason::CHECKSUM_MISMATCH)
                .kept(reason::CHECKSUM_MISMATCH)
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
            Next::end(m, Failed, &render_failed_because(detail))
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
        (Cached | Uploading, E::ChunkChecksumMismatch)
            if m.checksum_mismatches + 1 >= MAX_CHECKSUM_MISMATCHES =>
        {
            Next::end(m, Failed, reason::CHECKSUM_MISMATCH)
                .health(checksum_event(m))
                .kept(reason::CHECKSUM_MISMATCH)
        }
        (Cached | Uploading, E::ChunkChecksumMismatch) => {
            Next::upload_again(&m.mismatched()).health(checksum_event(m))
        }
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

#[cfg(test)]
mod tests;
