//! The SQLite journal: jobs, segments, timeline events, beats (and the sync role's outbox
//! and uploads). One `Journal` per thread or process; all share one file in WAL mode.

mod batch;
mod events;
mod jobs;
mod machines;
mod outbox;
mod pruned;
pub mod run_files;
mod schema;
mod segments;
mod totals;
mod uploads;

#[cfg(test)]
mod tests;

use crate::core::job::JobState;
use edgerec_sqlite::{OpenError, Synchronous};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use events::BeatRow;
pub use jobs::{JobRow, JobSource, NewJob};
pub use outbox::{Enqueued, NewOutboxItem, OutboxKind, OutboxRow};
pub use pruned::PrunedRow;
pub use segments::{NewSegment, SegmentRow, SegmentState};
pub use totals::Totals;
pub use uploads::{RAW_ROW, UploadRow};

/// How long a connection waits for the other role's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {doing}: {source}")]
    Sqlite {
        doing: &'static str,
        source: rusqlite::Error,
    },
    #[error("journal {path:?}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("journal {path:?} does not exist")]
    Missing { path: PathBuf },
    #[error("journal {path:?}: journal_mode is {mode:?}, not \"wal\"; the roles cannot share it")]
    NotWal { path: PathBuf, mode: String },
    #[error("journal schema v{found} is newer than this edgerec (knows v{known}); upgrade edgerec")]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "journal schema v{found} is older than this edgerec (v{known}); \
         run edgerec read-write once to migrate it"
    )]
    SchemaTooOld { found: i64, known: i64 },
    #[error("journal: corrupt row: {what}")]
    Corrupt { what: String },
    #[error("job {id:?}: illegal transition {from} -> {to} (a terminal state is final)")]
    IllegalTransition {
        id: String,
        from: JobState,
        to: JobState,
    },
    #[error("journal: no job {0:?}")]
    NoSuchJob(String),
    #[error("run file {what}: {source}")]
    RunFile {
        what: String,
        source: std::io::Error,
    },
    #[error("journal: no segment {0}")]
    NoSuchSegment(i64),
    #[error("journal: segment {0}: closing it as \"open\" makes no sense")]
    CloseAsOpen(i64),
    #[error("journal: {what} {value} does not fit SQLite's 64-bit signed integer")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("path {0:?} is not UTF-8; the journal stores paths as text")]
    NonUtf8Path(PathBuf),
    #[error(
        "journal {path:?} is damaged ({problem}); nothing was finalized. Stop edgerec and run \
         `edgerec repair --rebuild {dir}`: it keeps the damaged file beside the new one and \
         rebuilds jobs and segments from the segment files"
    )]
    Damaged {
        path: PathBuf,
        dir: String,
        problem: String,
    },
}

impl JournalError {
    /// The journal file itself is damaged (quick_check failed, or SQLite says so).
    pub fn is_damaged(&self) -> bool {
        match self {
            JournalError::Damaged { .. } => true,
            JournalError::Open { source, .. } | JournalError::Sqlite { source, .. } => {
                sqlite_says_damaged(source)
            }
            _ => false,
        }
    }
}

fn sqlite_says_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Attaches "what we were doing" to a rusqlite error.
trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T>;
}

impl<T> Doing<T> for rusqlite::Result<T> {
    fn doing(self, doing: &'static str) -> Result<T> {
        self.map_err(|source| JournalError::Sqlite { doing, source })
    }
}

/// Parses a stored text field, or says which row holds garbage.
fn parse_col<T: std::str::FromStr>(
    table_col: &str,
    key: &dyn std::fmt::Display,
    s: &str,
) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| JournalError::Corrupt {
        what: format!("{table_col} of {key}: {e}"),
    })
}

/// Reads column `i` of a row; `doing` names the table being read.
fn col<T: rusqlite::types::FromSql>(
    r: &rusqlite::Row<'_>,
    i: usize,
    doing: &'static str,
) -> Result<T> {
    r.get(i).doing(doing)
}

// Frame counts are u64 in Rust but SQLite integers are i64 (rusqlite's u64 support sits
// behind its `fallible_uint` feature): convert explicitly, refusing what does not fit.

/// A count to store; `what` names it in the error.
fn to_sql_u64(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| JournalError::OutOfRange { what, value })
}

fn to_sql_opt_u64(value: Option<u64>, what: &'static str) -> Result<Option<i64>> {
    value.map(|v| to_sql_u64(v, what)).transpose()
}

/// Reads a stored count; a negative one is a corrupt row.
fn col_u64(r: &rusqlite::Row<'_>, i: usize, doing: &'static str) -> Result<u64> {
    col_opt_u64(r, i, doing)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("{doing}: NULL count in column {i}"),
    })
}

fn col_opt_u64(r: &rusqlite::Row<'_>, i: usize, doing: &'static str) -> Result<Option<u64>> {
    let v: Option<i64> = col(r, i, doing)?;
    v.map(|v| {
        u64::try_from(v).map_err(|_| JournalError::Corrupt {
            what: format!("{doing}: negative count {v} in column {i}"),
        })
    })
    .transpose()
}

/// One connection to the journal.
pub struct Journal {
    conn: Connection,
    /// Whether writes join a batch (`batch`), and how deep in a unit.
    batch: batch::BatchState,
    /// The journal file's directory: job directories are stored relative to it.
    dir: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.conn.path())
            .finish()
    }
}

/// The directory a journal file sits in ("" for a bare file name: the working directory).
fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs `PRAGMA quick_check` (its whole-file pass costs milliseconds on a journal's size):
/// a damaged journal is reported, never run on. Open errors that SQLite classes as
/// corruption become `Damaged` too.
fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let damaged = |problem: String| JournalError::Damaged {
        path: path.to_path_buf(),
        dir: dir_of(path).display().to_string(),
        problem,
    };
    let mut stmt = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| damaged(e.to_string()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| damaged(e.to_string()))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(damaged(rows.join("; ")))
}

/// Opens the file read-write in WAL mode at `synchronous=FULL`.
fn open_conn(path: &Path) -> Result<Connection> {
    // FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a
    // lost state transition means a job re-run or a recording never delivered. Writes are
    // few (a state change per transition, a segment row per rotation, ~one per 5 min), so
    // one fsync each costs little; hints that need no fsync say so (`unsynced`).
    edgerec_sqlite::open_wal(path, BUSY_TIMEOUT, Synchronous::Full).map_err(|e| match e {
        OpenError::Sqlite(source) => JournalError::Open {
            path: path.to_path_buf(),
            source,
        },
        OpenError::NotWal(mode) => JournalError::NotWal {
            path: path.to_path_buf(),
            mode,
        },
    })
}

/// No journal yet: neither the file nor a WAL beside it holds a byte.
fn is_fresh(path: &Path) -> bool {
    let empty = |p: &Path| std::fs::metadata(p).map_or(true, |m| m.len() == 0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    empty(path) && empty(Path::new(&wal))
}

/// Turns an error SQLite classes as corruption into `Damaged`.
fn damaged_or(path: &Path, e: JournalError) -> JournalError {
    if e.is_damaged() && !matches!(e, JournalError::Damaged { .. }) {
        return JournalError::Damaged {
            path: path.to_path_buf(),
            dir: dir_of(path).display().to_string(),
            problem: e.to_string(),
        };
    }
    e
}

impl Journal {
    /// Opens (creating if missing) the journal read-write, checks it (`quick_check`) and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> Result<Journal> {
        Journal::open_checked(path).map_err(|e| damaged_or(path, e))
    }

    fn open_checked(path: &Path) -> Result<Journal> {
        let fresh = is_fresh(path);
        let mut conn = open_conn(path)?;
        // Writers take the lock up front: a deferred transaction that reads and then writes
        // fails with SQLITE_BUSY at once (no busy wait) if the other role wrote in between.
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        // Before anything writes (migrations, path fixes): a damaged file is left as found.
        // A file this open created holds nothing to check.
        if !fresh {
            check_integrity(&conn, path)?;
        }
        migrate(&mut conn)?;
        let journal = Journal {
            conn,
            batch: Default::default(),
            dir: dir_of(path),
        };
        match journal.relativize_job_dirs() {
            Ok(0) => {}
            Ok(n) => log::info!("{n} job directories now stored relative to the journal"),
            Err(e) => log::warn!("job directories left absolute ({e}); resolved at each read"),
        }
        Ok(journal)
    }

    /// Another connection to this journal, for another thread of the same work (a job's
    /// stop watch, its writer). This one already ran `quick_check` and the migrations when
    /// it opened, so the sibling only opens the file (WAL, FULL): nothing is checked twice.
    pub fn sibling(&self) -> Result<Journal> {
        let path = PathBuf::from(self.conn.path().unwrap_or_default());
        let mut conn = open_conn(&path).map_err(|e| damaged_or(&path, e))?;
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        Ok(Journal {
            conn,
            batch: Default::default(),
            dir: self.dir.clone(),
        })
    }

    /// Opens an existing journal read-only (for `edgerec status`): no migrations, no writes.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        if !path.exists() {
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            });
        }
        let open_err = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let found = user_version(&conn)?;
        if found > schema::CURRENT {
            return Err(JournalError::SchemaTooNew {
                found,
                known: schema::CURRENT,
            });
        }
        if found < schema::CURRENT {
            return Err(JournalError::SchemaTooOld {
                found,
                known: schema::CURRENT,
            });
        }
        Ok(Journal {
            conn,
            batch: Default::default(),
            dir: dir_of(path),
        })
    }

    /// Checks the file (`PRAGMA quick_check`), as every read-write open does: `Damaged`
    /// with SQLite's findings when it fails.
    pub fn quick_check(&self, path: &Path) -> Result<()> {
        check_integrity(&self.conn, path)
    }

    /// The schema version of the open journal.
    pub fn schema_version(&self) -> Result<i64> {
        user_version(&self.conn)
    }

    /// Moves a job to `state` and records `event` on its timeline in one transaction. The
    /// state is durable when this returns: act on the transition only after it.
    pub fn transition(
        &mut self,
        id: &str,
        state: JobState,
        end_cause: Option<&str>,
        event: Option<&crate::core::timeline::TimelineEvent>,
        now_ms: i64,
    ) -> Result<()> {
        self.atomically(|j| {
            j.set_job_state(id, state, end_cause, now_ms)?;
            if let Some(ev) = event {
                j.add_event(id, ev)?;
            }
            Ok(())
        })
    }
}

fn user_version(conn: &Connection) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .doing("reading user_version")
}

/// Applies the missing migrations with their version bumps in one transaction (one
/// commit, one fsync, for a new journal's five), so a crash leaves the journal at the
/// version it had or at the current one.
fn migrate(conn: &mut Connection) -> Result<()> {
    let known = schema::CURRENT;
    loop {
        // Checked before taking the write lock: re-opening an up-to-date journal writes nothing.
        let found = user_version(conn)?;
        if found > known {
            return Err(JournalError::SchemaTooNew { found, known });
        }
        if found == known {
            return Ok(());
        }
        if found < 0 {
            return Err(JournalError::Corrupt {
                what: format!("user_version {found}"),
            });
        }
        let tx = conn.transaction().doing("beginning a migration")?;
        // Re-read under the lock: the other role may have migrated meanwhile.
        if user_version(&tx)? != found {
            continue;
        }
        for version in found..known {
            tx.execute_batch(schema::MIGRATIONS[version as usize])
                .doing("applying a migration")?;
        }
        tx.pragma_update(None, "user_version", known)
            .doing("bumping user_version")?;
        tx.commit().doing("committing a migration")?;
        for version in found..known {
            log::info!("migrated schema to v{}", version + 1);
        }
    }
}
