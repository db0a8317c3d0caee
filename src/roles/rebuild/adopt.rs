//! Putting segment files back on their jobs' timelines: grouped by the job their identity
//! names, placed where it says (older files back to back), the job recreated when lost.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{REBUILT_BACKEND, segment_seq};
use crate::core::format::StreamSpec;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{JobSource, Journal, NewJob, NewSegment, SegmentState};
use crate::roles::finalize;
use crate::roles::repair::RepairError;
use crate::segment::repair::{repair_segment, segment_frames};
use crate::segment::wav::{self, SegmentIdentity};
use crate::segment::writer::now_ms;

/// One segment file as found on disk.
pub(super) struct Found {
    pub(super) file: PathBuf,
    pub(super) identity: Option<SegmentIdentity>,
}

pub(super) fn read_identity(file: &Path) -> Option<SegmentIdentity> {
    let mut f = File::open(file).ok()?;
    let info = wav::parse_header(&mut f).ok()?;
    wav::read_identity(&mut f, &info).ok().flatten()
}

/// Groups files by the job their identity names, else by their directory's name (older
/// segments carry no identity); within a job, in sequence order.
pub(super) fn group_by_job(files: &[PathBuf]) -> BTreeMap<String, Vec<Found>> {
    let mut jobs: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for file in files {
        let identity = read_identity(file);
        let dir_name = file
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        let Some(job) = identity.as_ref().map(|i| i.job.clone()).or(dir_name) else {
            continue;
        };
        jobs.entry(job).or_default().push(Found {
            file: file.clone(),
            identity,
        });
    }
    for found in jobs.values_mut() {
        found.sort_by_key(|f| (seq_of(f), f.file.clone()));
    }
    jobs
}

pub(super) fn seq_of(f: &Found) -> u32 {
    f.identity.as_ref().map(|i| i.seq).unwrap_or_else(|| {
        f.file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(segment_seq)
            .unwrap_or(0)
    })
}

/// Puts `files` back on `job_id`'s timeline, creating the job when the journal lost it.
/// A job that already ended keeps its files unknown (its recording is made). Returns
/// whether anything was adopted.
pub(super) fn adopt(
    journal: &mut Journal,
    job_id: &str,
    files: &[Found],
) -> Result<bool, RepairError> {
    let Some(first) = files.first() else {
        return Ok(false);
    };
    let dir = first.file.parent().unwrap_or(Path::new("")).to_path_buf();
    let existing = journal.job(job_id)?;
    if existing.as_ref().is_some_and(|j| j.state.is_terminal()) {
        log::warn!("{job_id} has ended; its unknown segments stay listed, untouched");
        return Ok(false);
    }
    let known = journal.segments(job_id)?;
    let mut seqs: HashSet<u32> = known.iter().map(|s| s.seq).collect();
    let mut cursor = known
        .iter()
        .map(|s| s.first_frame + s.frames)
        .max()
        .unwrap_or(0);
    let now = now_ms();
    // A job has one format: the journal's, else the one most of its files declare (a
    // damaged header must not decide it). Each file is repaired to it, then all are
    // journaled in one transaction.
    let job_spec = existing
        .as_ref()
        .map(|j| j.spec)
        .or_else(|| most_declared_spec(files))
        .unwrap_or_else(fallback_spec);
    let repaired: Vec<_> = files
        .iter()
        .map(|f| repair_segment(&f.file, Some(job_spec)))
        .collect();
    journal
        .atomically(|j| {
            let mut created = existing.is_some();
            let mut adopted = false;
            for (found, repaired) in files.iter().zip(repaired) {
                let seq = seq_of(found);
                if !seqs.insert(seq) {
                    continue; // a row already holds that sequence number: leave it listed
                }
                let first_frame = found.identity.as_ref().map_or(cursor, |i| i.first_frame);
                if !created {
                    create_rebuilt_job(j, job_id, &dir, job_spec, found, first_frame)?;
                    created = true;
                }
                if let Some(end) =
                    adopt_one(j, job_id, found, seq, first_frame, repaired, job_spec, now)?
                {
                    cursor = cursor.max(end);
                }
                adopted = true;
            }
            Ok(adopted)
        })
        .map_err(RepairError::from)
}

/// Journals one adopted file: a repaired segment (returns where it ends on the timeline),
/// or an unreadable one, kept and marked with a `segment_unreadable` event.
#[allow(clippy::too_many_arguments)]
fn adopt_one(
    j: &Journal,
    job_id: &str,
    found: &Found,
    seq: u32,
    first_frame: u64,
    repaired: Result<crate::segment::repair::RepairReport, crate::segment::repair::RepairError>,
    job_spec: StreamSpec,
    now: i64,
) -> Result<Option<u64>, crate::journal::JournalError> {
    let name = found
        .file
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let seg_id = j.insert_segment(&NewSegment {
        job_id: job_id.to_string(),
        seq,
        path: name.clone(),
        first_frame,
        spec: repaired.as_ref().map_or(job_spec, |r| r.spec),
        opened_at_ms: found.identity.as_ref().map_or(now, |i| i.opened_at_ms),
    })?;
    match repaired {
        Ok(r) => {
            // A file that needed no repair was closed by its writer.
            let state = if r.was_clean() {
                SegmentState::Closed
            } else {
                SegmentState::Repaired
            };
            j.close_segment(seg_id, r.frames, state, now)?;
            Ok(Some(first_frame + r.frames))
        }
        Err(e) => {
            let seg = j
                .segments(job_id)?
                .into_iter()
                .find(|s| s.id == seg_id)
                .ok_or(crate::journal::JournalError::NoSuchSegment(seg_id))?;
            let ev = TimelineEvent::new(EventKind::SegmentUnreadable, first_frame, now)
                .with_gap(0)
                .with_detail(format!("segment {name} cannot be read: {e}"));
            j.mark_segment_unreadable(&seg, &ev, now)?;
            Ok(None)
        }
    }
}

/// The format most of `files` declare (the earliest file's on a tie), read without
/// touching them.
fn most_declared_spec(files: &[Found]) -> Option<StreamSpec> {
    let declared: Vec<StreamSpec> = files
        .iter()
        .filter_map(|f| segment_frames(&f.file).ok().map(|(spec, _)| spec))
        .collect();
    let votes = |spec: &StreamSpec| declared.iter().filter(|s| *s == spec).count();
    declared
        .iter()
        .rev() // max_by_key keeps the last maximum: reversed, that is the earliest
        .max_by_key(|spec| votes(spec))
        .copied()
}

fn fallback_spec() -> StreamSpec {
    StreamSpec {
        format: crate::core::format::SampleFormat::S16Le,
        rate: 48_000,
        channels: 1,
    }
}

/// A job the journal lost, recreated from what its first segment file says: a local job,
/// captured, its start placed from the segment's opening time and first frame.
fn create_rebuilt_job(
    j: &Journal,
    job_id: &str,
    dir: &Path,
    spec: StreamSpec,
    first: &Found,
    first_frame: u64,
) -> Result<(), crate::journal::JournalError> {
    let opened = first.identity.as_ref().map(|i| i.opened_at_ms);
    let created_at_ms = opened.unwrap_or_else(now_ms);
    j.create_job(&NewJob {
        id: job_id.to_string(),
        source: JobSource::Local,
        controller_job_id: None,
        recording_id: None,
        command_json: serde_json::json!({ "rebuilt_from_segments": dir.display().to_string() })
            .to_string(),
        backend: REBUILT_BACKEND.into(),
        device: "unknown (rebuilt from segment files)".into(),
        spec,
        duration_frames: None,
        dir: dir.to_path_buf(),
        state: JobState::Captured,
        created_at_ms,
    })?;
    // A timeline.json left by an earlier render holds the events the journal lost.
    let (prior_start, prior) = prior_timeline(&dir.join(finalize::TIMELINE_FILE));
    for ev in &prior {
        j.add_event(job_id, ev)?;
    }
    let from_header =
        opened.map(|o| o - (first_frame as u128 * 1000 / spec.rate.max(1) as u128) as i64);
    if let Some(started) = prior_start.or(from_header) {
        j.set_job_started(job_id, started)?;
        if !prior.iter().any(|e| e.kind == EventKind::Started) {
            j.add_event(
                job_id,
                &TimelineEvent::new(EventKind::Started, 0, started)
                    .with_detail("start rebuilt from the first segment file's header"),
            )?;
        }
    }
    Ok(())
}

/// The start time and events of a `timeline.json` (an earlier render of the job), as far
/// as they parse; a missing or damaged file gives none.
fn prior_timeline(path: &Path) -> (Option<i64>, Vec<TimelineEvent>) {
    let Some(tl) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return (None, Vec::new());
    };
    let ms = |v: &serde_json::Value| {
        let t = humantime::parse_rfc3339(v.as_str()?).ok()?;
        Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
    };
    let events = tl["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(TimelineEvent {
                kind: e["kind"].as_str()?.parse().ok()?,
                frame: e["frame"].as_u64()?,
                at_ms: ms(&e["at"])?,
                detail: e["detail"].as_str().unwrap_or_default().to_string(),
                gap_frames: e["gap_frames"].as_u64(),
            })
        })
        .collect();
    (ms(&tl["started_at"]), events)
}
