//! The controller's SQLite database: schema (as `user_version` migrations), connection
//! setup, and row readers. The transitions themselves live in `jobs.rs`, `nodes.rs` and
//! `upload.rs`; each runs in one `BEGIN IMMEDIATE` transaction through [`Store::tx`].
//!
//! One `Store` is one connection: the server keeps a small pool of them (a request takes
//! one for its transaction on a blocking thread), and each `Admin` has its own. WAL lets readers run beside the one writer; `busy_timeout`
//! makes a writer wait for the lock instead of failing.

use crate::model::{JobStatus, JobSummary, RecordingStatus, RecordingSummary, Timestamp};
use edgerec_sqlite::{OpenError, Synchronous};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection waits for another's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE nodes (
    id                        TEXT PRIMARY KEY,
    name                      TEXT NOT NULL,
    token_sha256              TEXT NOT NULL UNIQUE,   -- hex; the token itself is never stored
    max_concurrent_recordings INTEGER NOT NULL DEFAULT 1,
    status                    TEXT NOT NULL DEFAULT 'provisioning',
    heartbeat_json            TEXT,                   -- the last accepted heartbeat body
    last_heartbeat_at_ms      INTEGER,
    created_at_ms             INTEGER NOT NULL
) STRICT;

CREATE TABLE interfaces (
    id            TEXT PRIMARY KEY,
    node_id       TEXT NOT NULL REFERENCES nodes (id),
    match_key     TEXT NOT NULL,                      -- systemRef, else systemName
    body_json     TEXT NOT NULL,                      -- the interface as last reported
    absent_at_ms  INTEGER,                            -- set while the node does not report it
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (node_id, match_key)
) STRICT;

CREATE TABLE recordings (
    id                  TEXT PRIMARY KEY,
    node_id             TEXT NOT NULL REFERENCES nodes (id),
    status              TEXT NOT NULL,
    cached              INTEGER NOT NULL DEFAULT 0,
    cache_path          TEXT,                         -- relative to the store directory
    raw_cache_path      TEXT,
    enhanced_cache_path TEXT,
    checksum            TEXT,
    duration_seconds    REAL,
    size_bytes          INTEGER,
    file_name           TEXT,
    mime_type           TEXT,
    chunk_total         INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
    seq                  INTEGER PRIMARY KEY,         -- insertion order: the queue's last tie-break
    id                   TEXT NOT NULL UNIQUE,
    node_id              TEXT NOT NULL REFERENCES nodes (id),
    recording_id         TEXT NOT NULL REFERENCES recordings (id),
    status               TEXT NOT NULL,
    command_json         TEXT NOT NULL,
    capture_group_id     TEXT,                        -- copied from the command for the queue
    track_group_id       TEXT,
    track_index          INTEGER,
    created_at_ms        INTEGER NOT NULL,
    claimed_by           TEXT,
    started_at_ms        INTEGER,
    last_heartbeat_at_ms INTEGER,
    lease_expires_at_ms  INTEGER,
    stop_requested_at_ms INTEGER,
    completed_at_ms      INTEGER,
    failure_reason       TEXT,
    updated_at_ms        INTEGER NOT NULL
) STRICT;
-- claim-next: a node's queued jobs, oldest first.
CREATE INDEX jobs_queue ON jobs (node_id, status, created_at_ms);
-- The lease runner: only live jobs.
CREATE INDEX jobs_live ON jobs (status) WHERE status IN ('running', 'stop_requested');
CREATE INDEX jobs_recording ON jobs (recording_id);

CREATE TABLE chunks (
    recording_id     TEXT NOT NULL REFERENCES recordings (id),
    chunk_index      INTEGER NOT NULL,                -- 0-based, as on the wire
    rendition        TEXT NOT NULL,                   -- 'primary' (incl. enhanced) or 'raw'
    job_id           TEXT NOT NULL,
    cache_path       TEXT NOT NULL,
    checksum         TEXT NOT NULL,
    size_bytes       INTEGER NOT NULL,
    duration_seconds REAL,
    file_name        TEXT NOT NULL,
    mime_type        TEXT NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (recording_id, chunk_index, rendition)
) STRICT;

CREATE TABLE health_events (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    node_id        TEXT NOT NULL REFERENCES nodes (id),
    type           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    details_json   TEXT NOT NULL,
    opened_at_ms   INTEGER NOT NULL,
    recording_id   TEXT,
    schedule_id    TEXT,
    received_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX health_events_node ON health_events (node_id, seq);

-- The latest frame per interface (live levels are current state, not history).
CREATE TABLE meter_frames (
    node_id        TEXT NOT NULL REFERENCES nodes (id),
    interface_id   TEXT NOT NULL,
    frame_json     TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (node_id, interface_id)
) STRICT;
"#,
    r#"
-- Day-0 enrollment: single-use bootstrap tokens (only their SHA-256), and the SSH public
-- key each node handed over (the private key is checked and dropped, never stored).
CREATE TABLE bootstrap_tokens (
    token_sha256  TEXT PRIMARY KEY,
    node_id       TEXT NOT NULL REFERENCES nodes (id),
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
) STRICT;
CREATE TABLE node_ssh_keys (
    node_id      TEXT PRIMARY KEY REFERENCES nodes (id),
    public_key   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    username     TEXT,
    stored_at_ms INTEGER NOT NULL
) STRICT;
"#,
    r#"
-- Channel-map templates assigned to a node or to one of its interfaces, as Rakkr's
-- settings store keeps them; GET /nodes/{id}/channel-map-assignments serves them.
CREATE TABLE channel_map_assignments (
    id             TEXT PRIMARY KEY,
    node_id        TEXT NOT NULL REFERENCES nodes (id),
    target_type    TEXT NOT NULL CHECK (target_type IN ('interface', 'node')),
    target_id      TEXT NOT NULL,
    template_json  TEXT NOT NULL,
    assigned_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX channel_map_assignments_node ON channel_map_assignments (node_id);
-- The node config's recorderCachePolicies, as the operator set them.
ALTER TABLE nodes ADD COLUMN cache_policies_json TEXT NOT NULL DEFAULT '[]';
"#,
    r#"
-- Live-listen chunks (POST /nodes/{id}/listen/chunk): the newest few per node.
CREATE TABLE listen_chunks (
    seq            INTEGER PRIMARY KEY,
    node_id        TEXT NOT NULL REFERENCES nodes (id),
    rendition      TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    wav            BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX listen_chunks_node ON listen_chunks (node_id, seq);
"#,
    r#"
-- The node config's monitorEnhancement ({engine, requested}); Rakkr derives it from the
-- listeners asking for enhanced live audio, here the operator sets it. NULL: not sent.
ALTER TABLE nodes ADD COLUMN monitor_enhancement_json TEXT;
"#,
];

const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Why the database could not be used. Every variant means "the store is down or broken":
/// the HTTP layer answers 503 (unavailable) or 500 (a bug or a corrupt row).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("controller db {path:?}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("controller db {path:?}: journal_mode is {mode:?}, not WAL")]
    NotWal { path: PathBuf, mode: String },
    #[error("controller db schema v{found} is newer than this edgerec (v{known}); upgrade edgerec")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("controller db: {doing}: {source}")]
    Sqlite {
        doing: &'static str,
        source: rusqlite::Error,
    },
    #[error("controller db: corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Busy, locked, I/O or full: the store is (perhaps briefly) unavailable, not wrong.
    pub(crate) fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        let e = match self {
            StoreError::Open { .. } => return true,
            StoreError::Sqlite { source, .. } => source,
            _ => return false,
        };
        matches!(
            e.sqlite_error_code(),
            Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen)
        )
    }
}

/// Attaches "what we were doing" to a rusqlite error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for rusqlite::Result<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { doing, source })
    }
}

/// One connection to the controller database.
pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if missing) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // FULL: a lost commit here is a lost claim or a lost completion; writes are few.
        let mut conn = edgerec_sqlite::open_wal(path, BUSY_TIMEOUT, Synchronous::Full).map_err(
            |e| match e {
                OpenError::Sqlite(source) => open_err(source),
                OpenError::NotWal(mode) => StoreError::NotWal {
                    path: path.to_path_buf(),
                    mode,
                },
            },
        )?;
        migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so
    /// a read-check-write in `f` is atomic). Commits if `f` returns `Ok`.
    pub fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Not nested anywhere: each caller runs one transaction at a time on its own
        // connection, so the unchecked form (which allows `&self`) is safe.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .doing("beginning a transaction")?;
        let out = f(&tx)?;
        tx.commit().doing("committing")?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot; no write lock).
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .doing("beginning a read")?;
        let out = f(&tx)?;
        tx.commit().doing("ending a read")?;
        Ok(out)
    }

    #[cfg(test)]
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .doing("reading user_version")
}

/// Applies the missing migrations, each with its version bump in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let found = user_version(conn)?;
        if found > CURRENT {
            return Err(StoreError::SchemaTooNew {
                found,
                known: CURRENT,
            });
        }
        if found == CURRENT {
            return Ok(());
        }
        if found < 0 {
            return Err(StoreError::Corrupt(format!("user_version {found}")));
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .doing("beginning a migration")?;
        // Re-read under the lock: another process may have migrated meanwhile.
        if user_version(&tx)? != found {
            continue;
        }
        tx.execute_batch(MIGRATIONS[found as usize])
            .doing("applying a migration")?;
        tx.pragma_update(None, "user_version", found + 1)
            .doing("bumping user_version")?;
        tx.commit().doing("committing a migration")?;
        log::info!("controller db: migrated schema to v{}", found + 1);
    }
}

/// The columns [`job_from_row`] reads, in order.
pub(crate) const JOB_COLS: &str = "id, node_id, recording_id, status, command_json, \
    created_at_ms, claimed_by, started_at_ms, last_heartbeat_at_ms, lease_expires_at_ms, \
    stop_requested_at_ms, completed_at_ms, failure_reason";

fn sql<T>(r: rusqlite::Result<T>) -> Result<T, StoreError> {
    r.doing("reading a row")
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

pub(crate) fn job_from_row(r: &Row<'_>) -> Result<JobSummary, StoreError> {
    let id: String = sql(r.get(0))?;
    let status: String = sql(r.get(3))?;
    let status: JobStatus = status
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("job {id}: {e}")))?;
    let command: String = sql(r.get(4))?;
    let command = serde_json::from_str(&command)
        .map_err(|e| StoreError::Corrupt(format!("job {id}: command: {e}")))?;
    Ok(JobSummary {
        node_id: sql(r.get(1))?,
        recording_id: sql(r.get(2))?,
        status,
        command,
        created_at: Timestamp(sql(r.get(5))?),
        claimed_by: sql(r.get(6))?,
        started_at: ts(sql(r.get(7))?),
        last_heartbeat_at: ts(sql(r.get(8))?),
        lease_expires_at: ts(sql(r.get(9))?),
        stop_requested_at: ts(sql(r.get(10))?),
        completed_at: ts(sql(r.get(11))?),
        failure_reason: sql(r.get(12))?,
        id,
    })
}

/// Reads one job.
pub(crate) fn job(tx: &Connection, id: &str) -> Result<Option<JobSummary>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))
        .doing("reading a job")?;
    let mut rows = stmt.query(params![id]).doing("reading a job")?;
    match rows.next().doing("reading a job")? {
        Some(r) => Ok(Some(job_from_row(r)?)),
        None => Ok(None),
    }
}

/// Reads the jobs a `WHERE ...` clause (after `FROM jobs`) selects.
pub(crate) fn jobs_where(
    tx: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<JobSummary>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs {clause}"))
        .doing("listing jobs")?;
    let mut rows = stmt.query(args).doing("listing jobs")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().doing("listing jobs")? {
        out.push(job_from_row(r)?);
    }
    Ok(out)
}

const RECORDING_COLS: &str = "id, node_id, status, cached, cache_path, raw_cache_path, \
    enhanced_cache_path, checksum, duration_seconds, size_bytes, file_name, mime_type, \
    chunk_total, created_at_ms, updated_at_ms, \
    (SELECT count(*) FROM chunks c WHERE c.recording_id = recordings.id \
     AND c.rendition = 'primary')";

fn recording_from_row(r: &Row<'_>) -> Result<RecordingSummary, StoreError> {
    let id: String = sql(r.get(0))?;
    let status: String = sql(r.get(2))?;
    let status: RecordingStatus = status
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("recording {id}: {e}")))?;
    let size: Option<i64> = sql(r.get(9))?;
    let chunk_total: Option<i64> = sql(r.get(12))?;
    let chunk_count: i64 = sql(r.get(15))?;
    Ok(RecordingSummary {
        node_id: sql(r.get(1))?,
        status,
        cached: sql(r.get(3))?,
        cache_path: sql(r.get(4))?,
        raw_cache_path: sql(r.get(5))?,
        enhanced_cache_path: sql(r.get(6))?,
        checksum: sql(r.get(7))?,
        duration_seconds: sql(r.get(8))?,
        size: size.and_then(|v| u64::try_from(v).ok()),
        file_name: sql(r.get(10))?,
        mime_type: sql(r.get(11))?,
        chunk_total: chunk_total.and_then(|v| u32::try_from(v).ok()),
        chunk_count: u32::try_from(chunk_count).unwrap_or(u32::MAX),
        created_at: Timestamp(sql(r.get(13))?),
        updated_at: Timestamp(sql(r.get(14))?),
        id,
    })
}

pub(crate) fn recording(tx: &Connection, id: &str) -> Result<Option<RecordingSummary>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {RECORDING_COLS} FROM recordings WHERE id = ?1"
        ))
        .doing("reading a recording")?;
    let mut rows = stmt.query(params![id]).doing("reading a recording")?;
    match rows.next().doing("reading a recording")? {
        Some(r) => Ok(Some(recording_from_row(r)?)),
        None => Ok(None),
    }
}

/// Sets a recording's status.
pub(crate) fn set_recording_status(
    tx: &Connection,
    id: &str,
    status: RecordingStatus,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE recordings SET status = ?2, updated_at_ms = ?3 WHERE id = ?1",
        params![id, status.as_str(), now],
    )
    .doing("setting a recording's status")?;
    Ok(())
}

/// The node a token hash belongs to.
pub(crate) fn node_for_token(
    tx: &Connection,
    token_sha256: &str,
) -> Result<Option<String>, StoreError> {
    tx.query_row(
        "SELECT id FROM nodes WHERE token_sha256 = ?1",
        params![token_sha256],
        |r| r.get(0),
    )
    .optional()
    .doing("authenticating a node")
}

/// The node's channel-map bundles, `{assignment, template}`, oldest assignment first.
pub(crate) fn channel_map_bundles(tx: &Connection, node: &str) -> Result<Vec<Value>, StoreError> {
    const DOING: &str = "reading channel-map assignments";
    let bundle = |r: &Row<'_>| -> rusqlite::Result<Value> {
        let template: String = r.get(3)?;
        let template: Value = serde_json::from_str(&template).unwrap_or_default();
        let assignment = serde_json::json!({
            "id": r.get::<_, String>(0)?, "targetType": r.get::<_, String>(1)?,
            "targetId": r.get::<_, String>(2)?, "templateId": template["id"],
            "assignedAt": crate::time::iso_ms(r.get(4)?),
        });
        Ok(serde_json::json!({"assignment": assignment, "template": template}))
    };
    tx.prepare_cached(
        "SELECT id, target_type, target_id, template_json, assigned_at_ms \
         FROM channel_map_assignments WHERE node_id = ?1 ORDER BY assigned_at_ms, id",
    )
    .and_then(|mut stmt| stmt.query_map(params![node], bundle)?.collect())
    .doing(DOING)
}

pub(crate) fn node_exists(tx: &Connection, id: &str) -> Result<bool, StoreError> {
    tx.query_row("SELECT 1 FROM nodes WHERE id = ?1", params![id], |_| Ok(()))
        .optional()
        .doing("reading a node")
        .map(|r| r.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(user_version(s.conn()).unwrap(), CURRENT);
        drop(s);
        let s = Store::open(&path).unwrap();
        s.conn()
            .pragma_update(None, "user_version", CURRENT + 1)
            .unwrap();
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
