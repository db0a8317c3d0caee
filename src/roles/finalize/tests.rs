use super::*;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::journal::{NewJob, NewSegment};
use crate::segment::file::SegmentFile;

const SPEC: StreamSpec = StreamSpec {
    format: SampleFormat::S16Le,
    rate: 8_000,
    channels: 1,
};

/// A captured local job of three closed 100-frame segments of non-zero audio.
fn captured_job(out: &Path) -> (Journal, JobRow) {
    captured_job_from(out, JobSource::Local)
}

fn captured_job_from(out: &Path, source: JobSource) -> (Journal, JobRow) {
    std::fs::create_dir_all(out).unwrap();
    let journal = Journal::open(&journal_path(out)).unwrap();
    let dir = out.join("job_a");
    std::fs::create_dir_all(&dir).unwrap();
    journal
        .create_job(&NewJob {
            id: "job_a".into(),
            source,
            controller_job_id: None,
            recording_id: None,
            command_json: "{}".into(),
            backend: "synth".into(),
            device: "noise".into(),
            spec: SPEC,
            duration_frames: Some(1_000),
            dir: dir.clone(),
            state: JobState::Captured,
            created_at_ms: 1,
        })
        .unwrap();
    for seq in 1..=3u32 {
        let name = format!("{seq:06}.wav");
        let mut seg = SegmentFile::create(&dir.join(&name), SPEC).unwrap();
        seg.write_frames(&[0x11; 200]).unwrap();
        seg.close().unwrap();
        let first_frame = (seq as u64 - 1) * 100;
        let id = journal
            .insert_segment(&NewSegment {
                job_id: "job_a".into(),
                seq,
                path: name,
                first_frame,
                spec: SPEC,
                opened_at_ms: 1,
            })
            .unwrap();
        journal
            .close_segment(id, 100, crate::journal::SegmentState::Closed, 2)
            .unwrap();
    }
    let job = journal.job("job_a").unwrap().unwrap();
    (journal, job)
}

fn samples(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    r.samples::<i16>().map(Result::unwrap).collect()
}

#[test]
fn unreadable_segment_is_a_gap_of_its_own_kind_not_a_failed_render() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = captured_job(out.path());
    let broken = job.dir.join("000002.wav");
    let mut bytes = std::fs::read(&broken).unwrap();
    bytes[..4].copy_from_slice(b"JUNK");
    std::fs::write(&broken, &bytes).unwrap();
    let done = finalize(
        &mut journal,
        &job,
        &JobEnd::new("duration_reached"),
        GapFill::Silence,
    )
    .unwrap();
    assert_eq!(done.state, JobState::Delivered);
    let gap: Vec<_> = done
        .events
        .iter()
        .filter(|e| e.kind == EventKind::SegmentUnreadable)
        .collect();
    assert_eq!(gap.len(), 1, "{:?}", done.events);
    assert_eq!((gap[0].frame, gap[0].gap_frames), (100, Some(100)));
    let s = samples(done.recording.as_ref().unwrap());
    assert_eq!(s.len(), 300);
    assert!(s[..100].iter().chain(&s[200..]).all(|&x| x == 0x1111));
    assert!(
        s[100..200].iter().all(|&x| x == 0),
        "the gap policy fills it"
    );
    assert_eq!(
        std::fs::read(&broken).unwrap(),
        bytes,
        "the file is kept as it was"
    );
}

#[test]
fn capture_that_ended_early_is_not_padded_to_the_window() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = captured_job(out.path());
    // The window (1000 frames) ran on past the last frame on disk (300).
    let crash = TimelineEvent::new(EventKind::CrashRecovered, 300, 5).with_gap(700);
    journal.add_event(&job.id, &crash).unwrap();
    let done = finalize(
        &mut journal,
        &job,
        &JobEnd::new("crashed"),
        GapFill::Silence,
    )
    .unwrap();
    assert_eq!(done.frames, 300);
    assert_eq!(samples(done.recording.as_ref().unwrap()).len(), 300);
    let ended = done
        .events
        .iter()
        .find(|e| e.kind == EventKind::Ended)
        .unwrap();
    assert_eq!(ended.frame, 1_000, "the timeline still spans the window");
    // A window captured to its end is rendered to it (a trailing gap the caller knows).
    let (mut journal, job) = captured_job(&out.path().join("b"));
    let how = JobEnd {
        total_frames: Some(400),
        ..JobEnd::new("duration_reached")
    };
    let done = finalize(&mut journal, &job, &how, GapFill::Silence).unwrap();
    assert_eq!(done.frames, 400);
}

#[test]
fn an_uploaded_wav_is_streamed_from_the_segments_and_never_copied() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = captured_job_from(out.path(), JobSource::Controller);
    let done = finalize(
        &mut journal,
        &job,
        &JobEnd::new("duration_reached"),
        GapFill::Silence,
    )
    .unwrap();
    assert_eq!(done.state, JobState::Cached);
    assert_eq!(done.recording.as_deref(), Some(job.dir.as_path()));
    assert!(!job.dir.join(RECORDING_FILE).exists(), "no second copy");
    let d = crate::render::job::deliverable(&job.dir).unwrap();
    assert_eq!(d.file_name, "recording.wav");
    let (sha, len) = d.hash().unwrap();
    assert_eq!(
        sha, "",
        "finalize does not read the recording: the upload hashes it"
    );
    // The bytes the upload sends are a WAV of the 300 frames, as long as the view says.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut d.body().open_at(0).unwrap(), &mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, len);
    let r = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(r.duration(), 300);
    // The timeline names what is delivered.
    let tl: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&done.timeline).unwrap()).unwrap();
    assert_eq!(tl["recording"], "recording.wav");
    // Finalizing again (a crash mid-upload, a restart) gives the same bytes.
    let again = finalize(&mut journal, &job, &JobEnd::new("x"), GapFill::Silence);
    assert!(again.is_ok());
    let d2 = crate::render::job::deliverable(&job.dir).unwrap();
    assert_eq!(d2.hash().unwrap(), (sha, len));
    let mut again_bytes = Vec::new();
    std::io::Read::read_to_end(&mut d2.body().open_at(0).unwrap(), &mut again_bytes).unwrap();
    assert!(again_bytes == bytes, "the same bytes again");
}

#[test]
fn no_stitch_leaves_a_local_job_as_its_segments() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = captured_job(out.path());
    let how = JobEnd {
        no_stitch: true,
        ..JobEnd::new("duration_reached")
    };
    let done = finalize(&mut journal, &job, &how, GapFill::Silence).unwrap();
    assert_eq!(done.state, JobState::Delivered);
    assert!(!job.dir.join(RECORDING_FILE).exists());
    assert!(
        crate::render::job::deliverable(&job.dir)
            .unwrap()
            .stream
            .is_some()
    );
    // `record` without it keeps the person's file.
    let (mut journal, job) = captured_job(&out.path().join("b"));
    finalize(&mut journal, &job, &JobEnd::new("d"), GapFill::Silence).unwrap();
    assert_eq!(samples(&job.dir.join(RECORDING_FILE)).len(), 300);
}

/// Commit frames in the journal's WAL (a frame header's "database size after commit" is
/// non-zero only on a transaction's last frame: one per commit, one fsync each at FULL).
fn wal_commits(journal_file: &Path) -> usize {
    let wal = std::fs::read(journal_file.with_extension("db-wal")).unwrap_or_default();
    let Some(header) = wal.get(..32) else {
        return 0;
    };
    let page = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let salt = &header[16..24];
    wal[32..]
        .chunks_exact(24 + page)
        .take_while(|f| &f[8..16] == salt)
        .filter(|f| f[4..8] != [0; 4])
        .count()
}

/// [`captured_job`] whose capture has not been marked over yet.
fn capturing_job(out: &Path) -> (Journal, JobRow) {
    let (journal, job) = captured_job(out);
    journal
        .set_job_state(&job.id, JobState::Capturing, None, 3)
        .unwrap();
    let job = journal.job(&job.id).unwrap().unwrap();
    (journal, job)
}

/// How the capture role's job thread ends a capture.
fn just_captured() -> JobEnd {
    JobEnd {
        mark_captured: true,
        ..JobEnd::new("duration_reached")
    }
}

#[test]
fn a_capture_that_just_ended_is_captured_and_rendering_in_one_commit() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = capturing_job(out.path());
    let path = journal_path(out.path());
    let before = wal_commits(&path);
    let done = finalize(&mut journal, &job, &just_captured(), GapFill::Silence).unwrap();
    assert_eq!(done.state, JobState::Delivered);
    assert_eq!(samples(done.recording.as_ref().unwrap()).len(), 300);
    let ended: Vec<_> = done
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Ended)
        .collect();
    assert_eq!(ended.len(), 1, "{:?}", done.events);
    // `captured` + `rendering` with its `ended` event, then the terminal state: two
    // commits (three when `captured` was a commit of its own).
    assert_eq!(wal_commits(&path) - before, 2);
    // What a restart reads back: the ended event is journaled once.
    let journaled = journal.events(&job.id).unwrap();
    assert_eq!(
        journaled
            .iter()
            .filter(|e| e.kind == EventKind::Ended)
            .count(),
        1
    );
}

#[test]
fn an_unreadable_segment_found_at_the_end_of_a_capture_joins_that_commit() {
    let out = tempfile::tempdir().unwrap();
    let (mut journal, job) = capturing_job(out.path());
    std::fs::remove_file(job.dir.join("000003.wav")).unwrap();
    let path = journal_path(out.path());
    let before = wal_commits(&path);
    let done = finalize(&mut journal, &job, &just_captured(), GapFill::Silence).unwrap();
    assert_eq!(done.state, JobState::Delivered);
    assert_eq!(
        done.frames, 200,
        "the capture ends at its last readable frame"
    );
    let segs = journal.segments(&job.id).unwrap();
    assert_eq!(segs[2].state, SegmentState::Unreadable);
    assert_eq!(wal_commits(&path) - before, 2);
}
