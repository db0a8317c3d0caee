//! Segment files the journal does not know, and `edgerec repair --rebuild DIR`.
//!
//! Segments are self-describing (their `edgr` chunk names the job, the sequence and the
//! first frame on the job's timeline; `segment::wav`), so the files on disk can stand in
//! for a lost journal. `unknown_segments` lists the files no journal row names (a damaged
//! WAL that dropped a job, a journal restored from an old backup): they are reported,
//! never deleted. `rebuild_dir` adopts them: a damaged journal is moved aside (kept, never
//! deleted) for a fresh one, every unknown segment is repaired and put back on its job's
//! timeline (the job recreated when missing), and the ordinary repair finalizes the jobs.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::core::format::StreamSpec;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, GapFill, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal, NewJob, NewSegment, SegmentState};
use crate::roles::finalize;
use crate::roles::owner;
use crate::roles::repair::{self, RepairError, RepairSummary};
use crate::segment::repair::{repair_segment, segment_frames};
use crate::segment::wav::{self, SegmentIdentity};
use crate::segment::writer::now_ms;

/// The backend recorded for a job recreated from its segment files.
pub const REBUILT_BACKEND: &str = "rebuilt";

/// A segment's sequence number from its file name (`000042.wav`), if it is one.
pub fn segment_seq(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".wav")?;
    (stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Segment files in the job directories under `out`, sorted, whatever the journal says.
fn segment_files_on_disk(out: &Path) -> Result<Vec<PathBuf>, RepairError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RepairError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let dir = entry.map_err(io(out))?.path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = file.map_err(io(&dir))?.path();
            let is_segment = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(segment_seq)
                .is_some();
            if is_segment && path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Segment files under `out` that no segment row of `journal` names.
pub fn unknown_segments(journal: &Journal, out: &Path) -> Result<Vec<PathBuf>, RepairError> {
    let mut known = HashSet::new();
    for job in journal.jobs()? {
        for seg in journal.segments(&job.id)? {
            known.insert(job.dir.join(&seg.path));
        }
    }
    Ok(segment_files_on_disk(out)?
        .into_iter()
        .filter(|f| !known.contains(f))
        .collect())
}

/// Segment files in `job`'s directory that name `job` but have no row: a crash between
/// creating a segment and journaling it leaves one (its header is all it holds, or a
/// little audio). Adopted where their identity places them.
pub fn adopt_orphans_of(journal: &mut Journal, job: &JobRow) -> Result<(), RepairError> {
    let known: HashSet<PathBuf> = journal
        .segments(&job.id)?
        .iter()
        .map(|s| job.dir.join(&s.path))
        .collect();
    let Ok(entries) = std::fs::read_dir(&job.dir) else {
        return Ok(());
    };
    let mut orphans: Vec<Found> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .and_then(segment_seq)
                .is_some()
                && !known.contains(f)
        })
        .filter_map(|file| {
            let identity = read_identity(&file).filter(|i| i.job == job.id)?;
            Some(Found {
                file,
                identity: Some(identity),
            })
        })
        .collect();
    orphans.sort_by_key(seq_of);
    if adopt(journal, &job.id, &orphans)? {
        log::warn!(
            "{}: {} segment file(s) created just before a crash adopted",
            job.id,
            orphans.len()
        );
    }
    Ok(())
}

/// `edgerec repair --rebuild DIR`: adopt every segment file the journal does not know
/// (replacing a damaged journal first), then repair and finalize as `repair` does.
pub fn rebuild_dir(out: &Path, fill: GapFill) -> Result<RepairSummary, RepairError> {
    let path = finalize::journal_path(out);
    if !out.is_dir() {
        return Err(RepairError::NoJournal(path));
    }
    let mut journal = match Journal::open(&path) {
        Ok(j) => j,
        Err(e) if e.is_damaged() => {
            refuse_if_live(out)?;
            let kept = move_aside(&path)?;
            log::warn!(
                "journal {} is damaged ({e}); kept as {}, rebuilding from the segment files",
                path.display(),
                kept.display()
            );
            Journal::open(&path)?
        }
        Err(e) => return Err(e.into()),
    };
    let mut summary = RepairSummary::default();
    let unknown = unknown_segments(&journal, out)?;
    for (job_id, files) in group_by_job(&unknown) {
        if adopt(&mut journal, &job_id, &files)? {
            log::info!("{job_id}: {} segment files adopted from disk", files.len());
            summary.adopted.push(job_id);
        }
    }
    repair::repair_jobs(&mut journal, out, fill, &mut summary)?;
    Ok(summary)
}

/// Rebuilding must not pull the journal from under a running role.
fn refuse_if_live(out: &Path) -> Result<(), RepairError> {
    for file in segment_files_on_disk(out)? {
        let dir = file.parent().unwrap_or(out);
        let locked = owner::try_lock(dir).map_err(|source| RepairError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if locked.is_none() {
            return Err(RepairError::Live(dir.to_path_buf()));
        }
    }
    Ok(())
}

/// Renames the journal and its WAL and shared-memory files to `<name>.damaged-<ms>...`:
/// a fresh journal must not replay the old WAL, and nothing is deleted.
fn move_aside(path: &Path) -> Result<PathBuf, RepairError> {
    let kept = path.with_extension(format!("db.damaged-{}", now_ms()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if !from.exists() {
            continue;
        }
        let to = PathBuf::from(format!("{}{suffix}", kept.display()));
        std::fs::rename(&from, &to).map_err(|source| RepairError::Io { path: from, source })?;
    }
    Ok(kept)
}

/// One segment file as found on disk.
struct Found {
    file: PathBuf,
    identity: Option<SegmentIdentity>,
}

fn read_identity(file: &Path) -> Option<SegmentIdentity> {
    let mut f = File::open(file).ok()?;
    let info = wav::parse_header(&mut f).ok()?;
    wav::read_identity(&mut f, &info).ok().flatten()
}

/// Groups files by the job their identity names, else by their directory's name (older
/// segments carry no identity); within a job, in sequence order.
fn group_by_job(files: &[PathBuf]) -> BTreeMap<String, Vec<Found>> {
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

fn seq_of(f: &Found) -> u32 {
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
fn adopt(journal: &mut Journal, job_id: &str, files: &[Found]) -> Result<bool, RepairError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::SampleFormat;
    use crate::segment::file::SegmentFile;

    const SPEC: StreamSpec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 8_000,
        channels: 2,
    };

    fn segment(dir: &Path, seq: u32, frames: usize, identity: Option<&SegmentIdentity>) {
        let path = dir.join(format!("{seq:06}.wav"));
        let mut seg = SegmentFile::create_identified(&path, SPEC, identity).unwrap();
        seg.write_frames(&vec![7; frames * 4]).unwrap();
        drop(seg); // as a crash leaves it: header never flushed
    }

    #[test]
    fn rebuild_places_segments_by_identity_and_older_ones_back_to_back() {
        let out = tempfile::tempdir().unwrap();
        let old = out.path().join("job_old"); // segments from before identities
        let new = out.path().join("job_new");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        segment(&old, 1, 100, None);
        segment(&old, 2, 50, None);
        for (seq, first_frame) in [(1, 0), (2, 300)] {
            let id = SegmentIdentity {
                job: "job_new".into(),
                seq,
                first_frame,
                opened_at_ms: 1_000_000 + first_frame as i64,
            };
            segment(&new, seq, 100, Some(&id));
        }
        let summary = rebuild_dir(out.path(), GapFill::Silence).unwrap();
        assert_eq!(summary.adopted, ["job_new", "job_old"]);
        assert!(summary.unknown.is_empty(), "{:?}", summary.unknown);
        let journal = Journal::open(&finalize::journal_path(out.path())).unwrap();
        let placed = |id: &str| -> Vec<(u32, u64, u64)> {
            let segs = journal.segments(id).unwrap();
            segs.iter()
                .map(|s| (s.seq, s.first_frame, s.frames))
                .collect()
        };
        assert_eq!(placed("job_old"), [(1, 0, 100), (2, 100, 50)]);
        assert_eq!(placed("job_new"), [(1, 0, 100), (2, 300, 100)]);
        let job = journal.job("job_new").unwrap().unwrap();
        assert_eq!(job.started_at_ms, Some(1_000_000));
        assert_eq!(job.state, JobState::Delivered);
        // The hole between identified segments is filled; nothing pads past the audio.
        let rec = hound::WavReader::open(new.join(finalize::RECORDING_FILE)).unwrap();
        assert_eq!(rec.duration(), 400);
        let rec = hound::WavReader::open(old.join(finalize::RECORDING_FILE)).unwrap();
        assert_eq!(rec.duration(), 150);
    }

    #[test]
    fn segment_names_are_six_digits_dot_wav() {
        let cases = [
            ("000001.wav", Some(1)),
            ("123456.wav", Some(123_456)),
            ("recording.wav", None),
            ("00001.wav", None),
            ("0000001.wav", None),
            ("00000a.wav", None),
            ("000001.WAV", None),
            ("000001.wav.partial", None),
        ];
        for (name, want) in cases {
            assert_eq!(segment_seq(name), want, "{name}");
        }
    }
}
