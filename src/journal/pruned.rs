//! The `pruned` table: delivered recordings whose local files retention deleted, with the
//! policy and rule that did it, for `edgerec status` and the log. The row is written
//! before the files go, so a crash half way is finished by the next sweep.

use super::{Doing, Journal, Result, col, col_u64, to_sql_u64};
use rusqlite::{OptionalExtension, params};

/// One pruned recording.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PrunedRow {
    pub job_id: String,
    pub policy_id: String,
    /// `delete_after_upload`, `max_age`, `max_bytes` or `min_free_disk`.
    pub reason: String,
    pub bytes: u64,
    pub at_ms: i64,
}

impl Journal {
    /// Journals that `row.job_id`'s files are being pruned; a second call is a no-op.
    pub fn record_pruned(&self, row: &PrunedRow) -> Result<()> {
        let bytes = to_sql_u64(row.bytes, "pruned bytes")?;
        self.conn
            .prepare_cached(
                "INSERT INTO pruned (job_id, policy_id, reason, bytes, at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (job_id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.job_id,
                    row.policy_id,
                    row.reason,
                    bytes,
                    row.at_ms
                ])
            })
            .doing("journaling a pruned recording")?;
        Ok(())
    }

    pub fn pruned(&self, job_id: &str) -> Result<Option<PrunedRow>> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT job_id, policy_id, reason, bytes, at_ms FROM pruned WHERE job_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([job_id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get::<_, i64>(3)?,
                        r.get(4)?,
                    ))
                })
                .optional()
            })
            .doing("reading a pruned recording")?;
        Ok(
            found.map(|(job_id, policy_id, reason, bytes, at_ms)| PrunedRow {
                job_id,
                policy_id,
                reason,
                bytes: bytes.unsigned_abs(),
                at_ms,
            }),
        )
    }

    /// The newest `limit` pruned recordings, newest first.
    pub fn recently_pruned(&self, limit: u32) -> Result<Vec<PrunedRow>> {
        const DOING: &str = "listing pruned recordings";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT job_id, policy_id, reason, bytes, at_ms FROM pruned \
                 ORDER BY at_ms DESC, job_id LIMIT ?1",
            )
            .doing(DOING)?;
        let mut rows = stmt.query([limit]).doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            out.push(PrunedRow {
                job_id: col(r, 0, DOING)?,
                policy_id: col(r, 1, DOING)?,
                reason: col(r, 2, DOING)?,
                bytes: col_u64(r, 3, DOING)?,
                at_ms: col(r, 4, DOING)?,
            });
        }
        Ok(out)
    }
}
