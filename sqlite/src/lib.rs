//! The one SQLite opener shared by the agent's journal and the reference controller's
//! store: WAL (switched with a bounded retry), `busy_timeout` first, an explicit
//! `synchronous`, foreign keys on.
//!
//! A crate of its own so that both sides can depend on it without the controller
//! depending on the agent (or the agent on the controller's HTTP stack).

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// How many times the WAL switch is retried while another connection holds the file.
const WAL_ATTEMPTS: u32 = 100;
/// The pause between those attempts (so the retry is bounded by about 5 s).
const WAL_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// SQLite's `synchronous` pragma, for WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// In WAL mode the last commits may be lost on power loss (never corrupted).
    Normal,
    /// Every commit is fsynced: what the caller acted on survives a power cut.
    Full,
}

impl Synchronous {
    /// The pragma's value.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Why a database could not be opened in WAL mode.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The file refused WAL (e.g. a file system without shared memory): two connections
    /// could not share it.
    #[error("journal_mode is {0:?}, not \"wal\"")]
    NotWal(String),
}

/// Opens (creating if missing) `path` read-write in WAL mode.
pub fn open_wal(
    path: &Path,
    busy_timeout: Duration,
    synchronous: Synchronous,
) -> Result<Connection, OpenError> {
    let conn = Connection::open(path)?;
    // Set first: the pragmas below and the caller's migrations may wait on another writer.
    conn.busy_timeout(busy_timeout)?;
    let mode = enable_wal(&conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NotWal(mode));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Switches to WAL. Changing the journal mode needs the file to itself, and SQLite answers
/// SQLITE_BUSY at once (no busy handler) when another connection is opening it at the same
/// moment, as the two roles of `edgerec agent` do on a fresh journal: retry, bounded.
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let mut attempts = 0;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < WAL_ATTEMPTS =>
            {
                attempts += 1;
                std::thread::sleep(WAL_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_the_settings_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        for (sync, code) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
            let conn = open_wal(&path, Duration::from_secs(1), sync).unwrap();
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let got: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(got, code, "{sync:?}");
            let fk: i64 = conn
                .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
        }
    }

    #[test]
    fn a_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_wal(dir.path(), Duration::from_secs(1), Synchronous::Full).unwrap_err();
        assert!(matches!(err, OpenError::Sqlite(_)), "{err:?}");
    }
}
