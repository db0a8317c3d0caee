//! `edgerec repair DIR` (and the same code at start-up): finalizes every job a crash left
//! behind. Open segments are repaired from their file length, closed ones checked against
//! their files (the files are the truth for frame counts), the interval lost between the
//! last written frame and the crash goes on the timeline as `crash_recovered`, and the job
//! is stitched and ends in a terminal state. Jobs a live process still owns are skipped.

use std::path::{Path, PathBuf};

use crate::core::job::JobState;
use crate::core::timeline::{EventKind, GapFill, TimelineEvent};
use crate::journal::{JobRow, Journal, JournalError, SegmentRow, SegmentState};
use crate::roles::finalize::{self, FinalizeError, Finalized, JobEnd};
use crate::roles::owner;
use crate::segment::repair::{repair_segment, segment_frames};
use crate::segment::writer::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("no journal at {0}: is this an edgerec output directory?")]
    NoJournal(PathBuf),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("finalize: {0}")]
    Finalize(#[from] FinalizeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What one repair pass did.
#[derive(Debug, Default)]
pub struct RepairSummary {
    pub finalized: Vec<Finalized>,
    pub segments_repaired: usize,
    /// Segments whose files could not be parsed; kept on disk untouched for an operator.
    pub unreadable: Vec<PathBuf>,
    /// Jobs skipped because a live process owns them.
    pub live: Vec<String>,
}

pub fn repair_dir(out: &Path, fill: GapFill) -> Result<RepairSummary, RepairError> {
    let path = finalize::journal_path(out);
    if !path.exists() {
        return Err(RepairError::NoJournal(path));
    }
    let mut journal = Journal::open(&path)?;
    let mut summary = RepairSummary::default();
    for job in journal.non_terminal_jobs()? {
        let io = |source| RepairError::Io {
            path: job.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&job.dir).map_err(io)?;
        let Some(_lock) = owner::try_lock(&job.dir).map_err(io)? else {
            summary.live.push(job.id.clone());
            continue;
        };
        repair_job(&mut journal, &job, fill, &mut summary)?;
    }
    Ok(summary)
}

/// Brings every segment row of `job` in line with its file (repairing open ones) and
/// returns the wall time of the job's last write to disk.
pub fn reconcile_job_segments(
    journal: &Journal,
    job: &JobRow,
    summary: &mut RepairSummary,
) -> Result<i64, RepairError> {
    let mut last_write_ms = job.started_at_ms.unwrap_or(job.created_at_ms);
    for seg in journal.segments(&job.id)? {
        let file = job.dir.join(&seg.path);
        if let Some(mtime) = modified_ms(&file) {
            last_write_ms = last_write_ms.max(mtime);
        }
        reconcile_segment(journal, &seg, &file, summary)?;
    }
    Ok(last_write_ms)
}

fn repair_job(
    journal: &mut Journal,
    job: &JobRow,
    fill: GapFill,
    summary: &mut RepairSummary,
) -> Result<(), RepairError> {
    let last_write_ms = reconcile_job_segments(journal, job, summary)?;
    let was_capturing = matches!(
        job.state,
        JobState::Claimed | JobState::Capturing | JobState::Stopping
    );
    if was_capturing {
        let (end, _) = crate::roles::runner::timeline_position(journal, &job.id)?;
        let gap = crash_gap_frames(job, end, last_write_ms, now_ms());
        let ev = TimelineEvent::new(EventKind::CrashRecovered, end, now_ms())
            .with_gap(gap)
            .with_detail(format!(
                "capture ended without finalizing (crash or power loss); last write at frame {end}"
            ));
        journal.add_event(&job.id, &ev)?;
        log::warn!(
            "{}: crash recovered at frame {end}, {gap} frames lost",
            job.id
        );
    }
    summary.finalized.push(finalize::finalize(
        journal,
        job,
        &JobEnd::new("crashed: finalized by repair"),
        fill,
    )?);
    Ok(())
}

/// Frames between the last frame on disk and the moment capture died (the files' last
/// write), as the wall clock measures them; capped by the job's duration.
///
/// A job with a duration was booked until its window's end, so the gap runs to `now`
/// capped at that end (the output's time keeps matching the wall clock). An open-ended
/// job's gap is what we know was lost: up to its last write.
pub fn crash_gap_frames(job: &JobRow, end_frame: u64, last_write_ms: i64, now_ms: i64) -> u64 {
    let Some(started) = job.started_at_ms else {
        return 0;
    };
    let until = if job.duration_frames.is_some() {
        now_ms.max(last_write_ms)
    } else {
        last_write_ms
    };
    let expected = ((until - started).max(0) as u128 * job.spec.rate as u128 / 1000) as u64;
    let gap = expected.saturating_sub(end_frame);
    match job.duration_frames {
        Some(d) => gap.min(d.saturating_sub(end_frame)),
        None => gap,
    }
}

/// Brings one segment row in line with its file.
fn reconcile_segment(
    journal: &Journal,
    seg: &SegmentRow,
    file: &Path,
    summary: &mut RepairSummary,
) -> Result<(), RepairError> {
    match seg.state {
        SegmentState::Open => repair_and_record(journal, seg, file, summary),
        SegmentState::Unreadable => Ok(()),
        // A closed segment may still have lost its tail to a power cut: trust the file.
        SegmentState::Closed | SegmentState::Repaired => match segment_frames(file) {
            Ok((_, frames)) if frames == seg.frames => Ok(()),
            _ => repair_and_record(journal, seg, file, summary),
        },
    }
}

/// Repairs `file` and closes its row at what the file holds; a file that cannot be
/// parsed is left on disk untouched and its row marked unreadable for an operator.
fn repair_and_record(
    journal: &Journal,
    seg: &SegmentRow,
    file: &Path,
    summary: &mut RepairSummary,
) -> Result<(), RepairError> {
    let now = now_ms();
    match repair_segment(file) {
        Ok(report) => {
            journal.close_segment(seg.id, report.frames, SegmentState::Repaired, now)?;
            summary.segments_repaired += 1;
            log::info!(
                "repaired {} ({} frames, {} trailing bytes dropped)",
                file.display(),
                report.frames,
                report.trailing_bytes_dropped
            );
        }
        Err(e) => {
            log::error!(
                "cannot repair {}: {e}; left on disk untouched",
                file.display()
            );
            journal.close_segment(seg.id, 0, SegmentState::Unreadable, now)?;
            summary.unreadable.push(file.to_path_buf());
        }
    }
    Ok(())
}

fn modified_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}
