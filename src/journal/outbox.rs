//! The `outbox` table (what the agent owes the controller) and the `uploads` table (the
//! chunks of a rendered recording and whether the controller acknowledged each).
//!
//! Delivery rules, all enforced here so the sync role cannot get them wrong:
//! - **In order per job, at least once.** [`Journal::next_due`] hands out a job's rows in
//!   insertion order: a later row is not due while an earlier one of the same job is
//!   undelivered. Rows without a job (node health events) are independent. Retries are the
//!   caller's: [`Journal::mark_failed`] stores the next attempt time (capped exponential
//!   backoff with jitter, [`crate::core::backoff::Backoff::OUTBOX_DELIVERY`]).
//! - **A heartbeat is current state.** Enqueueing one replaces the job's undelivered
//!   heartbeat, so only the newest is ever sent. Heartbeats neither wait behind nor hold
//!   up the job's other rows: a long upload retrying must not let the lease lapse.
//! - **One terminal report per job**, by its idempotency key: a second is a no-op. Once it
//!   is queued the job's heartbeats are moot: pending ones are dropped, new ones refused.
//! - **Health events are never dropped and never resent after a 201** (the server does not
//!   deduplicate them): journal the answer with [`Journal::mark_delivered`] before doing
//!   anything else. The window between the 201 and that commit is the only way to a
//!   duplicate.
//! - **Nothing is deleted but superseded heartbeats.** A row the controller refused for
//!   good (a 4xx retrying cannot fix), or made moot (the job ended), is *abandoned*: kept
//!   with its error for `edgerec status`, never retried.
//!
//! The rows survive restarts of either role and of the box: they are journal rows, written
//! in the same transaction as the state transition that queued them.

use super::jobs::path_text;
use super::{Doing, Journal, JournalError, Result, col, col_u64, parse_col, to_sql_u64};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What an outbox row carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// `POST /recording-jobs/{id}/heartbeat`: current state, superseded by the next one.
    JobHeartbeat,
    /// `POST /nodes/{nodeId}/health-events`: not idempotent on the server.
    HealthEvent,
    /// `POST /recording-jobs/{id}/cancelled|failed`: one per job.
    TerminalReport,
    /// `PUT /recordings/{id}/cache-file`: the recording (its chunks are in `uploads`).
    Upload,
}

impl OutboxKind {
    pub const ALL: [OutboxKind; 4] = [
        OutboxKind::JobHeartbeat,
        OutboxKind::HealthEvent,
        OutboxKind::TerminalReport,
        OutboxKind::Upload,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            OutboxKind::JobHeartbeat => "job_heartbeat",
            OutboxKind::HealthEvent => "health_event",
            OutboxKind::TerminalReport => "terminal_report",
            OutboxKind::Upload => "upload",
        }
    }
}

impl fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutboxKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutboxKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown outbox kind {s:?}"))
    }
}

/// A row to enqueue. Built by one constructor per kind, each of which derives the
/// idempotency key that makes a repeated enqueue harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutboxItem {
    job_id: Option<String>,
    kind: OutboxKind,
    body: String,
    idempotency_key: String,
    now_ms: i64,
}

impl NewOutboxItem {
    /// A job heartbeat; replaces the job's undelivered one.
    pub fn job_heartbeat(job_id: &str, body: String, now_ms: i64) -> NewOutboxItem {
        // Unique per heartbeat: supersession, not the key, keeps one per job.
        let key = format!("job_heartbeat:{job_id}:{}", uuid::Uuid::new_v4());
        NewOutboxItem::new(Some(job_id), OutboxKind::JobHeartbeat, body, key, now_ms)
    }

    /// A health event; `local_event_id` (the event's `id` on the wire) makes re-queueing
    /// the same event after a crash a no-op. `job_id` orders it with the job's rows.
    pub fn health_event(
        job_id: Option<&str>,
        local_event_id: &str,
        body: String,
        now_ms: i64,
    ) -> NewOutboxItem {
        let key = format!("health_event:{local_event_id}");
        NewOutboxItem::new(job_id, OutboxKind::HealthEvent, body, key, now_ms)
    }

    /// The job's terminal report (`cancelled`/`failed` and its reason, in `body`). The
    /// key is the job: a second report for the same job is a no-op.
    pub fn terminal_report(job_id: &str, body: String, now_ms: i64) -> NewOutboxItem {
        let key = format!("terminal_report:{job_id}");
        NewOutboxItem::new(Some(job_id), OutboxKind::TerminalReport, body, key, now_ms)
    }

    /// The upload of the job's recording. `attempt` is the job machine's upload attempt: a
    /// re-issued upload after a crash is a no-op, a deliberate re-upload is a new row.
    pub fn upload(job_id: &str, attempt: u32, body: String, now_ms: i64) -> NewOutboxItem {
        let key = format!("upload:{job_id}:{attempt}");
        NewOutboxItem::new(Some(job_id), OutboxKind::Upload, body, key, now_ms)
    }

    fn new(
        job_id: Option<&str>,
        kind: OutboxKind,
        body: String,
        idempotency_key: String,
        now_ms: i64,
    ) -> NewOutboxItem {
        NewOutboxItem {
            job_id: job_id.map(str::to_string),
            kind,
            body,
            idempotency_key,
            now_ms,
        }
    }

    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    pub fn kind(&self) -> OutboxKind {
        self.kind
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
}

/// What [`Journal::enqueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row, due at once; `superseded` undelivered heartbeats of the job were removed.
    Added { id: i64, superseded: usize },
    /// A row with the same idempotency key exists (delivered or not): nothing written.
    AlreadyQueued { id: i64 },
    /// A heartbeat for a job whose terminal report is queued: nothing written.
    NotNeeded,
}

impl Enqueued {
    /// The row that carries the item, if there is one.
    pub fn id(&self) -> Option<i64> {
        match self {
            Enqueued::Added { id, .. } | Enqueued::AlreadyQueued { id } => Some(*id),
            Enqueued::NotNeeded => None,
        }
    }
}

/// An outbox row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    /// `None` for node-level rows, or once the job was pruned.
    pub job_id: Option<String>,
    pub kind: OutboxKind,
    pub body: String,
    pub idempotency_key: String,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not due before this wall time.
    pub next_attempt_ms: i64,
    /// The controller's 2xx, journaled.
    pub delivered_at_ms: Option<i64>,
    /// Given up: refused for good, or moot; `last_error` says which.
    pub abandoned_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

impl OutboxRow {
    /// Neither delivered nor abandoned.
    pub fn is_pending(&self) -> bool {
        self.delivered_at_ms.is_none() && self.abandoned_at_ms.is_none()
    }
}

/// One chunk of a job's rendered recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRow {
    pub job_id: String,
    /// 0-based, as on the wire.
    pub chunk: u32,
    /// As recorded (relative to the job's directory, like segment paths).
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// When the controller's 201 with our checksum was journaled.
    pub acknowledged_at_ms: Option<i64>,
}

impl UploadRow {
    /// Whether the controller's `checksum` (`sha256:<hex>`, or bare hex) is ours.
    pub fn matches_checksum(&self, checksum: &str) -> bool {
        let hex = checksum.strip_prefix("sha256:").unwrap_or(checksum);
        !hex.is_empty() && hex.eq_ignore_ascii_case(&self.sha256)
    }
}

const OUTBOX_COLS: &str = "id, job_id, kind, body, idempotency_key, attempts, next_attempt_ms, \
     delivered_at_ms, abandoned_at_ms, last_error, created_at_ms";

/// SQL: the row `o` is neither delivered nor abandoned.
const PENDING: &str = "o.delivered_at_ms IS NULL AND o.abandoned_at_ms IS NULL";

fn outbox_from_row(r: &Row<'_>) -> Result<OutboxRow> {
    const DOING: &str = "reading an outbox row";
    let id: i64 = col(r, 0, DOING)?;
    let key = format!("outbox row {id}");
    let attempts = col_u64(r, 5, DOING)?;
    Ok(OutboxRow {
        id,
        job_id: col(r, 1, DOING)?,
        kind: parse_col("outbox.kind", &key, &col::<String>(r, 2, DOING)?)?,
        body: col(r, 3, DOING)?,
        idempotency_key: col(r, 4, DOING)?,
        attempts: u32::try_from(attempts).map_err(|_| JournalError::Corrupt {
            what: format!("outbox.attempts of {key}: {attempts}"),
        })?,
        next_attempt_ms: col(r, 6, DOING)?,
        delivered_at_ms: col(r, 7, DOING)?,
        abandoned_at_ms: col(r, 8, DOING)?,
        last_error: col(r, 9, DOING)?,
        created_at_ms: col(r, 10, DOING)?,
    })
}

fn upload_from_row(r: &Row<'_>) -> Result<UploadRow> {
    const DOING: &str = "reading an uploads row";
    let chunk = col_u64(r, 1, DOING)?;
    Ok(UploadRow {
        job_id: col(r, 0, DOING)?,
        chunk: u32::try_from(chunk).map_err(|_| JournalError::Corrupt {
            what: format!("uploads.chunk {chunk}"),
        })?,
        path: PathBuf::from(col::<String>(r, 2, DOING)?),
        size: col_u64(r, 3, DOING)?,
        sha256: col(r, 4, DOING)?,
        acknowledged_at_ms: col(r, 5, DOING)?,
    })
}

fn require_job(conn: &Connection, job_id: &str) -> Result<()> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))
        .optional()
        .doing("checking a job exists")?;
    found
        .map(|_| ())
        .ok_or_else(|| JournalError::NoSuchJob(job_id.to_string()))
}

/// Removes the job's undelivered heartbeats; returns how many.
fn drop_pending_heartbeats(conn: &Connection, job_id: &str) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM outbox WHERE job_id = ?1 AND kind = 'job_heartbeat' \
         AND delivered_at_ms IS NULL AND abandoned_at_ms IS NULL",
    )
    .and_then(|mut s| s.execute([job_id]))
    .doing("superseding heartbeats")
}

impl Journal {
    /// Queues `item`, due at once. See [`Enqueued`] for the no-op cases.
    pub fn enqueue(&self, item: &NewOutboxItem) -> Result<Enqueued> {
        self.write_tx(|conn| {
            let existing: Option<i64> = conn
                .prepare_cached("SELECT id FROM outbox WHERE idempotency_key = ?1")
                .and_then(|mut s| {
                    s.query_row([&item.idempotency_key], |r| r.get(0))
                        .optional()
                })
                .doing("looking up an idempotency key")?;
            if let Some(id) = existing {
                return Ok(Enqueued::AlreadyQueued { id });
            }
            if let Some(job_id) = item.job_id() {
                require_job(conn, job_id)?;
            }
            let superseded = match (item.kind, item.job_id()) {
                (OutboxKind::JobHeartbeat, Some(job_id)) => {
                    let ended: Option<i64> = conn
                        .prepare_cached(
                            "SELECT 1 FROM outbox WHERE job_id = ?1 AND kind = 'terminal_report'",
                        )
                        .and_then(|mut s| s.query_row([job_id], |r| r.get(0)).optional())
                        .doing("looking for a terminal report")?;
                    if ended.is_some() {
                        return Ok(Enqueued::NotNeeded);
                    }
                    drop_pending_heartbeats(conn, job_id)?
                }
                (OutboxKind::TerminalReport, Some(job_id)) => {
                    drop_pending_heartbeats(conn, job_id)?
                }
                _ => 0,
            };
            conn.prepare_cached(
                "INSERT INTO outbox (job_id, kind, body, idempotency_key, next_attempt_ms, \
                 created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    item.job_id,
                    item.kind.name(),
                    item.body,
                    item.idempotency_key,
                    item.now_ms
                ])
            })
            .doing("inserting an outbox row")?;
            Ok(Enqueued::Added {
                id: conn.last_insert_rowid(),
                superseded,
            })
        })
    }

    /// The oldest pending row that is due at `now_ms` and not held back by an earlier
    /// pending row of its job (heartbeats neither wait nor hold back).
    pub fn next_due(&self, now_ms: i64) -> Result<Option<OutboxRow>> {
        Ok(self.due_rows(now_ms, 1)?.into_iter().next())
    }

    /// Up to `limit` rows as [`Journal::next_due`] would return them one by one, oldest
    /// first: a sender with rows in flight skips those and takes the next.
    pub fn due_rows(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        const DOING: &str = "finding due outbox rows";
        let sql = format!(
            "SELECT {OUTBOX_COLS} FROM outbox o \
             WHERE {PENDING} AND o.next_attempt_ms <= ?1 \
             AND (o.kind = 'job_heartbeat' OR o.job_id IS NULL OR NOT EXISTS ( \
                 SELECT 1 FROM outbox p WHERE p.job_id = o.job_id AND p.id < o.id \
                 AND p.delivered_at_ms IS NULL AND p.abandoned_at_ms IS NULL \
                 AND p.kind <> 'job_heartbeat')) \
             ORDER BY o.id LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql).doing(DOING)?;
        let mut rows = stmt.query(params![now_ms, limit]).doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            out.push(outbox_from_row(r)?);
        }
        Ok(out)
    }

    /// Journals the controller's 2xx for row `id`. Returns false if the row was not
    /// pending (already delivered or abandoned, or a heartbeat superseded while it was
    /// being sent): nothing changed.
    pub fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(&format!(
                "UPDATE outbox AS o SET delivered_at_ms = ?2 WHERE o.id = ?1 AND {PENDING}"
            ))
            .and_then(|mut s| s.execute(params![id, now_ms]))
            .doing("marking an outbox row delivered")?;
        Ok(changed == 1)
    }

    /// Counts a failed delivery of row `id` and schedules the next one. Returns false if
    /// the row was not pending.
    pub fn mark_failed(&self, id: i64, error: &str, next_attempt_ms: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(&format!(
                "UPDATE outbox AS o SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_ms = ?3 WHERE o.id = ?1 AND {PENDING}"
            ))
            .and_then(|mut s| s.execute(params![id, error, next_attempt_ms]))
            .doing("marking an outbox row failed")?;
        Ok(changed == 1)
    }

    /// Gives up on row `id` (the controller refused it for good, or it is moot), keeping
    /// it with `why`. Returns false if the row was not pending.
    pub fn mark_abandoned(&self, id: i64, why: &str, now_ms: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(&format!(
                "UPDATE outbox AS o SET abandoned_at_ms = ?3, last_error = ?2 \
                 WHERE o.id = ?1 AND {PENDING}"
            ))
            .and_then(|mut s| s.execute(params![id, why, now_ms]))
            .doing("abandoning an outbox row")?;
        Ok(changed == 1)
    }

    /// Gives up on every pending row of `kind` for the job (e.g. its upload once the
    /// controller ended the job); returns how many.
    pub fn abandon_pending(
        &self,
        job_id: &str,
        kind: OutboxKind,
        why: &str,
        now_ms: i64,
    ) -> Result<usize> {
        self.conn
            .prepare_cached(&format!(
                "UPDATE outbox AS o SET abandoned_at_ms = ?4, last_error = ?3 \
                 WHERE o.job_id = ?1 AND o.kind = ?2 AND {PENDING}"
            ))
            .and_then(|mut s| s.execute(params![job_id, kind.name(), why, now_ms]))
            .doing("abandoning a job's outbox rows")
    }

    /// Rows neither delivered nor abandoned.
    pub fn pending_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM outbox o WHERE {PENDING}"),
                [],
                |r| r.get(0),
            )
            .doing("counting pending outbox rows")?;
        Ok(n.unsigned_abs())
    }

    /// All of a job's rows, delivered or not, in insertion order.
    pub fn rows_for_job(&self, job_id: &str) -> Result<Vec<OutboxRow>> {
        const DOING: &str = "reading a job's outbox rows";
        let sql = format!("SELECT {OUTBOX_COLS} FROM outbox WHERE job_id = ?1 ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql).doing(DOING)?;
        let mut rows = stmt.query([job_id]).doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            out.push(outbox_from_row(r)?);
        }
        Ok(out)
    }

    /// Records a chunk of the job's rendered recording. Recording it again (a re-render)
    /// replaces it; its acknowledgement survives only if the checksum is unchanged.
    pub fn record_upload(
        &self,
        job_id: &str,
        chunk: u32,
        path: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<()> {
        let path = path_text(path)?;
        let size = to_sql_u64(size, "upload size")?;
        self.write_tx(|conn| {
            require_job(conn, job_id)?;
            conn.prepare_cached(
                "INSERT INTO uploads (job_id, chunk, path, size, sha256) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (job_id, chunk) DO UPDATE SET path = excluded.path, \
                 size = excluded.size, sha256 = excluded.sha256, \
                 acknowledged_at_ms = CASE WHEN uploads.sha256 = excluded.sha256 \
                 AND uploads.size = excluded.size THEN uploads.acknowledged_at_ms END",
            )
            .and_then(|mut s| s.execute(params![job_id, chunk, path, size, sha256]))
            .doing("recording an upload chunk")?;
            Ok(())
        })
    }

    /// Journals the controller's 201 (checksum already compared) for a chunk; the first
    /// acknowledgement's time is kept. Returns false if there is no such chunk.
    pub fn acknowledge_upload(&self, job_id: &str, chunk: u32, now_ms: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE uploads SET acknowledged_at_ms = COALESCE(acknowledged_at_ms, ?3) \
                 WHERE job_id = ?1 AND chunk = ?2",
            )
            .and_then(|mut s| s.execute(params![job_id, chunk, now_ms]))
            .doing("acknowledging an upload chunk")?;
        Ok(changed == 1)
    }

    /// A job's chunks, by chunk number.
    pub fn uploads(&self, job_id: &str) -> Result<Vec<UploadRow>> {
        const DOING: &str = "reading a job's uploads";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT job_id, chunk, path, size, sha256, acknowledged_at_ms FROM uploads \
                 WHERE job_id = ?1 ORDER BY chunk",
            )
            .doing(DOING)?;
        let mut rows = stmt.query([job_id]).doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            out.push(upload_from_row(r)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backoff::Backoff;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::core::job::JobState;
    use crate::journal::{JobSource, NewJob, schema};
    use tempfile::TempDir;

    fn temp() -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        (dir, path)
    }

    fn add_job(j: &Journal, id: &str) {
        j.create_job(&NewJob {
            id: id.to_string(),
            source: JobSource::Controller,
            controller_job_id: Some(format!("job_{id}")),
            recording_id: Some(format!("rec_{id}")),
            command_json: "{}".to_string(),
            backend: "synth".to_string(),
            device: "synth:sine".to_string(),
            spec: StreamSpec {
                format: SampleFormat::S16Le,
                rate: 48_000,
                channels: 1,
            },
            duration_frames: Some(48_000),
            dir: PathBuf::from(format!("/var/lib/edgerec/jobs/{id}")),
            state: JobState::Claimed,
            created_at_ms: 1,
        })
        .unwrap();
    }

    /// A journal with jobs `a` and `b`.
    fn journal() -> (TempDir, PathBuf, Journal) {
        let (dir, path) = temp();
        let j = Journal::open(&path).unwrap();
        add_job(&j, "a");
        add_job(&j, "b");
        (dir, path, j)
    }

    fn added(e: Enqueued) -> i64 {
        match e {
            Enqueued::Added { id, .. } => id,
            other => panic!("expected a new row, got {other:?}"),
        }
    }

    fn health(job: Option<&str>, local_id: &str, now_ms: i64) -> NewOutboxItem {
        NewOutboxItem::health_event(job, local_id, format!(r#"{{"id":"{local_id}"}}"#), now_ms)
    }

    fn due(j: &Journal, now_ms: i64) -> Option<i64> {
        j.next_due(now_ms).unwrap().map(|r| r.id)
    }

    #[test]
    fn rows_of_a_job_go_in_order_other_jobs_do_not_wait() {
        let (_d, _p, j) = journal();
        let a1 = added(j.enqueue(&health(Some("a"), "e1", 100)).unwrap());
        let a2 = added(
            j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 101))
                .unwrap(),
        );
        let a3 = added(
            j.enqueue(&NewOutboxItem::terminal_report("a", "{}".into(), 102))
                .unwrap(),
        );
        let b1 = added(j.enqueue(&health(Some("b"), "e2", 103)).unwrap());
        let node = added(j.enqueue(&health(None, "e3", 104)).unwrap());
        assert_eq!(j.pending_count().unwrap(), 5);

        // (step, now, row the sync role gets, what the controller does with it)
        #[derive(Debug)]
        enum Then {
            Deliver,
            FailUntil(i64),
        }
        let table = [
            ("oldest first", 200, Some(a1), Then::FailUntil(1_000)),
            (
                "a1 backs off: a2, a3 wait; b goes",
                200,
                Some(b1),
                Then::Deliver,
            ),
            ("node rows never wait", 200, Some(node), Then::Deliver),
            ("a1 not due yet", 999, None, Then::Deliver),
            ("a1 due again", 1_000, Some(a1), Then::Deliver),
            ("then a2", 1_000, Some(a2), Then::Deliver),
            ("then a3", 1_000, Some(a3), Then::Deliver),
            ("all delivered", 1_000_000, None, Then::Deliver),
        ];
        for (step, now, want, then) in table {
            let got = j.next_due(now).unwrap();
            assert_eq!(got.as_ref().map(|r| r.id), want, "{step}");
            let Some(row) = got else { continue };
            match then {
                Then::Deliver => assert!(j.mark_delivered(row.id, now).unwrap(), "{step}"),
                Then::FailUntil(t) => assert!(j.mark_failed(row.id, "503", t).unwrap(), "{step}"),
            }
        }
        assert_eq!(j.pending_count().unwrap(), 0);
        let kinds: Vec<_> = j
            .rows_for_job("a")
            .unwrap()
            .iter()
            .map(|r| (r.kind, r.attempts, r.delivered_at_ms.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                (OutboxKind::HealthEvent, 1, true),
                (OutboxKind::Upload, 0, true),
                (OutboxKind::TerminalReport, 0, true),
            ]
        );
    }

    #[test]
    fn a_heartbeat_supersedes_the_pending_one_and_never_waits() {
        let (_d, _p, j) = journal();
        let hb = |body: &str, now| NewOutboxItem::job_heartbeat("a", body.into(), now);
        let first = j.enqueue(&hb("1", 10)).unwrap();
        assert!(matches!(first, Enqueued::Added { superseded: 0, .. }));
        let second = j.enqueue(&hb("2", 20)).unwrap();
        assert!(matches!(second, Enqueued::Added { superseded: 1, .. }));
        let third = added(j.enqueue(&hb("3", 30)).unwrap());
        let rows = j.rows_for_job("a").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id, rows[0].body.as_str()), (third, "3"));

        // An upload stuck in backoff holds back the job's later rows, not its heartbeat.
        let up = added(
            j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 31))
                .unwrap(),
        );
        let later = added(j.enqueue(&health(Some("a"), "e", 32)).unwrap());
        assert_eq!(due(&j, 40), Some(third));
        assert!(j.mark_delivered(third, 40).unwrap());
        assert_eq!(due(&j, 40), Some(up));
        assert!(j.mark_failed(up, "timeout", 10_000).unwrap());
        assert_eq!(due(&j, 50), None, "the health event waits for the upload");
        let fresh = added(j.enqueue(&hb("4", 50)).unwrap());
        assert_eq!(due(&j, 50), Some(fresh), "the heartbeat does not");
        // A heartbeat in backoff does not hold anything back either.
        assert!(j.mark_failed(fresh, "503", 60_000).unwrap());
        assert_eq!(due(&j, 10_000), Some(up));
        assert!(j.mark_delivered(up, 10_000).unwrap());
        assert_eq!(due(&j, 10_000), Some(later));

        // A delivered heartbeat is history: not superseded, not counted.
        assert!(j.mark_delivered(later, 10_000).unwrap());
        let rows = j.rows_for_job("a").unwrap();
        let heartbeats: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == OutboxKind::JobHeartbeat)
            .map(|r| (r.body.as_str(), r.is_pending()))
            .collect();
        assert_eq!(heartbeats, [("3", false), ("4", true)]);
    }

    #[test]
    fn one_terminal_report_per_job_and_no_heartbeat_after_it() {
        let (_d, _p, j) = journal();
        added(
            j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 1))
                .unwrap(),
        );
        let report = NewOutboxItem::terminal_report("a", r#"{"outcome":"failed"}"#.into(), 2);
        let first = j.enqueue(&report).unwrap();
        assert!(
            matches!(first, Enqueued::Added { superseded: 1, .. }),
            "the pending heartbeat is moot: {first:?}"
        );
        let id = first.id().unwrap();
        // A second report, even a different one, is a no-op: the first one stands.
        let other = NewOutboxItem::terminal_report("a", r#"{"outcome":"cancelled"}"#.into(), 3);
        assert_eq!(j.enqueue(&other).unwrap(), Enqueued::AlreadyQueued { id });
        assert_eq!(
            j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 4))
                .unwrap(),
            Enqueued::NotNeeded
        );
        assert!(j.mark_delivered(id, 5).unwrap());
        assert_eq!(j.enqueue(&report).unwrap(), Enqueued::AlreadyQueued { id });
        let rows = j.rows_for_job("a").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].body, r#"{"outcome":"failed"}"#);
        // The other job is untouched.
        assert!(matches!(
            j.enqueue(&NewOutboxItem::terminal_report("b", "{}".into(), 6))
                .unwrap(),
            Enqueued::Added { .. }
        ));
    }

    #[test]
    fn health_events_are_never_resent_after_a_201_even_across_a_reopen() {
        let (_d, path, j) = journal();
        let e1 = added(j.enqueue(&health(None, "ev-1", 1)).unwrap());
        let e2 = added(j.enqueue(&health(Some("a"), "ev-2", 2)).unwrap());
        assert_eq!(due(&j, 10), Some(e1));
        assert!(j.mark_delivered(e1, 10).unwrap());
        drop(j);

        // The box restarts.
        let j = Journal::open(&path).unwrap();
        assert_eq!(due(&j, 20), Some(e2));
        assert!(
            !j.mark_delivered(e1, 20).unwrap(),
            "a second 201 changes nothing"
        );
        assert_eq!(
            j.enqueue(&health(None, "ev-1", 21)).unwrap(),
            Enqueued::AlreadyQueued { id: e1 },
            "re-queueing the same event after a crash is a no-op"
        );
        assert!(j.mark_delivered(e2, 22).unwrap());
        assert!(!j.mark_failed(e2, "late timeout", 99).unwrap());
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(due(&j, i64::MAX), None);
        assert_eq!(j.pending_count().unwrap(), 0);
    }

    #[test]
    fn next_due_respects_the_backoff_schedule() {
        let (_d, _p, j) = journal();
        let id = added(
            j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 0))
                .unwrap(),
        );
        let mut now = 0;
        // (jitter drawn, delay the backoff gives for this attempt)
        let table = [
            (1.0, 1_000),
            (0.0, 1_000),
            (0.5, 3_000),
            (1.0, 8_000),
            (1.0, 16_000),
            (1.0, 32_000),
            (1.0, 60_000),
            (0.0, 30_000),
        ];
        for (attempt, (jitter, delay_ms)) in table.into_iter().enumerate() {
            let row = j.next_due(now).unwrap().expect("due");
            assert_eq!((row.id, row.attempts as usize), (id, attempt));
            // The sync role rebuilds the backoff from the journaled attempt count.
            let delay = Backoff::OUTBOX_DELIVERY
                .with_attempt(row.attempts)
                .next_delay(jitter);
            assert_eq!(delay.as_millis(), delay_ms, "attempt {attempt}");
            let next = now + delay_ms as i64;
            assert!(j.mark_failed(id, "connect timeout", next).unwrap());
            assert_eq!(due(&j, next - 1), None, "attempt {attempt}: early");
            now = next;
        }
        let row = j.next_due(now).unwrap().unwrap();
        assert_eq!(row.attempts, 8);
        assert_eq!(row.last_error.as_deref(), Some("connect timeout"));
        assert!(j.mark_delivered(id, now).unwrap());
        assert_eq!(due(&j, i64::MAX), None);
    }

    #[test]
    fn abandoned_rows_are_kept_and_stop_holding_back_the_job() {
        let (_d, _p, j) = journal();
        let bad = added(j.enqueue(&health(Some("a"), "bad", 1)).unwrap());
        let up = added(
            j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 2))
                .unwrap(),
        );
        let report = added(
            j.enqueue(&NewOutboxItem::terminal_report("a", "{}".into(), 3))
                .unwrap(),
        );
        assert_eq!(due(&j, 10), Some(bad));
        assert!(j.mark_abandoned(bad, "400: unknown key", 10).unwrap());
        assert!(!j.mark_abandoned(bad, "again", 11).unwrap());
        assert_eq!(due(&j, 10), Some(up));
        // The job machine's DropUpload: the controller ended the job.
        assert_eq!(
            j.abandon_pending("a", OutboxKind::Upload, "controller: failed", 12)
                .unwrap(),
            1
        );
        assert_eq!(due(&j, 12), Some(report));
        assert_eq!(j.pending_count().unwrap(), 1);
        let rows = j.rows_for_job("a").unwrap();
        assert_eq!(rows.len(), 3, "nothing is deleted");
        assert_eq!(rows[0].last_error.as_deref(), Some("400: unknown key"));
        assert_eq!(rows[0].abandoned_at_ms, Some(10));
        assert!(!rows[1].is_pending());
    }

    #[test]
    fn rows_for_an_unknown_job_are_refused() {
        let (_d, _p, j) = journal();
        let err = j
            .enqueue(&NewOutboxItem::terminal_report("nope", "{}".into(), 1))
            .unwrap_err();
        assert!(
            matches!(err, JournalError::NoSuchJob(ref id) if id == "nope"),
            "{err}"
        );
        let err = j
            .record_upload("nope", 0, Path::new("r.wav"), 1, "ab")
            .unwrap_err();
        assert!(matches!(err, JournalError::NoSuchJob(_)), "{err}");
        assert_eq!(j.pending_count().unwrap(), 0);
    }

    #[test]
    fn upload_chunks_and_their_acknowledgements() {
        let (_d, _p, j) = journal();
        let sha = "ab".repeat(32);
        j.record_upload("a", 1, Path::new("recording.1.wav"), 10, &sha)
            .unwrap();
        j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &sha)
            .unwrap();
        assert!(j.acknowledge_upload("a", 0, 100).unwrap());
        assert!(j.acknowledge_upload("a", 0, 200).unwrap());
        assert!(!j.acknowledge_upload("a", 7, 200).unwrap());
        let rows = j.uploads("a").unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.chunk, r.size, r.acknowledged_at_ms))
                .collect::<Vec<_>>(),
            [(0, 20, Some(100)), (1, 10, None)],
            "by chunk; the first acknowledgement's time is kept"
        );
        assert_eq!(rows[0].path, Path::new("recording.0.wav"));

        // A re-render: an identical chunk stays acknowledged, a changed one does not.
        j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &sha)
            .unwrap();
        assert_eq!(j.uploads("a").unwrap()[0].acknowledged_at_ms, Some(100));
        j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &"cd".repeat(32))
            .unwrap();
        assert_eq!(j.uploads("a").unwrap()[0].acknowledged_at_ms, None);
        assert!(j.uploads("b").unwrap().is_empty());

        // (controller's checksum, matches ours?)
        let table = [
            (format!("sha256:{sha}"), true),
            (format!("sha256:{}", sha.to_uppercase()), true),
            (sha.clone(), true),
            (format!("sha256:{}", "cd".repeat(32)), false),
            ("sha256:".to_string(), false),
            (String::new(), false),
        ];
        let row = &rows[0];
        for (checksum, want) in table {
            assert_eq!(row.matches_checksum(&checksum), want, "{checksum:?}");
        }
    }

    #[test]
    fn a_v1_journal_migrates_with_its_outbox() {
        let (_d, path) = temp();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO outbox (kind, body, idempotency_key, next_attempt_ms, \
                 created_at_ms) VALUES ('health_event', '{}', 'health_event:old', 5, 5)",
                [],
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.schema_version().unwrap(), schema::CURRENT);
        let row = j.next_due(5).unwrap().unwrap();
        assert_eq!(
            (row.kind, row.abandoned_at_ms, row.is_pending()),
            (OutboxKind::HealthEvent, None, true)
        );
    }

    #[test]
    fn the_schema_allows_one_pending_heartbeat_per_job() {
        let (_d, _p, j) = journal();
        added(
            j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 1))
                .unwrap(),
        );
        // Bypassing enqueue(): the index itself refuses a second pending heartbeat.
        let err = j.conn.execute(
            "INSERT INTO outbox (job_id, kind, body, idempotency_key, next_attempt_ms, \
             created_at_ms) VALUES ('a', 'job_heartbeat', '{}', 'x', 1, 1)",
            [],
        );
        assert!(err.is_err());
    }

    /// The capture role queues while the sync role delivers, on two connections to one
    /// file: every health event is delivered exactly once, in order, none is lost.
    #[test]
    fn two_roles_share_the_outbox() {
        const EVENTS: usize = 150;
        let (dir, path, j) = journal();
        drop(j);
        let capture_path = path.clone();
        let capture = std::thread::spawn(move || {
            let j = Journal::open(&capture_path).unwrap();
            for i in 0..EVENTS {
                let now = i as i64;
                j.enqueue(&health(Some("a"), &format!("ev-{i:04}"), now))
                    .unwrap();
                j.enqueue(&NewOutboxItem::job_heartbeat("a", format!("{i}"), now))
                    .unwrap();
                if i % 10 == 0 {
                    j.enqueue(&health(None, &format!("node-{i:04}"), now))
                        .unwrap();
                }
            }
            j.enqueue(&NewOutboxItem::terminal_report(
                "a",
                "{}".into(),
                EVENTS as i64,
            ))
            .unwrap();
        });
        let sync = std::thread::spawn(move || {
            let j = Journal::open(&path).unwrap();
            let mut delivered = Vec::new();
            let mut idle_after_report = 0;
            loop {
                match j.next_due(i64::MAX).unwrap() {
                    Some(row) => {
                        // Every third attempt fails once, to exercise retries.
                        if row.attempts == 0 && row.id % 3 == 0 {
                            let marked = j.mark_failed(row.id, "503", 0).unwrap();
                            assert!(marked || row.kind == OutboxKind::JobHeartbeat, "{row:?}");
                            continue;
                        }
                        // A heartbeat may be superseded while it is being sent.
                        let marked = j.mark_delivered(row.id, 1).unwrap();
                        assert!(marked || row.kind == OutboxKind::JobHeartbeat, "{row:?}");
                        delivered.push((row.kind, row.idempotency_key));
                    }
                    None => {
                        let done = delivered
                            .iter()
                            .any(|(k, _)| *k == OutboxKind::TerminalReport);
                        if done {
                            idle_after_report += 1;
                            if idle_after_report > 3 {
                                return delivered;
                            }
                        }
                        std::thread::yield_now();
                    }
                }
            }
        });
        capture.join().unwrap();
        let delivered = sync.join().unwrap();
        let job_events: Vec<&str> = delivered
            .iter()
            .filter(|(k, key)| *k == OutboxKind::HealthEvent && key.contains("ev-"))
            .map(|(_, key)| key.as_str())
            .collect();
        let want: Vec<String> = (0..EVENTS)
            .map(|i| format!("health_event:ev-{i:04}"))
            .collect();
        assert_eq!(job_events, want, "each once, in order");
        let node_events = delivered
            .iter()
            .filter(|(_, key)| key.contains("node-"))
            .count();
        assert_eq!(node_events, EVENTS.div_ceil(10));
        assert_eq!(
            delivered.last().map(|(k, _)| *k),
            Some(OutboxKind::TerminalReport),
            "the report comes after the job's events"
        );
        let j = Journal::open(&dir.path().join("journal.db")).unwrap();
        assert_eq!(j.pending_count().unwrap(), 0);
        let heartbeats = j
            .rows_for_job("a")
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == OutboxKind::JobHeartbeat)
            .count();
        assert!(
            heartbeats <= EVENTS,
            "superseded heartbeats are gone: {heartbeats}"
        );
    }
}
