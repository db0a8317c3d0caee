//! `edgerec repair DIR` (and the same code at start-up): finalizes every job a crash left
//! behind. Open segments are repaired from their file length, closed ones checked against
//! their files (the files are the truth for frame counts), the interval lost between the
//! last written frame and the crash goes on the timeline as `crash_recovered`, and the job
//! is stitched and ends in a terminal state. Jobs a live process still owns are skipped.
//!
//! Repair works on the directory it is given alone: job directories are found relative to
//! the journal (a moved or copied output works where it is), a job whose directory lies
//! outside it is left alone, and segment files the journal does not know are listed
//! (`rebuild::unknown_segments`), never deleted. A capture that ended early (a crash past
//! the window) is not padded: the recording ends at its last captured frame and the
//! `crash_recovered` gap on the timeline says why and how long the window ran on.

use std::path::{Path, PathBuf};

use crate::core::job::JobState;
use crate::core::timeline::{EventKind, GapFill, TimelineEvent};
use crate::journal::{JobRow, Journal, JournalError, SegmentRow, SegmentState};
use crate::roles::finalize::{self, FinalizeError, Finalized, JobEnd};
use crate::roles::{owner, rebuild};
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
    #[error(
        "{0} is owned by a running edgerec process: stop the capture and sync roles before \
         rebuilding the journal"
    )]
    Live(PathBuf),
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
    /// Jobs left alone because their directory lies outside the repaired directory.
    pub elsewhere: Vec<(String, PathBuf)>,
    /// Segment files on disk that no journal row names: kept, listed for an operator
    /// (`repair --rebuild` adopts them).
    pub unknown: Vec<PathBuf>,
    /// Jobs `--rebuild` created or completed from segment files.
    pub adopted: Vec<String>,
}

pub fn repair_dir(out: &Path, fill: GapFill) -> Result<RepairSummary, RepairError> {
    let path = finalize::journal_path(out);
    if !path.exists() {
        return Err(RepairError::NoJournal(path));
    }
    let mut journal = Journal::open(&path)?;
    let mut summary = RepairSummary::default();
    repair_jobs(&mut journal, out, fill, &mut summary)?;
    Ok(summary)
}

/// Finalizes every non-terminal job of `journal` whose directory lies inside `out`, then
/// lists the segment files no row names.
pub fn repair_jobs(
    journal: &mut Journal,
    out: &Path,
    fill: GapFill,
    summary: &mut RepairSummary,
) -> Result<(), RepairError> {
    for job in journal.non_terminal_jobs()? {
        if !job.dir.starts_with(out) {
            // An old absolute path to another output: never recreate or write it.
            log::warn!(
                "{}: its directory {} is outside {}; left alone",
                job.id,
                job.dir.display(),
                out.display()
            );
            summary.elsewhere.push((job.id.clone(), job.dir.clone()));
            continue;
        }
        let io = |source| RepairError::Io {
            path: job.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&job.dir).map_err(io)?;
        let Some(_lock) = owner::try_lock(&job.dir).map_err(io)? else {
            summary.live.push(job.id.clone());
            continue;
        };
        repair_job(journal, &job, fill, summary)?;
    }
    summary.unknown = rebuild::unknown_segments(journal, out)?;
    log_unknown(&summary.unknown, out);
    Ok(())
}

fn log_unknown(files: &[PathBuf], out: &Path) {
    for file in files {
        log::warn!(
            "segment {} is not in the journal: kept on disk; `edgerec repair --rebuild {}` adopts it",
            file.display(),
            out.display()
        );
    }
}

/// The segment files under `out` the journal does not know, each logged (a role's
/// start-up: a scan that fails is logged too and yields none).
pub fn unknown_segments_logged(journal: &Journal, out: &Path) -> Vec<PathBuf> {
    match rebuild::unknown_segments(journal, out) {
        Ok(files) => {
            log_unknown(&files, out);
            files
        }
        Err(e) => {
            log::warn!("cannot list the segment files under {}: {e}", out.display());
            Vec::new()
        }
    }
}

/// Brings every segment row of `job` in line with its file (repairing open ones) and
/// returns the wall time of the job's last write to disk.
pub fn reconcile_job_segments(
    journal: &mut Journal,
    job: &JobRow,
    summary: &mut RepairSummary,
) -> Result<i64, RepairError> {
    rebuild::adopt_orphans_of(journal, job)?;
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
        let now = now_ms();
        let gap = crash_gap_frames(job, end, last_write_ms, now);
        let ev = TimelineEvent::new(EventKind::CrashRecovered, end, now)
            .with_gap(gap)
            .with_detail(crash_detail(job, end, gap));
        journal.add_event(&job.id, &ev)?;
        log::warn!(
            "{}: crash recovered at frame {end}, {gap} frames lost",
            job.id
        );
    }
    let cause = if job.backend == rebuild::REBUILT_BACKEND {
        "rebuilt from its segment files by repair --rebuild"
    } else {
        "crashed: finalized by repair"
    };
    summary
        .finalized
        .push(finalize::finalize(journal, job, &JobEnd::new(cause), fill)?);
    Ok(())
}

/// What a crash gap's timeline event says: where capture stopped and, when the window ran
/// on, that the recording ends at its last captured frame rather than being padded.
pub fn crash_detail(job: &JobRow, end: u64, gap: u64) -> String {
    let secs = |frames: u64| frames as f64 / job.spec.rate.max(1) as f64;
    let mut detail = format!(
        "capture ended without finalizing (crash or power loss); last write at frame {end} ({:.3} s)",
        secs(end)
    );
    if gap > 0 {
        detail.push_str(&format!(
            "; the window ran on {:.3} s more: the recording ends at its last captured frame",
            secs(gap)
        ));
    }
    detail
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
        // So may its header have been damaged since: the journal's format is the truth.
        SegmentState::Closed | SegmentState::Repaired => match segment_frames(file) {
            Ok((spec, frames)) if frames == seg.frames && spec == seg.spec => Ok(()),
            _ => repair_and_record(journal, seg, file, summary),
        },
    }
}

/// Repairs `file` and closes its row at what the file holds. A file that cannot be
/// parsed (or is gone) is left on disk untouched, its row marked unreadable with the
/// frames the journal knew it held, and those frames become a `segment_unreadable` gap.
fn repair_and_record(
    journal: &Journal,
    seg: &SegmentRow,
    file: &Path,
    summary: &mut RepairSummary,
) -> Result<(), RepairError> {
    let now = now_ms();
    match repair_segment(file, Some(seg.spec)) {
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
            let ev = TimelineEvent::new(EventKind::SegmentUnreadable, seg.first_frame, now)
                .with_gap(seg.frames)
                .with_detail(format!("segment {} cannot be read: {e}", seg.path));
            journal.mark_segment_unreadable(seg, &ev, now)?;
            summary.unreadable.push(file.to_path_buf());
        }
    }
    Ok(())
}

fn modified_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}
