//! The `events` table (a job's quality timeline), and the shape of a role's beat (kept in
//! a run file, see `run_files`).

use super::{
    Doing, Journal, Result, col, col_opt_u64, col_u64, parse_col, to_sql_opt_u64, to_sql_u64,
};
use crate::core::timeline::TimelineEvent;
use rusqlite::params;

/// A role's last heartbeat, as `edgerec status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeatRow {
    pub role: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: tells a stale beat from before a reboot.
    pub boot_id: String,
    pub started_at_ms: i64,
    pub last_beat_ms: i64,
    /// Free text: what the role is doing (e.g. the job and frames captured).
    pub progress: String,
}

impl Journal {
    /// Appends a timeline event to a job; returns its id.
    pub fn add_event(&self, job_id: &str, ev: &TimelineEvent) -> Result<i64> {
        let frame = to_sql_u64(ev.frame, "event frame")?;
        let gap_frames = to_sql_opt_u64(ev.gap_frames, "gap_frames")?;
        self.conn
            .prepare_cached(
                "INSERT INTO events (job_id, frame, at_ms, kind, detail, gap_frames) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    job_id,
                    frame,
                    ev.at_ms,
                    ev.kind.name(),
                    ev.detail,
                    gap_frames
                ])
            })
            .doing("inserting an event")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A job's timeline, by frame, then in insertion order.
    pub fn events(&self, job_id: &str) -> Result<Vec<TimelineEvent>> {
        const DOING: &str = "reading events";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, frame, at_ms, kind, detail, gap_frames FROM events \
                 WHERE job_id = ?1 ORDER BY frame, id",
            )
            .doing(DOING)?;
        let mut rows = stmt.query([job_id]).doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            let key = format!("event {}", col::<i64>(r, 0, DOING)?);
            out.push(TimelineEvent {
                frame: col_u64(r, 1, DOING)?,
                at_ms: col(r, 2, DOING)?,
                kind: parse_col("events.kind", &key, &col::<String>(r, 3, DOING)?)?,
                detail: col(r, 4, DOING)?,
                gap_frames: col_opt_u64(r, 5, DOING)?,
            });
        }
        Ok(out)
    }

    /// A job's events journaled after the row `after_id`, with their row ids, in
    /// journal order: what a follower of the timeline has not seen yet.
    pub fn events_after(&self, job_id: &str, after_id: i64) -> Result<Vec<(i64, TimelineEvent)>> {
        const DOING: &str = "reading new events";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, frame, at_ms, kind, detail, gap_frames FROM events \
                 WHERE job_id = ?1 AND id > ?2 ORDER BY id",
            )
            .doing(DOING)?;
        let mut rows = stmt
            .query(rusqlite::params![job_id, after_id])
            .doing(DOING)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(DOING)? {
            let id = col::<i64>(r, 0, DOING)?;
            let key = format!("event {id}");
            out.push((
                id,
                TimelineEvent {
                    frame: col_u64(r, 1, DOING)?,
                    at_ms: col(r, 2, DOING)?,
                    kind: parse_col("events.kind", &key, &col::<String>(r, 3, DOING)?)?,
                    detail: col(r, 4, DOING)?,
                    gap_frames: col_opt_u64(r, 5, DOING)?,
                },
            ));
        }
        Ok(out)
    }
}
