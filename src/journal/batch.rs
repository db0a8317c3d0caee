//! Write transactions, and batches of them: a role loop that makes several journal writes
//! in one pass (catch-up events, outbox rows, machine steps) commits them once, so the
//! flash sees one WAL commit and one fsync instead of one per write.
//!
//! A batch begins lazily, at its first write (a pass with nothing to write commits
//! nothing), and each unit inside it (an `atomically` block, a read-check-write method)
//! is a savepoint: a unit that fails is rolled back alone, as its own transaction would
//! have been, and the batch commits the units that succeeded.

use super::{Doing, Journal, Result};
use edgerec_sqlite::Synchronous;
use rusqlite::Connection;

/// Sets a hint's connection back to FULL when the hint is over; marks it stale if it can't.
struct RestoreFull<'a>(&'a Journal);

impl Drop for RestoreFull<'_> {
    fn drop(&mut self) {
        let j = self.0;
        match j.set_synchronous(Synchronous::Full) {
            Ok(()) => j.batch.level.set(Level::Full),
            Err(e) => {
                j.batch.level.set(Level::Stale);
                log::warn!(
                    "synchronous=FULL not restored after a hint ({e}); set again before the next write"
                );
            }
        }
    }
}

/// Where a connection stands: in a batch or not, how deep in units, and at which
/// `synchronous` level its next commit runs.
#[derive(Debug, Default)]
pub(super) struct BatchState {
    batching: std::cell::Cell<bool>,
    depth: std::cell::Cell<u32>,
    level: std::cell::Cell<Level>,
}

/// The connection's `synchronous` level, as this side knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Level {
    /// FULL: every commit is fsynced (the connection's level outside hints).
    #[default]
    Full,
    /// NORMAL, on purpose: a hint is committing (`unsynced`).
    Hint,
    /// NORMAL, by accident: a hint's restore to FULL failed. The next durable write sets
    /// FULL first, or fails: it never commits without its fsync.
    Stale,
}

impl Journal {
    /// Starts a batch: the writes that follow, up to [`Self::end_batch`], commit together.
    /// Nothing is begun until the first write. A no-op inside a batch.
    pub fn begin_batch(&self) {
        self.batch.batching.set(true);
    }

    /// Whether writes are being batched (what acts on them waits for the commit).
    pub fn in_batch(&self) -> bool {
        self.batch.batching.get()
    }

    /// Commits the batch's writes, if it made any. On error they are rolled back (the
    /// caller's in-memory view of what it journaled must be refreshed).
    pub fn end_batch(&self) -> Result<()> {
        self.batch.batching.set(false);
        if self.conn.is_autocommit() || self.batch.depth.get() > 0 {
            return Ok(());
        }
        let committed = self
            .conn
            .execute_batch("COMMIT")
            .doing("committing a batch");
        if committed.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        committed
    }

    /// Runs `f`'s writes as a hint that need not survive a power cut: committed without an
    /// fsync (WAL keeps it consistent, and the next FULL commit's fsync of the same WAL
    /// makes it durable with everything before it). Inside a batch or a transaction it
    /// simply joins it: that commit decides.
    ///
    /// SQLite has no per-transaction setting, so the connection goes to NORMAL for the
    /// hint and back to FULL after it; a restore that fails is retried before the next
    /// durable write ([`Level::Stale`]). A second connection for hints would cost an open
    /// (its schema read) and a close per journal handle, in every short-lived process.
    pub fn unsynced<T>(&self, f: impl FnOnce(&Journal) -> Result<T>) -> Result<T> {
        if self.batch.batching.get() || !self.conn.is_autocommit() {
            return f(self);
        }
        if self.durable().is_err() || self.set_synchronous(Synchronous::Normal).is_err() {
            // Still stale (its writes fail at `durable`), or at FULL: durable, an fsync more.
            return f(self);
        }
        self.batch.level.set(Level::Hint);
        let _back_to_full = RestoreFull(self); // also when `f` unwinds
        f(self)
    }

    /// Before a durable write: the connection is at FULL (set again after a failed restore).
    fn durable(&self) -> Result<()> {
        if self.batch.level.get() == Level::Stale {
            self.set_synchronous(Synchronous::Full)?;
            self.batch.level.set(Level::Full);
        }
        Ok(())
    }

    fn set_synchronous(&self, level: Synchronous) -> Result<()> {
        self.conn
            .pragma_update(None, "synchronous", level.pragma())
            .doing("setting synchronous")
    }

    /// Runs `f` in one write transaction: everything it writes commits together or not at
    /// all. Journal methods called on the `&Journal` inside join the transaction.
    pub fn atomically<T>(&mut self, f: impl FnOnce(&Journal) -> Result<T>) -> Result<T> {
        let this = &*self;
        this.unit(|| f(this))
    }

    /// Runs `f` inside a write transaction: its own if none is open, else the caller's
    /// (from `atomically`), so read-check-write methods stay atomic either way.
    pub(super) fn write_tx<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.unit(|| f(&self.conn))
    }

    fn unit<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let depth = &self.batch.depth;
        // Inside a unit (or a transaction someone else opened): join it.
        if depth.get() > 0 || (!self.batch.batching.get() && !self.conn.is_autocommit()) {
            return f();
        }
        if self.conn.is_autocommit() {
            self.durable()?; // a transaction begins here: it commits at FULL (or in a hint)
        }
        if !self.batch.batching.get() {
            let tx = self
                .conn
                .unchecked_transaction()
                .doing("beginning a transaction")?;
            depth.set(1);
            let out = f();
            depth.set(0);
            let out = out?;
            tx.commit().doing("committing a transaction")?;
            return Ok(out);
        }
        if self.conn.is_autocommit() {
            // The batch's first write takes the write lock, as a transaction of its own would.
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .doing("beginning a batch")?;
        }
        self.conn
            .execute_batch("SAVEPOINT unit")
            .doing("beginning a unit of a batch")?;
        depth.set(1);
        let out = f();
        depth.set(0);
        let end = if out.is_ok() {
            "RELEASE unit"
        } else {
            "ROLLBACK TO unit; RELEASE unit"
        };
        self.conn
            .execute_batch(end)
            .doing("ending a unit of a batch")?;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{JournalError, NewOutboxItem};
    use super::*;

    fn event(key: &str) -> NewOutboxItem {
        NewOutboxItem::health_event(None, key, "{}".into(), 1)
    }

    fn wal_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    #[test]
    fn a_batch_commits_once_and_others_see_it_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut j = Journal::open(&path).unwrap();
        let other = Journal::open(&path).unwrap();
        let before = wal_len(&path);
        for key in ["a", "b", "c"] {
            j.enqueue(&event(key)).unwrap();
        }
        let one_by_one = wal_len(&path) - before;
        let before = wal_len(&path);
        j.begin_batch();
        for key in ["d", "e", "f"] {
            j.enqueue(&event(key)).unwrap();
        }
        j.atomically(|j| j.enqueue(&event("g")).map(drop)).unwrap();
        assert_eq!(other.pending_count().unwrap(), 3, "not committed yet");
        j.end_batch().unwrap();
        assert_eq!(other.pending_count().unwrap(), 7);
        let batched = wal_len(&path) - before;
        // One commit writes each page it changed once; three write the same pages thrice.
        assert!(
            batched * 2 < one_by_one,
            "{batched} B batched vs {one_by_one} B"
        );
    }

    #[test]
    fn a_failed_unit_rolls_back_alone_and_an_empty_batch_begins_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut j = Journal::open(&path).unwrap();
        j.begin_batch();
        assert!(j.conn.is_autocommit(), "no write yet: no transaction");
        j.enqueue(&event("kept")).unwrap();
        let failed: Result<()> = j.atomically(|j| {
            j.enqueue(&event("rolled back"))?;
            Err(JournalError::NoSuchJob("x".into()))
        });
        assert!(failed.is_err());
        j.enqueue(&event("kept too")).unwrap();
        j.end_batch().unwrap();
        assert!(j.conn.is_autocommit());
        assert_eq!(j.pending_count().unwrap(), 2);
        j.begin_batch();
        j.end_batch().unwrap();
        assert!(j.conn.is_autocommit());
    }

    fn sync(j: &Journal) -> i64 {
        j.conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_hint_commits_at_normal_and_the_connection_is_back_at_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let j = Journal::open(&path).unwrap();
        let other = Journal::open(&path).unwrap();
        assert_eq!(sync(&j), 2, "FULL");
        let inside = j
            .unsynced(|h| {
                h.enqueue(&event("hint"))?;
                Ok(sync(h))
            })
            .unwrap();
        assert_eq!(inside, 1, "NORMAL for the hint's commit");
        assert_eq!(sync(&j), 2, "FULL again after it");
        assert_eq!(other.pending_count().unwrap(), 1, "committed");
        // A failed hint is set back too.
        let failed: Result<()> = j.unsynced(|_| Err(JournalError::NoSuchJob("x".into())));
        assert!(failed.is_err());
        assert_eq!(sync(&j), 2);
        // Inside a batch it joins the batch, whose commit decides.
        j.begin_batch();
        let inside = j.unsynced(|j| Ok(sync(j))).unwrap();
        j.end_batch().unwrap();
        assert_eq!(inside, 2);
    }

    #[test]
    fn after_a_failed_restore_the_next_durable_write_sets_full_first() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("journal.db")).unwrap();
        // What a restore that failed leaves: the connection at NORMAL, marked stale.
        let stale = |j: &Journal| {
            j.set_synchronous(Synchronous::Normal).unwrap();
            j.batch.level.set(Level::Stale);
        };
        stale(&j);
        let seen = std::cell::Cell::new(0);
        j.write_tx(|c| {
            seen.set(
                c.pragma_query_value(None, "synchronous", |r| r.get(0))
                    .unwrap(),
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.get(), 2, "the transaction ran at FULL");
        assert_eq!(j.batch.level.get(), Level::Full);
        // A batch's first write, and a hint, do the same.
        stale(&j);
        j.begin_batch();
        j.enqueue(&event("batched")).unwrap();
        assert_eq!(sync(&j), 2);
        j.end_batch().unwrap();
        stale(&j);
        let inside = j.unsynced(|h| Ok(sync(h))).unwrap();
        assert_eq!((inside, sync(&j)), (1, 2));
        assert_eq!(j.pending_count().unwrap(), 1);
    }
}
