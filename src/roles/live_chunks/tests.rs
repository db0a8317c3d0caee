use super::*;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::journal::{NewJob, NewSegment};
use crate::render::chunks;
use crate::roles::finalize::{self, JobEnd};
use crate::segment::file::SegmentFile;
use std::os::unix::fs::MetadataExt;

const SPEC: StreamSpec = StreamSpec {
    format: SampleFormat::S16Le,
    rate: 8_000,
    channels: 1,
};

/// Frames `[from, to)` of a ramp, so each chunk's samples are its own.
fn ramp(from: u64, to: u64) -> Vec<u8> {
    (from..to)
        .flat_map(|i| ((i % 30_000) as i16).to_le_bytes())
        .collect()
}

fn renderer(journal_path: &Path) -> Renderer {
    let command = r#"{"command": {"chunkSeconds": 1, "outputCodec": "wav"}}"#;
    Renderer {
        journal: Journal::open(journal_path).unwrap(),
        job_id: "job_a".into(),
        asked: Ok(None),
        options: OutputOptions::from_command_json(command),
        chunk_frames: 8_000,
        fill: GapFill::Silence,
        marks: Some(BudgetMarks::default()),
        stop: Arc::new((Mutex::new(false), Condvar::new())),
    }
}

/// `job_a`, capturing `command` into `dir` since 1 s, its first segment open.
fn capturing_job(journal: &Journal, dir: &Path, command: &str) -> (SegmentFile, i64) {
    journal
        .create_job(&NewJob {
            id: "job_a".into(),
            source: JobSource::Controller,
            controller_job_id: Some("job_1".into()),
            recording_id: Some("rec_1".into()),
            command_json: command.into(),
            backend: "synth".into(),
            device: "ramp".into(),
            spec: SPEC,
            duration_frames: Some(20_000), // 2.5 s: chunks of 1, 1 and 0.5 s
            dir: dir.to_path_buf(),
            state: JobState::Capturing,
            created_at_ms: 1,
        })
        .unwrap();
    journal.set_job_started("job_a", 1_000).unwrap();
    let seg = SegmentFile::create(&dir.join("000001.wav"), SPEC).unwrap();
    let id = journal
        .insert_segment(&NewSegment {
            job_id: "job_a".into(),
            seq: 1,
            path: "000001.wav".into(),
            first_frame: 0,
            spec: SPEC,
            opened_at_ms: 1,
        })
        .unwrap();
    (seg, id)
}

#[test]
fn chunks_render_as_their_span_is_durable_and_the_end_renders_only_the_rest() {
    let out = tempfile::tempdir().unwrap();
    let db = finalize::journal_path(out.path());
    let mut journal = Journal::open(&db).unwrap();
    let dir = out.path().join("job_a");
    std::fs::create_dir_all(&dir).unwrap();
    let command = r#"{"command": {"chunkSeconds": 1, "outputCodec": "wav"}}"#;
    let (mut seg, id) = capturing_job(&journal, &dir, command);
    seg.write_frames(&ramp(0, 12_000)).unwrap();
    seg.sync_data().unwrap();
    // A disk too low for a chunk beside the capture: it waits (the job's end renders
    // it if it must).
    let space = disk::disk_space(&dir).unwrap();
    // The resume mark 64 MiB above what is free now (other writers may free some).
    let resume = (space.free_bytes + (64 << 20)).min(space.total_bytes - 1);
    let low = Renderer {
        marks: Some(BudgetMarks {
            reserve_below: Some(resume / 2),
            resume_above: Some(resume),
            reclaim_below: Some(resume + 1),
        }),
        ..renderer(&db)
    };
    assert!(matches!(low.step(0), Ok(Step::NotYet(LOW_DISK_WAIT))));
    assert!(!dir.join("chunks").exists());
    let r = renderer(&db);
    // Chunk 0's span is on the disk (the segment's row still says 0 frames).
    assert!(matches!(r.step(0), Ok(Step::Rendered)));
    assert!(matches!(r.step(1), Ok(Step::NotYet(_))));
    let first = dir.join("chunks/chunk-0000.wav");
    let rows = journal.uploads("job_a").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].acknowledged_at_ms, None);
    assert_eq!(
        rows[0].sha256,
        crate::render::pipeline::hash_file(&first).unwrap().0
    );
    let job = journal.job("job_a").unwrap().unwrap();
    assert_eq!(rendered_so_far(&journal, &job).len(), 1);

    // A chunk half-written at a kill: listed, but never journaled. It does not count,
    // and it is rendered again.
    let mut listed = Chunks::read_so_far(&dir).unwrap();
    let mut half = listed.chunks[0].clone();
    half.file = chunks::chunk_file(1, "wav");
    std::fs::write(dir.join(&half.file), b"RIFF\0\0").unwrap();
    listed.chunks.push(half);
    listed.write(&dir).unwrap();
    assert_eq!(rendered_so_far(&journal, &job).len(), 1);
    seg.write_frames(&ramp(12_000, 20_000)).unwrap();
    seg.sync_data().unwrap();
    assert!(matches!(r.step(1), Ok(Step::Rendered)));
    let second = dir.join(chunks::chunk_file(1, "wav"));
    let samples = |p: &Path| -> Vec<i16> {
        let mut w = hound::WavReader::open(p).unwrap();
        w.samples::<i16>().map(Result::unwrap).collect()
    };
    assert_eq!(samples(&second).len(), 8_000);
    assert_eq!(samples(&second)[0], 8_000);
    // The window's last chunk is left to the job's end (it carries `chunkTotal`).
    assert!(matches!(r.step(2), Ok(Step::Done)));

    // The end renders only chunk 2, and no whole-recording file.
    let inodes = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let before = (inodes(&first), inodes(&second));
    let frames = seg.close().unwrap();
    journal
        .close_segment(id, frames, SegmentState::Closed, 2)
        .unwrap();
    journal
        .set_job_state("job_a", JobState::Captured, None, 3)
        .unwrap();
    let job = journal.job("job_a").unwrap().unwrap();
    finalize::finalize(
        &mut journal,
        &job,
        &JobEnd::new("duration"),
        GapFill::Silence,
    )
    .unwrap();
    assert_eq!(
        (inodes(&first), inodes(&second)),
        before,
        "not rendered again"
    );
    let all = Chunks::read(&dir).expect("complete");
    assert_eq!(all.chunks.len(), 3);
    let last = samples(&dir.join(&all.chunks[2].file));
    assert_eq!((last.len(), last[0]), (4_000, 16_000));
    assert_eq!(journal.uploads("job_a").unwrap().len(), 3);
    assert!(!dir.join("recording.wav").exists());
    let d = crate::render::job::deliverable(&dir).unwrap();
    assert_eq!(d.path, dir.join(chunks::CHUNKS_FILE));
    assert!((d.duration_seconds - 2.5).abs() < 1e-9);
}

/// With an enhancement and `keepRaw`, a chunk rendered while capturing is listed with its
/// enhanced file as the primary and the raw one beside it; the raw row is journaled too,
/// and the primary's row says the chunk is there.
#[test]
fn a_chunk_rendered_while_capturing_carries_its_enhanced_and_raw_renditions() {
    let out = tempfile::tempdir().unwrap();
    let db = finalize::journal_path(out.path());
    let journal = Journal::open(&db).unwrap();
    let dir = out.path().join("job_a");
    std::fs::create_dir_all(&dir).unwrap();
    let command = r#"{"command": {"chunkSeconds": 1, "outputCodec": "wav",
        "enhancement": {"loudnorm": {"enabled": false}}}}"#;
    let (mut seg, _) = capturing_job(&journal, &dir, command);
    seg.write_frames(&ramp(0, 12_000)).unwrap();
    seg.sync_data().unwrap();
    let r = Renderer {
        asked: enhance::chunk::asked(command),
        ..renderer(&db)
    };
    assert!(matches!(r.step(0), Ok(Step::Rendered)));
    let listed = Chunks::read_so_far(&dir).unwrap();
    let c = &listed.chunks[0];
    assert_eq!(c.file, enhance::chunk::enhanced_file(0, "wav"));
    assert_eq!(
        c.raw_file.as_deref(),
        Some(chunks::chunk_file(0, "wav").as_str())
    );
    assert_eq!(
        (c.enhanced_gain, c.enhancement_error.as_ref()),
        (Some(1.0), None)
    );
    let hash = |f: &str| crate::render::pipeline::hash_file(&dir.join(f)).unwrap().0;
    let rows: Vec<_> = (journal.uploads("job_a").unwrap().into_iter())
        .map(|u| (u.chunk, u.path, u.sha256, u.acknowledged_at_ms))
        .collect();
    assert_eq!(
        rows,
        [
            (0, c.file.clone().into(), hash(&c.file), None),
            (
                RAW_ROW,
                chunks::chunk_file(0, "wav").into(),
                hash(&chunks::chunk_file(0, "wav")),
                None
            ),
        ]
    );
    let job = journal.job("job_a").unwrap().unwrap();
    assert_eq!(rendered_so_far(&journal, &job), listed.chunks);
    for f in [&c.file, c.raw_file.as_ref().unwrap()] {
        let w = hound::WavReader::open(dir.join(f)).unwrap();
        assert_eq!((w.duration(), w.spec().sample_rate), (8_000, 8_000), "{f}");
    }
}
