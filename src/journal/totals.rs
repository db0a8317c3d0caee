//! Box-wide totals for fleet monitoring (the metrics textfile): what the journal has seen
//! over the jobs it still holds. Read-only, a handful of aggregate queries.

use super::outbox::PENDING;
use super::{Doing, Journal, Result};

/// The journal's totals at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Jobs per state name (`capturing`, `delivered`, ...).
    pub jobs_by_state: Vec<(String, u64)>,
    /// Frames held in segments, over every job.
    pub segment_frames: u64,
    /// Timeline events per kind name, and the frames of audio their gaps cover.
    pub events_by_kind: Vec<(String, u64, u64)>,
    pub outbox_pending: u64,
    /// Creation time of the oldest pending outbox row (node-level rows included).
    pub outbox_oldest_ms: Option<i64>,
    /// Bytes of uploads the controller acknowledged.
    pub uploaded_bytes: u64,
}

impl Journal {
    pub fn totals(&self) -> Result<Totals> {
        const DOING: &str = "reading the journal's totals";
        let count = |v: i64| v.unsigned_abs();
        let mut t = Totals::default();
        let mut stmt = (self.conn)
            .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
            .doing(DOING)?;
        t.jobs_by_state = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))
            .and_then(|rows| rows.collect())
            .doing(DOING)?;
        let mut stmt = (self.conn)
            .prepare_cached(
                "SELECT kind, COUNT(*), COALESCE(SUM(gap_frames), 0) FROM events \
                 GROUP BY kind ORDER BY kind",
            )
            .doing(DOING)?;
        t.events_by_kind = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, count(r.get(1)?), count(r.get(2)?)))
            })
            .and_then(|rows| rows.collect())
            .doing(DOING)?;
        let frames: i64 = (self.conn)
            .query_row("SELECT COALESCE(SUM(frames), 0) FROM segments", [], |r| {
                r.get(0)
            })
            .doing(DOING)?;
        t.segment_frames = count(frames);
        let (pending, oldest): (i64, Option<i64>) = (self.conn)
            .query_row(
                &format!("SELECT COUNT(*), MIN(created_at_ms) FROM outbox o WHERE {PENDING}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .doing(DOING)?;
        (t.outbox_pending, t.outbox_oldest_ms) = (count(pending), oldest);
        let uploaded: i64 = (self.conn)
            .query_row(
                "SELECT COALESCE(SUM(size), 0) FROM uploads WHERE acknowledged_at_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .doing(DOING)?;
        t.uploaded_bytes = count(uploaded);
        Ok(t)
    }
}
