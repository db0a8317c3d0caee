//! The `outbox` table: what the agent owes the controller (the chunks it uploads and their
//! acknowledgements are the `uploads` table, `journal/uploads.rs`).
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

use super::{Doing, Journal, JournalError, Result, col, col_u64, parse_col};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::fmt;
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

    /// The PUT of chunk `index`, rendered while the job still captures: one row per
    /// chunk, so a re-issue after a crash is a no-op.
    pub fn chunk_upload(job_id: &str, index: u32, body: String, now_ms: i64) -> NewOutboxItem {
        let key = format!("upload:{job_id}:chunk:{index}");
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

const OUTBOX_COLS: &str = "id, job_id, kind, body, idempotency_key, attempts, next_attempt_ms, \
     delivered_at_ms, abandoned_at_ms, last_error, created_at_ms";

/// SQL: the row `o` is neither delivered nor abandoned.
pub(super) const PENDING: &str = "o.delivered_at_ms IS NULL AND o.abandoned_at_ms IS NULL";

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

pub(super) fn require_job(conn: &Connection, job_id: &str) -> Result<()> {
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

    /// Row `id` made progress (a chunk of its upload was acknowledged): its failures so
    /// far no longer count towards giving up.
    pub fn reset_attempts(&self, id: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(&format!(
                "UPDATE outbox AS o SET attempts = 0 WHERE o.id = ?1 AND {PENDING}"
            ))
            .and_then(|mut s| s.execute([id]))
            .doing("resetting an outbox row's attempts")?;
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
}

#[cfg(test)]
mod tests;
