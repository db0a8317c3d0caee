//! The `uploads` table: the chunks (and renditions) of a job's rendered recording, their
//! checksums, and whether the controller acknowledged each. An acknowledged row is never
//! sent again, across restarts of either role.

use super::jobs::path_text;
use super::outbox::require_job;
use super::{Doing, Journal, JournalError, Result, col, col_u64, to_sql_u64};
use rusqlite::{Row, params};
use std::path::{Path, PathBuf};

/// The `uploads` row of the raw rendition (`rendition=raw`) of chunk k is `RAW_ROW + k`
/// (k = 0 for a whole recording): past any chunk index, so the table (keyed by job and
/// chunk) holds both renditions without a new column.
pub const RAW_ROW: u32 = 1 << 30;

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

impl Journal {
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
