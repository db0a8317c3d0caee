//! What the machine holds: who a job answers to, the verdict it reached, the recording it
//! rendered, and the saved state the journal keeps between events.

use super::reason;
use crate::core::job::JobState;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

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
    pub(super) fn terminal(&self) -> (JobState, &str) {
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
    ///
    /// [`MAX_RECOVERIES`]: super::MAX_RECOVERIES
    pub recoveries: u32,
    /// Accepted uploads whose checksum was not ours; capped by [`MAX_CHECKSUM_MISMATCHES`].
    ///
    /// [`MAX_CHECKSUM_MISMATCHES`]: super::MAX_CHECKSUM_MISMATCHES
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
