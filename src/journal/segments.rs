//! The `segments` table: one row per WAV segment file, placed on its job's timeline.

use super::{Doing, Journal, JournalError, Result, col, col_u64, parse_col, to_sql_u64};
use crate::core::format::StreamSpec;
use rusqlite::{Row, params};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentState {
    /// Being written; after a crash, the janitor repairs it.
    Open,
    /// Finalized by the writer.
    Closed,
    /// Was open at a crash; its header was patched to the last whole frame.
    Repaired,
    /// Was open at a crash and could not be repaired; rendering skips it (a gap).
    Unreadable,
}

impl SegmentState {
    pub const ALL: [SegmentState; 4] = [
        SegmentState::Open,
        SegmentState::Closed,
        SegmentState::Repaired,
        SegmentState::Unreadable,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SegmentState::Open => "open",
            SegmentState::Closed => "closed",
            SegmentState::Repaired => "repaired",
            SegmentState::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for SegmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SegmentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SegmentState::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown segment state {s:?}"))
    }
}

/// A segment as first written: open, no frames yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSegment {
    pub job_id: String,
    pub seq: u32,
    /// Relative to the job's directory.
    pub path: String,
    /// Where its first frame sits on the job's timeline.
    pub first_frame: u64,
    pub spec: StreamSpec,
    pub opened_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub id: i64,
    pub job_id: String,
    pub seq: u32,
    /// Relative to the job's directory.
    pub path: String,
    pub first_frame: u64,
    /// Frames known durable (last synced, or final once closed).
    pub frames: u64,
    pub spec: StreamSpec,
    pub state: SegmentState,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

const SEGMENT_COLS: &str = "id, job_id, seq, path, first_frame, frames, format, rate, channels, \
     state, opened_at_ms, closed_at_ms";

fn segment_from_row(r: &Row<'_>) -> Result<SegmentRow> {
    const DOING: &str = "reading a segments row";
    let id: i64 = col(r, 0, DOING)?;
    let key = format!("segment {id}");
    Ok(SegmentRow {
        id,
        job_id: col(r, 1, DOING)?,
        seq: col(r, 2, DOING)?,
        path: col(r, 3, DOING)?,
        first_frame: col_u64(r, 4, DOING)?,
        frames: col_u64(r, 5, DOING)?,
        spec: StreamSpec {
            format: parse_col("segments.format", &key, &col::<String>(r, 6, DOING)?)?,
            rate: col(r, 7, DOING)?,
            channels: col(r, 8, DOING)?,
        },
        state: parse_col("segments.state", &key, &col::<String>(r, 9, DOING)?)?,
        opened_at_ms: col(r, 10, DOING)?,
        closed_at_ms: col(r, 11, DOING)?,
    })
}

impl Journal {
    /// Records a newly opened segment (state open, 0 frames); returns its id.
    pub fn insert_segment(&self, seg: &NewSegment) -> Result<i64> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO segments (job_id, seq, path, first_frame, frames, format, rate, \
                 channels, state, opened_at_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9)",
            )
            .doing("inserting a segment")?;
        stmt.execute(params![
            seg.job_id,
            seg.seq,
            seg.path,
            to_sql_u64(seg.first_frame, "first_frame")?,
            seg.spec.format.name(),
            seg.spec.rate,
            seg.spec.channels,
            SegmentState::Open.name(),
            seg.opened_at_ms,
        ])
        .doing("inserting a segment")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how many frames of an open segment are durable (after each fdatasync).
    pub fn update_segment_frames(&self, seg_id: i64, frames: u64) -> Result<()> {
        let frames = to_sql_u64(frames, "segment frames")?;
        let changed = self
            .conn
            .prepare_cached("UPDATE segments SET frames = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![seg_id, frames]))
            .doing("updating a segment's frames")?;
        if changed == 0 {
            Err(JournalError::NoSuchSegment(seg_id))
        } else {
            Ok(())
        }
    }

    /// Closes a segment with its final frame count, as `Closed`, `Repaired` or `Unreadable`.
    pub fn close_segment(
        &self,
        seg_id: i64,
        frames: u64,
        state: SegmentState,
        now_ms: i64,
    ) -> Result<()> {
        if state == SegmentState::Open {
            return Err(JournalError::CloseAsOpen(seg_id));
        }
        let frames = to_sql_u64(frames, "segment frames")?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE segments SET frames = ?2, state = ?3, closed_at_ms = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![seg_id, frames, state.name(), now_ms]))
            .doing("closing a segment")?;
        if changed == 0 {
            Err(JournalError::NoSuchSegment(seg_id))
        } else {
            Ok(())
        }
    }

    /// Marks a segment unreadable, keeping the frames it was known to hold, and puts `gap`
    /// (its `segment_unreadable` event) on its job's timeline, both or neither.
    pub fn mark_segment_unreadable(
        &self,
        seg: &SegmentRow,
        gap: &crate::core::timeline::TimelineEvent,
        now_ms: i64,
    ) -> Result<()> {
        self.write_tx(|_| {
            self.close_segment(seg.id, seg.frames, SegmentState::Unreadable, now_ms)?;
            self.add_event(&seg.job_id, gap).map(drop)
        })
    }

    /// A job's segments in sequence order.
    pub fn segments(&self, job_id: &str) -> Result<Vec<SegmentRow>> {
        let sql = format!("SELECT {SEGMENT_COLS} FROM segments WHERE job_id = ?1 ORDER BY seq");
        self.query_segments(&sql, &[&job_id], "listing a job's segments")
    }

    /// Segments still open, across all jobs: after a crash, the ones to repair.
    pub fn open_segments(&self) -> Result<Vec<SegmentRow>> {
        let sql = format!(
            "SELECT {SEGMENT_COLS} FROM segments WHERE state = 'open' ORDER BY job_id, seq"
        );
        self.query_segments(&sql, &[], "listing open segments")
    }

    fn query_segments(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        doing: &'static str,
    ) -> Result<Vec<SegmentRow>> {
        let mut stmt = self.conn.prepare_cached(sql).doing(doing)?;
        let mut rows = stmt.query(params).doing(doing)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().doing(doing)? {
            out.push(segment_from_row(r)?);
        }
        Ok(out)
    }
}
