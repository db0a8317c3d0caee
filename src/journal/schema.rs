//! The journal's schema, as an ordered list of migrations keyed by `PRAGMA user_version`.
//!
//! Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a
//! migration that has shipped, since journals in the field have already applied it.
//! Tables are STRICT so a type slip is an error at write time, not a surprise at read time.
//! Enum-like text columns (states, kinds) are not CHECKed: adding a state would then need a
//! table rebuild; readers parse them and report a `Corrupt` row instead.

pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: the whole product's tables; outbox, uploads and beats are used by later issues.
    r#"
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    source            TEXT NOT NULL CHECK (source IN ('local', 'controller')),
    controller_job_id TEXT,
    recording_id      TEXT,
    command_json      TEXT NOT NULL,
    backend           TEXT NOT NULL,
    device            TEXT NOT NULL,
    format            TEXT NOT NULL,
    rate              INTEGER NOT NULL,
    channels          INTEGER NOT NULL,
    duration_frames   INTEGER,
    dir               TEXT NOT NULL,          -- the job's directory; segment paths are relative to it
    state             TEXT NOT NULL,
    end_cause         TEXT,
    created_at_ms     INTEGER NOT NULL,
    started_at_ms     INTEGER,                -- wall time of timeline frame 0
    ended_at_ms       INTEGER,                -- set once, when the job reaches a terminal state
    updated_at_ms     INTEGER NOT NULL,
    captured_frames   INTEGER NOT NULL DEFAULT 0
) STRICT;
-- non_terminal_jobs() at every start; newest-first listings for `edgerec status`.
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_created ON jobs (created_at_ms);
-- A controller job is claimed at most once, whatever the sync role retries.
CREATE UNIQUE INDEX jobs_controller_job ON jobs (controller_job_id)
    WHERE controller_job_id IS NOT NULL;

CREATE TABLE segments (
    id           INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    path         TEXT NOT NULL,               -- relative to jobs.dir
    first_frame  INTEGER NOT NULL,
    frames       INTEGER NOT NULL DEFAULT 0,
    format       TEXT NOT NULL,               -- per segment: a replugged device may differ
    rate         INTEGER NOT NULL,
    channels     INTEGER NOT NULL,
    state        TEXT NOT NULL,               -- open, closed, repaired, unreadable
    opened_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    UNIQUE (job_id, seq)                      -- also serves segments(job) by seq
) STRICT;
-- The janitor's open_segments() after a crash: few rows, but scanned at every start.
CREATE INDEX segments_open ON segments (state) WHERE state = 'open';

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    frame      INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    gap_frames INTEGER
) STRICT;
CREATE INDEX events_job_frame ON events (job_id, frame, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    -- Undelivered reports outlive a pruned job.
    job_id          TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL
) STRICT;
-- The sync role's "what is due" poll.
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE delivered_at_ms IS NULL;
CREATE INDEX outbox_job ON outbox (job_id);

CREATE TABLE uploads (
    job_id             TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk              INTEGER NOT NULL,
    path               TEXT NOT NULL,
    size               INTEGER NOT NULL,
    sha256             TEXT NOT NULL,
    acknowledged_at_ms INTEGER,
    PRIMARY KEY (job_id, chunk)
) STRICT;

CREATE TABLE beats (
    role          TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    last_beat_ms  INTEGER NOT NULL,
    progress      TEXT NOT NULL DEFAULT ''
) STRICT;
"#,
    // v2: the outbox's delivery rules (journal/outbox.rs). A row the controller refused for
    // good, or that became moot, is abandoned: kept with its error, never retried.
    r#"
ALTER TABLE outbox ADD COLUMN abandoned_at_ms INTEGER;
-- "Due" now means neither delivered nor abandoned.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_ms)
    WHERE delivered_at_ms IS NULL AND abandoned_at_ms IS NULL;
-- next_due()'s per-job order check: the job's earlier pending rows.
CREATE INDEX outbox_job_pending ON outbox (job_id, id)
    WHERE delivered_at_ms IS NULL AND abandoned_at_ms IS NULL;
-- A heartbeat is current state: at most one pending per job (a newer one replaces it).
CREATE UNIQUE INDEX outbox_one_heartbeat ON outbox (job_id)
    WHERE kind = 'job_heartbeat' AND delivered_at_ms IS NULL AND abandoned_at_ms IS NULL;
"#,
    // v3: the controller job state machine's facts beyond the state (stop pending, the
    // controller's verdict, the rendered file, recovery counts): core/job_machine.rs.
    r#"
CREATE TABLE machines (
    job_id        TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    state_json    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
"#,
    // v4: capture groups. Jobs sharing a device and window are captured once, by their
    // leader; each member renders its own channel subset from the leader's segments.
    r#"
CREATE TABLE capture_groups (
    job_id    TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    leader_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE
) STRICT;
CREATE INDEX capture_groups_leader ON capture_groups (leader_id);
"#,
    // v5: retention by the controller's cache policies (roles/sync/retention.rs): which
    // delivered recordings' files were pruned, by which policy and rule.
    r#"
CREATE TABLE pruned (
    job_id    TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    policy_id TEXT NOT NULL,
    reason    TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL
) STRICT;
CREATE INDEX pruned_at ON pruned (at_ms);
"#,
];

/// The schema version this binary writes and understands.
pub(crate) const CURRENT: i64 = MIGRATIONS.len() as i64;
