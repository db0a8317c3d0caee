//! What `edgerec status` shows, as data: the screen is rendered from it and `--json`
//! prints it serialized.

use std::path::PathBuf;

use serde::Serialize;

use super::levels::JobLevels;
use crate::core::job::JobState;
use crate::core::timeline::EventKind;

/// Whether a role is running, as its beat says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Alive,
    /// It beat once, but not recently, not this boot, or its process is gone.
    Stale,
    /// It never beat in this journal.
    Never,
}

impl Liveness {
    pub const fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stale => "stale",
            Liveness::Never => "never",
        }
    }
}

/// One role (`capture`, `sync`) as its last beat shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub liveness: Liveness,
    /// Why it is stale ("before a reboot", "process gone", "no beat for 42s").
    pub note: Option<String>,
    pub pid: Option<u32>,
    pub started_at_ms: Option<i64>,
    pub last_beat_ms: Option<i64>,
    /// The beat's boot id is this boot's (`None`: no beat, or no boot id to compare).
    pub same_boot: Option<bool>,
    pub progress: String,
}

/// A job, as one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobLine {
    pub id: String,
    /// `local` or `controller`.
    pub source: String,
    pub state: JobState,
    pub device: String,
    pub rate: u32,
    pub captured_frames: u64,
    pub duration_frames: Option<u64>,
    pub end_cause: Option<String>,
    /// The controller's verdict, when it already ended the job (the audio will be kept).
    pub verdict: Option<String>,
    pub updated_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// A recording that stays on the box, undelivered, flagged for an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptRecording {
    pub job_id: String,
    /// The rendered file, else the job directory (its segments).
    pub path: PathBuf,
    pub reason: String,
}

/// A timeline event of a running job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventLine {
    pub job_id: String,
    pub kind: EventKind,
    pub at_ms: i64,
    /// Position on the job's timeline.
    pub frame: u64,
    pub rate: u32,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// Rows neither delivered nor abandoned (node-level rows included).
    pub pending: u64,
    /// Creation time of the oldest pending row of a job (node-level rows are not listed
    /// by the journal's read API, so a box with only those shows `None`).
    pub oldest_pending_ms: Option<i64>,
    /// The newest pending row's error, else the newest abandoned row's: `kind: error`.
    pub last_error: Option<String>,
}

/// Everything `edgerec status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state_dir: PathBuf,
    pub journal: PathBuf,
    pub schema_version: i64,
    /// When this was gathered (wall clock, ms since the epoch).
    pub taken_at_ms: i64,
    pub roles: Vec<RoleStatus>,
    /// Non-terminal jobs, oldest first.
    pub running: Vec<JobLine>,
    /// The newest terminal jobs, newest first (at most [`RECENT_ENDED`](super::RECENT_ENDED)).
    pub recent_ended: Vec<JobLine>,
    pub ended_total: usize,
    /// Newest first.
    pub kept_locally: Vec<KeptRecording>,
    /// Delivered recordings retention deleted, newest first (at most [`RECENT_PRUNED`](super::RECENT_PRUNED)).
    pub pruned: Vec<crate::journal::PrunedRow>,
    /// The latest [`RECENT_EVENTS`](super::RECENT_EVENTS) watched events of running jobs, oldest first.
    pub events: Vec<EventLine>,
    /// Live levels of the jobs that are capturing now (the writer's snapshot).
    pub levels: Vec<JobLevels>,
    pub disk: Option<DiskStatus>,
    pub disk_error: Option<String>,
    pub outbox: OutboxStatus,
    /// The sync role's last beat: when it last ran (and so last could reach the
    /// controller). `None`: no sync role ever ran here.
    pub controller_contact_ms: Option<i64>,
    /// The sync role's view of the node (contact, clock skew, open conditions).
    pub node: Option<crate::roles::sync::node_health::NodeFacts>,
}
