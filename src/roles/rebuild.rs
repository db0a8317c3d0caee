//! Segment files the journal does not know, and `edgerec repair --rebuild DIR`.
//!
//! Segments are self-describing (their `edgr` chunk names the job, the sequence and the
//! first frame on the job's timeline; `segment::wav`), so the files on disk can stand in
//! for a lost journal. `unknown_segments` lists the files no journal row names (a damaged
//! WAL that dropped a job, a journal restored from an old backup): they are reported,
//! never deleted. `rebuild_dir` adopts them: a damaged journal is moved aside (kept, never
//! deleted) for a fresh one, every unknown segment is repaired and put back on its job's
//! timeline (the job recreated when missing), and the ordinary repair finalizes the jobs.
//!
//! - this file: finding the unknown files, [`rebuild_dir`], and a job's own orphans
//!   ([`adopt_orphans_of`]).
//! - `adopt`: putting found files back on their job's timeline.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::core::timeline::GapFill;
use crate::journal::{JobRow, Journal};
use crate::roles::finalize;
use crate::roles::owner;
use crate::roles::repair::{self, RepairError, RepairSummary};
use crate::segment::writer::now_ms;

mod adopt;

use adopt::{Found, adopt, group_by_job, read_identity, seq_of};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::core::job::JobState;
    use crate::segment::file::SegmentFile;
    use crate::segment::wav::SegmentIdentity;

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
