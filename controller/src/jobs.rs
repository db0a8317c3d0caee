//! Job transitions. Each function runs inside the caller's `BEGIN IMMEDIATE` transaction
//! (see `Store::tx`) and every status change is a compare-and-set on the current status,
//! exactly as PROTOCOL.md "States and leases" describes:
//!
//! ```text
//! transition                 from                               to
//! claim                      queued                             running (+ lease)
//! job heartbeat              running (same node)                running (lease moved)
//! operator stop              queued | running                   stop_requested
//! complete (primary upload)  queued | running [| stop_requested] completed
//! agent/operator cancel      queued | running | stop_requested  cancelled
//! agent/operator fail        queued | running | stop_requested  failed
//! lease runner               running past its lease             failed / lease_expired
//! lease runner               stop_requested older than a lease  cancelled / stop_request_lease_expired
//! ```
//!
//! Whether a primary upload completes a `stop_requested` job is the server's
//! [`StoppedUpload`] setting.

use crate::model::{JobStatus, JobSummary, NewJobSpec, RecordingStatus, RecordingSummary};
use crate::store::{self, Doing, StoreError};
use rusqlite::{Connection, params};

/// What a primary upload does to a `stop_requested` job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoppedUpload {
    /// As the Rakkr controller does: the upload completes the job (its completion is a
    /// compare-and-set from queued, running *or* stop_requested), so the agent's later
    /// `POST /cancelled` gets 404 ("a different terminal state"); a GET then shows
    /// `completed`.
    #[default]
    Completes,
    /// The upload is stored but the job stays `stop_requested` until the agent posts
    /// `cancelled` (or the stop-request lease runs out).
    KeepsStopRequested,
}

/// Why a job call is refused; each variant is one reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// 404.
    #[error("Recording job not found")]
    NotFound,
    /// 403: the job belongs to another node.
    #[error("Node credential cannot access this job")]
    OtherNode,
    /// 404: the job's recording is gone.
    #[error("Recording not found")]
    RecordingNotFound,
    /// 403.
    #[error("Node credential cannot access this recording")]
    RecordingOtherNode,
    /// 409: not running, or leased to another node.
    #[error("Recording job is not heartbeatable")]
    NotHeartbeatable,
    /// 409: not queued.
    #[error("Recording job is not claimable")]
    NotClaimable,
    /// An operator's stop of a job that is neither queued nor running.
    #[error("job is {0}, not queued or running")]
    NotStoppable(JobStatus),
    /// An operator's cancel or fail of a job that already ended.
    #[error("job already ended {0}")]
    AlreadyEnded(JobStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) const NON_TERMINAL: &[JobStatus] = &[
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::StopRequested,
];

/// Moves job `id` to `to` if its status is one of `from`; returns whether it did.
/// `reason` (if any) becomes `failureReason`; a terminal `to` sets `completedAt`.
pub(crate) fn transition(
    tx: &Connection,
    id: &str,
    from: &[JobStatus],
    to: JobStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    // The status names are fixed strings, never client input.
    let from = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let completed = to.is_terminal().then_some(now);
    let stop_at = (to == JobStatus::StopRequested).then_some(now);
    let changed = tx
        .execute(
            &format!(
                "UPDATE jobs SET status = ?2, failure_reason = coalesce(?3, failure_reason), \
                 completed_at_ms = coalesce(?4, completed_at_ms), \
                 stop_requested_at_ms = coalesce(?5, stop_requested_at_ms), updated_at_ms = ?6 \
                 WHERE id = ?1 AND status IN ({from})"
            ),
            params![id, to.as_str(), reason, completed, stop_at, now],
        )
        .doing("moving a job")?;
    Ok(changed == 1)
}

/// The recording's status once its job ended `failed` or `cancelled` (as Rakkr): audio
/// already secured (cached, uploaded, partial) is never downgraded; a failed job with
/// stored chunks leaves a `partial` recording; a cancelled one a `completed` recording.
pub(crate) fn settle_recording(
    tx: &Connection,
    recording_id: &str,
    ended: JobStatus,
    now: i64,
) -> Result<(), StoreError> {
    let Some(rec) = store::recording(tx, recording_id)? else {
        return Ok(());
    };
    use RecordingStatus::*;
    if matches!(rec.status, Cached | Uploaded | Partial) {
        return Ok(());
    }
    let status = match ended {
        JobStatus::Failed if rec.chunk_count > 0 => Partial,
        JobStatus::Failed => Failed,
        _ => Completed,
    };
    store::set_recording_status(tx, recording_id, status, now)
}

/// The job, if it exists and belongs to `node`.
pub(crate) fn owned(tx: &Connection, id: &str, node: &str) -> Result<JobSummary, JobError> {
    let job = store::job(tx, id)?.ok_or(JobError::NotFound)?;
    if job.node_id != node {
        return Err(JobError::OtherNode);
    }
    Ok(job)
}

/// The job's recording, if it exists and belongs to `node`.
fn owned_recording(
    tx: &Connection,
    job: &JobSummary,
    node: &str,
) -> Result<RecordingSummary, JobError> {
    let rec = store::recording(tx, &job.recording_id)?.ok_or(JobError::RecordingNotFound)?;
    if rec.node_id != node {
        return Err(JobError::RecordingOtherNode);
    }
    Ok(rec)
}

/// The queue order: oldest first, then by `trackIndex` within a `trackGroupId`.
const QUEUE_ORDER: &str = "ORDER BY created_at_ms, coalesce(track_group_id, ''), \
    coalesce(track_index, 0), seq";

/// Claims `job` for `node` if it is still queued (the compare-and-set).
fn cas_claim(
    tx: &Connection,
    job: &str,
    node: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<JobSummary>, StoreError> {
    let changed = tx
        .execute(
            "UPDATE jobs SET status = 'running', claimed_by = ?2, started_at_ms = ?3, \
             last_heartbeat_at_ms = ?3, lease_expires_at_ms = ?4, updated_at_ms = ?3 \
             WHERE id = ?1 AND status = 'queued'",
            params![job, node, now, now.saturating_add(lease_ms)],
        )
        .doing("claiming a job")?;
    if changed != 1 {
        return Ok(None);
    }
    let job =
        store::job(tx, job)?.ok_or_else(|| StoreError::Corrupt("claimed job vanished".into()))?;
    store::set_recording_status(tx, &job.recording_id, RecordingStatus::Recording, now)?;
    Ok(Some(job))
}

/// Claims `node`'s next queued job and, when `whole_group` and it has a
/// `captureGroupId`, every queued job of the node with the same id. Empty: nothing queued.
pub(crate) fn claim_next(
    tx: &Connection,
    node: &str,
    whole_group: bool,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<JobSummary>, StoreError> {
    let first = store::jobs_where(
        tx,
        &format!("WHERE node_id = ?1 AND status = 'queued' {QUEUE_ORDER} LIMIT 1"),
        params![node],
    )?;
    let Some(first) = first.into_iter().next() else {
        return Ok(Vec::new());
    };
    let group = first
        .command
        .get("captureGroupId")
        .and_then(|g| g.as_str())
        .filter(|_| whole_group)
        .map(str::to_string);
    let members = match group {
        Some(g) => store::jobs_where(
            tx,
            &format!(
                "WHERE node_id = ?1 AND status = 'queued' AND capture_group_id = ?2 {QUEUE_ORDER}"
            ),
            params![node, g],
        )?,
        None => vec![first],
    };
    let mut claimed = Vec::with_capacity(members.len());
    for m in members {
        if let Some(job) = cas_claim(tx, &m.id, node, now, lease_ms)? {
            claimed.push(job);
        }
    }
    Ok(claimed)
}

/// `POST /recording-jobs/{id}/claim`.
pub(crate) fn claim(
    tx: &Connection,
    id: &str,
    node: &str,
    now: i64,
    lease_ms: i64,
) -> Result<JobSummary, JobError> {
    let job = owned(tx, id, node)?;
    owned_recording(tx, &job, node)?;
    cas_claim(tx, id, node, now, lease_ms)?.ok_or(JobError::NotClaimable)
}

/// `POST /recording-jobs/{id}/heartbeat`: moves the lease to `now + lease`.
pub(crate) fn heartbeat(
    tx: &Connection,
    id: &str,
    node: &str,
    now: i64,
    lease_ms: i64,
) -> Result<JobSummary, JobError> {
    owned(tx, id, node)?;
    let changed = tx
        .execute(
            "UPDATE jobs SET last_heartbeat_at_ms = ?3, lease_expires_at_ms = ?4, \
             updated_at_ms = ?3 \
             WHERE id = ?1 AND status = 'running' AND coalesce(claimed_by, ?2) = ?2",
            params![id, node, now, now.saturating_add(lease_ms)],
        )
        .doing("extending a lease")?;
    if changed != 1 {
        return Err(JobError::NotHeartbeatable);
    }
    store::job(tx, id)?.ok_or(JobError::NotFound)
}

/// `POST /recording-jobs/{id}/cancelled` and `/failed`. The same terminal state again is
/// a success (the job unchanged); a different terminal state is `NotFound` (404).
pub(crate) fn end_by_agent(
    tx: &Connection,
    id: &str,
    node: &str,
    to: JobStatus,
    reason: &str,
    now: i64,
) -> Result<JobSummary, JobError> {
    let job = owned(tx, id, node)?;
    owned_recording(tx, &job, node)?;
    if job.status != to && !transition(tx, id, NON_TERMINAL, to, Some(reason), now)? {
        return Err(JobError::NotFound);
    }
    settle_recording(tx, &job.recording_id, to, now)?;
    store::job(tx, id)?.ok_or(JobError::NotFound)
}

/// Completes a job after its primary upload (see [`StoppedUpload`]). A job already
/// completed stays so (a repeated upload is idempotent); `None`: not completable.
pub(crate) fn complete(
    tx: &Connection,
    id: &str,
    stopped: StoppedUpload,
    now: i64,
) -> Result<Option<JobSummary>, StoreError> {
    let Some(job) = store::job(tx, id)? else {
        return Ok(None);
    };
    if job.status == JobStatus::Completed {
        return Ok(Some(job));
    }
    let from: &[JobStatus] = match stopped {
        StoppedUpload::Completes => NON_TERMINAL,
        StoppedUpload::KeepsStopRequested => &[JobStatus::Queued, JobStatus::Running],
    };
    if transition(tx, id, from, JobStatus::Completed, None, now)? {
        store::job(tx, id)
    } else {
        Ok(None)
    }
}

/// The operator's stop: queued or running -> stop_requested.
pub(crate) fn stop(tx: &Connection, id: &str, now: i64) -> Result<JobSummary, JobError> {
    let job = store::job(tx, id)?.ok_or(JobError::NotFound)?;
    let from = [JobStatus::Queued, JobStatus::Running];
    if !transition(tx, id, &from, JobStatus::StopRequested, None, now)? {
        return Err(JobError::NotStoppable(job.status));
    }
    store::job(tx, id)?.ok_or(JobError::NotFound)
}

/// The operator's cancel or fail of a job that has not ended.
pub(crate) fn end_by_operator(
    tx: &Connection,
    id: &str,
    to: JobStatus,
    reason: &str,
    now: i64,
) -> Result<JobSummary, JobError> {
    let job = store::job(tx, id)?.ok_or(JobError::NotFound)?;
    if !transition(tx, id, NON_TERMINAL, to, Some(reason), now)? {
        return Err(JobError::AlreadyEnded(job.status));
    }
    settle_recording(tx, &job.recording_id, to, now)?;
    store::job(tx, id)?.ok_or(JobError::NotFound)
}

/// Adds a queued job and its recording. `Err(Ok(message))`: the spec is invalid.
pub(crate) fn add(
    tx: &Connection,
    spec: &NewJobSpec,
    now: i64,
) -> Result<Result<JobSummary, String>, StoreError> {
    if !store::node_exists(tx, &spec.node_id)? {
        return Ok(Err(format!("no node {:?}", spec.node_id)));
    }
    let recording_id = format!("rec_{}", uuid::Uuid::new_v4());
    let job_id = format!("job_{}", uuid::Uuid::new_v4());
    let command = match spec.command(&recording_id) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let text = |k: &str| command.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let track_index = command.get("trackIndex").and_then(|v| v.as_i64());
    tx.execute(
        "INSERT INTO recordings (id, node_id, status, created_at_ms, updated_at_ms) \
         VALUES (?1, ?2, 'queued', ?3, ?3)",
        params![recording_id, spec.node_id, now],
    )
    .doing("adding a recording")?;
    tx.execute(
        "INSERT INTO jobs (id, node_id, recording_id, status, command_json, capture_group_id, \
         track_group_id, track_index, created_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            job_id,
            spec.node_id,
            recording_id,
            serde_json::Value::Object(command.clone()).to_string(),
            text("captureGroupId"),
            text("trackGroupId"),
            track_index,
            now
        ],
    )
    .doing("adding a job")?;
    Ok(Ok(store::job(tx, &job_id)?.ok_or_else(|| {
        StoreError::Corrupt("added job vanished".into())
    })?))
}
