//! Journal tests against real SQLite files in a temp dir.

use super::*;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::timeline::{EventKind, TimelineEvent};
use tempfile::TempDir;

const SPEC: StreamSpec = StreamSpec {
    format: SampleFormat::S24Le3,
    rate: 48_000,
    channels: 2,
};

fn temp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    (dir, path)
}

fn new_job(id: &str, created_at_ms: i64) -> NewJob {
    NewJob {
        id: id.to_string(),
        source: JobSource::Controller,
        controller_job_id: Some(format!("ctl-{id}")),
        recording_id: Some(format!("rec-{id}")),
        command_json: r#"{"duration_s":60}"#.to_string(),
        backend: "synth".to_string(),
        device: "synth:sine".to_string(),
        spec: SPEC,
        duration_frames: Some(2_880_000),
        dir: PathBuf::from(format!("/var/lib/edgerec/jobs/{id}")),
        state: JobState::Claimed,
        created_at_ms,
    }
}

fn new_seg(job_id: &str, seq: u32, first_frame: u64) -> NewSegment {
    NewSegment {
        job_id: job_id.to_string(),
        seq,
        path: format!("seg-{seq:05}.wav"),
        first_frame,
        spec: SPEC,
        opened_at_ms: 1_000 + seq as i64,
    }
}

fn table_names(j: &Journal) -> Vec<String> {
    let mut stmt = j
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn migrates_from_empty() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), schema::CURRENT);
    assert_eq!(
        table_names(&j),
        [
            "beats",
            "capture_groups",
            "events",
            "jobs",
            "machines",
            "outbox",
            "pruned",
            "segments",
            "uploads"
        ]
    );
    let mode: String = j
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma(&j, "synchronous"), 2, "synchronous=FULL");
    assert_eq!(pragma(&j, "foreign_keys"), 1);
}

fn pragma(j: &Journal, name: &str) -> i64 {
    j.conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

#[test]
fn reopen_is_a_no_op() {
    let (_d, path) = temp();
    {
        let j = Journal::open(&path).unwrap();
        j.create_job(&new_job("a", 1)).unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), schema::CURRENT);
    assert_eq!(j.jobs().unwrap().len(), 1);
}

#[test]
fn newer_schema_is_refused() {
    let (_d, path) = temp();
    {
        let j = Journal::open(&path).unwrap();
        j.conn
            .pragma_update(None, "user_version", schema::CURRENT + 1)
            .unwrap();
    }
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::SchemaTooNew { .. }), "{err:?}");
    let msg = err.to_string();
    let want = format!(
        "journal schema v{} is newer than this edgerec (knows v{}); upgrade edgerec",
        schema::CURRENT + 1,
        schema::CURRENT
    );
    assert_eq!(msg, want);
    let err = Journal::open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::SchemaTooNew { .. }), "{err:?}");
}

#[test]
fn job_round_trip() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    let nj = NewJob {
        dir: path.parent().unwrap().join("a"),
        ..new_job("a", 100)
    };
    j.create_job(&nj).unwrap();
    let row = j.job("a").unwrap().unwrap();
    let want = JobRow {
        id: nj.id.clone(),
        source: nj.source,
        controller_job_id: nj.controller_job_id.clone(),
        recording_id: nj.recording_id.clone(),
        command_json: nj.command_json.clone(),
        backend: nj.backend.clone(),
        device: nj.device.clone(),
        spec: SPEC,
        duration_frames: nj.duration_frames,
        dir: nj.dir.clone(),
        state: JobState::Claimed,
        end_cause: None,
        created_at_ms: 100,
        started_at_ms: None,
        ended_at_ms: None,
        updated_at_ms: 100,
        captured_frames: 0,
    };
    assert_eq!(row, want);

    j.set_job_started("a", 150).unwrap();
    j.set_job_progress("a", 48_000, 200).unwrap();
    j.set_job_state("a", JobState::Capturing, None, 210)
        .unwrap();
    let row = j.job("a").unwrap().unwrap();
    assert_eq!(
        (
            row.started_at_ms,
            row.captured_frames,
            row.state,
            row.updated_at_ms,
            row.ended_at_ms
        ),
        (Some(150), 48_000, JobState::Capturing, 210, None)
    );

    let local = NewJob {
        source: JobSource::Local,
        controller_job_id: None,
        recording_id: None,
        duration_frames: None,
        ..new_job("b", 300)
    };
    j.create_job(&local).unwrap();
    let b = j.job("b").unwrap().unwrap();
    assert_eq!(
        (b.source, b.controller_job_id, b.duration_frames),
        (JobSource::Local, None, None)
    );

    assert_eq!(j.job("missing").unwrap(), None);
    assert!(matches!(
        j.set_job_progress("missing", 1, 1),
        Err(JournalError::NoSuchJob(_))
    ));
    let ids: Vec<_> = j.jobs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["b", "a"], "newest first");
}

#[test]
fn corrupt_text_field_is_reported() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    j.conn
        .execute("UPDATE jobs SET state = 'exploded' WHERE id = 'a'", [])
        .unwrap();
    let err = j.job("a").unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("jobs.state"), "{err}");
}

#[test]
fn terminal_transition_happens_once() {
    let (_d, path) = temp();
    let mut j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    j.create_job(&new_job("b", 2)).unwrap();
    j.set_job_state("a", JobState::Capturing, None, 10).unwrap();
    let ended = TimelineEvent::new(EventKind::Ended, 480, 20).with_detail("duration reached");
    j.transition("a", JobState::Failed, Some("device lost"), Some(&ended), 20)
        .unwrap();

    let row = j.job("a").unwrap().unwrap();
    assert_eq!(
        (row.state, row.end_cause.as_deref(), row.ended_at_ms),
        (JobState::Failed, Some("device lost"), Some(20))
    );
    assert_eq!(j.events("a").unwrap(), [ended]);

    // A second terminal state, or a way back, is refused and changes nothing.
    for to in [JobState::Delivered, JobState::Failed, JobState::Capturing] {
        let err = j.set_job_state("a", to, Some("again"), 30).unwrap_err();
        assert!(matches!(
            err,
            JournalError::IllegalTransition {
                from: JobState::Failed,
                ..
            }
        ));
    }
    let again = TimelineEvent::new(EventKind::Ended, 500, 30);
    let err = j
        .transition("a", JobState::Cancelled, None, Some(&again), 30)
        .unwrap_err();
    assert!(
        matches!(err, JournalError::IllegalTransition { .. }),
        "{err:?}"
    );
    assert_eq!(j.job("a").unwrap().unwrap(), row);
    assert_eq!(
        j.events("a").unwrap().len(),
        1,
        "the refused transition's event rolled back"
    );

    let open: Vec<_> = j
        .non_terminal_jobs()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, ["b"]);
}

#[test]
fn transition_rolls_back_when_the_event_fails() {
    let (_d, path) = temp();
    let mut j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    // gap_frames beyond i64 cannot be stored: the state change must not commit alone.
    let bad = TimelineEvent::new(EventKind::CrashRecovered, 0, 5).with_gap(u64::MAX);
    assert!(
        j.transition("a", JobState::Capturing, None, Some(&bad), 5)
            .is_err()
    );
    assert_eq!(j.job("a").unwrap().unwrap().state, JobState::Claimed);
    // The connection is usable afterwards (no transaction left open).
    j.transition("a", JobState::Capturing, None, None, 6)
        .unwrap();
}

#[test]
fn segments_in_order() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    j.create_job(&new_job("b", 2)).unwrap();
    // Inserted out of order; listed by seq.
    let s2 = j.insert_segment(&new_seg("a", 2, 28_800_000)).unwrap();
    let s0 = j.insert_segment(&new_seg("a", 0, 0)).unwrap();
    let s1 = j.insert_segment(&new_seg("a", 1, 14_400_000)).unwrap();
    let b0 = j.insert_segment(&new_seg("b", 0, 0)).unwrap();
    assert!(
        j.insert_segment(&new_seg("a", 1, 0)).is_err(),
        "seq is unique per job"
    );
    assert!(
        j.insert_segment(&new_seg("nope", 0, 0)).is_err(),
        "job must exist"
    );

    j.close_segment(s0, 14_400_000, SegmentState::Closed, 2_000)
        .unwrap();
    j.update_segment_frames(s1, 96_000).unwrap();
    j.close_segment(s1, 14_400_000, SegmentState::Repaired, 3_000)
        .unwrap();
    j.update_segment_frames(s2, 4_800).unwrap();
    assert!(matches!(
        j.close_segment(s2, 1, SegmentState::Open, 1),
        Err(JournalError::CloseAsOpen(_))
    ));
    assert!(matches!(
        j.update_segment_frames(999, 1),
        Err(JournalError::NoSuchSegment(999))
    ));

    let segs = j.segments("a").unwrap();
    let got: Vec<_> = segs
        .iter()
        .map(|s| (s.id, s.seq, s.first_frame, s.frames, s.state))
        .collect();
    assert_eq!(
        got,
        [
            (s0, 0, 0, 14_400_000, SegmentState::Closed),
            (s1, 1, 14_400_000, 14_400_000, SegmentState::Repaired),
            (s2, 2, 28_800_000, 4_800, SegmentState::Open),
        ]
    );
    assert_eq!(segs[0].path, "seg-00000.wav");
    assert_eq!(segs[0].spec, SPEC);
    assert_eq!(
        (segs[0].opened_at_ms, segs[0].closed_at_ms),
        (1_000, Some(2_000))
    );
    assert_eq!(segs[2].closed_at_ms, None);

    let open: Vec<_> = j
        .open_segments()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(open, [s2, b0]);
}

#[test]
fn events_in_order() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    j.create_job(&new_job("b", 1)).unwrap();
    let started = TimelineEvent::new(EventKind::Started, 0, 100);
    let lost = TimelineEvent::new(EventKind::DeviceLost, 9_600, 300).with_detail("ENODEV");
    let restored = TimelineEvent::new(EventKind::DeviceRestored, 9_600, 350).with_gap(2_400);
    let overrun =
        TimelineEvent::new(EventKind::Overrun, 4_800, 200).with_detail("dropped_frames=12");
    // Inserted out of frame order; two events share frame 9600 and keep insertion order.
    for ev in [&lost, &started, &restored, &overrun] {
        j.add_event("a", ev).unwrap();
    }
    j.add_event("b", &TimelineEvent::new(EventKind::Started, 0, 1))
        .unwrap();
    assert_eq!(j.events("a").unwrap(), [started, overrun, lost, restored]);
    assert_eq!(j.events("b").unwrap().len(), 1);
    assert!(j.events("none").unwrap().is_empty());
}

#[test]
fn beats_upsert() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.beat("capture").unwrap(), None);
    j.write_beat("capture", 42, "boot-1", 1_000, 1_000, "idle")
        .unwrap();
    j.write_beat("capture", 42, "boot-1", 1_000, 6_000, "job a: 48000 frames")
        .unwrap();
    let b = j.beat("capture").unwrap().unwrap();
    assert_eq!(
        b,
        BeatRow {
            role: "capture".into(),
            pid: 42,
            boot_id: "boot-1".into(),
            started_at_ms: 1_000,
            last_beat_ms: 6_000,
            progress: "job a: 48000 frames".into(),
        }
    );
}

#[test]
fn two_connections_share_the_file_under_wal() {
    let (_d, path) = temp();
    let mut writer = Journal::open(&path).unwrap();
    let reader = Journal::open(&path).unwrap();
    writer.create_job(&new_job("a", 1)).unwrap();

    // The reader holds a read transaction (a snapshot) while the writer commits.
    let snapshot =
        rusqlite::Transaction::new_unchecked(&reader.conn, TransactionBehavior::Deferred).unwrap();
    assert_eq!(reader.jobs().unwrap().len(), 1);
    writer
        .atomically(|w| {
            w.create_job(&new_job("b", 2))?;
            w.set_job_state("a", JobState::Capturing, None, 3)
        })
        .unwrap();
    assert_eq!(reader.jobs().unwrap().len(), 1, "reader keeps its snapshot");
    drop(snapshot);
    assert_eq!(reader.jobs().unwrap().len(), 2, "then sees the commit");
    assert_eq!(reader.job("a").unwrap().unwrap().state, JobState::Capturing);

    // And across threads, each with its own connection, writing concurrently.
    let p = path.clone();
    let t = std::thread::spawn(move || {
        let j = Journal::open(&p).unwrap();
        for i in 0..50 {
            j.add_event("a", &TimelineEvent::new(EventKind::Stall, i, i as i64))
                .unwrap();
        }
    });
    for i in 0..50 {
        reader.set_job_progress("b", i, i as i64).unwrap();
        let _ = writer.events("a").unwrap();
    }
    t.join().unwrap();
    assert_eq!(writer.events("a").unwrap().len(), 50);
}

#[test]
fn read_only_cannot_write() {
    let (_d, path) = temp();
    let err = Journal::open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }), "{err:?}");
    assert!(
        !path.exists(),
        "a read-only open must not create the journal"
    );
    {
        let j = Journal::open(&path).unwrap();
        j.create_job(&new_job("a", 1)).unwrap();
    } // last connection closed: WAL checkpointed, -wal/-shm removed
    let ro = Journal::open_read_only(&path).unwrap();
    assert_eq!(ro.job("a").unwrap().unwrap().state, JobState::Claimed);
    let err = ro.create_job(&new_job("b", 2)).unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    assert!(ro.set_job_state("a", JobState::Capturing, None, 2).is_err());
    assert_eq!(ro.jobs().unwrap().len(), 1);
}

#[test]
fn job_dirs_are_stored_relative_and_resolved_where_the_journal_is() {
    let root = tempfile::tempdir().unwrap();
    let here = root.path().join("here");
    let gone = root.path().join("gone"); // an old root that no longer exists
    let other = root.path().join("other"); // another output that still exists
    std::fs::create_dir_all(here.join("beside")).unwrap();
    std::fs::create_dir_all(other.join("beside")).unwrap();
    std::fs::create_dir_all(other.join("only_there")).unwrap();
    // (stored as written, where it resolves)
    let cases: Vec<(PathBuf, PathBuf)> = vec![
        ("job_a".into(), here.join("job_a")),
        (here.join("job_b"), here.join("job_b")),
        (gone.join("job_c"), here.join("job_c")),
        (other.join("beside"), here.join("beside")),
        (other.join("only_there"), other.join("only_there")),
    ];
    for (stored, want) in cases {
        assert_eq!(
            jobs::resolve_dir(&here, &stored),
            want,
            "{}",
            stored.display()
        );
    }
    // (given to create_job, stored as)
    let stores: Vec<(PathBuf, PathBuf)> = vec![
        (here.join("job_a"), "job_a".into()),
        (here.join("x/job_a"), "x/job_a".into()),
        (other.join("job_b"), other.join("job_b")),
        (here.clone(), here.clone()),
    ];
    for (given, want) in stores {
        assert_eq!(jobs::stored_dir(&here, &given), want, "{}", given.display());
    }
}

#[test]
fn old_absolute_dirs_are_rewritten_relative_at_open() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("edgerec.db");
    let j = Journal::open(&path).unwrap();
    j.create_job(&NewJob {
        dir: root.path().join("a"),
        ..new_job("a", 1)
    })
    .unwrap();
    // As an older edgerec wrote it: absolute, under a root since moved away.
    j.conn
        .execute("UPDATE jobs SET dir = '/srv/old-root/a' WHERE id = 'a'", [])
        .unwrap();
    drop(j);
    let j = Journal::open(&path).unwrap();
    let stored: String = j
        .conn
        .query_row("SELECT dir FROM jobs WHERE id = 'a'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, "a");
    assert_eq!(j.job("a").unwrap().unwrap().dir, root.path().join("a"));
}

#[test]
fn a_journal_failing_quick_check_is_damaged_not_opened() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    for i in 0..300 {
        j.create_job(&new_job(&format!("job-{i:04}"), i)).unwrap();
    }
    drop(j); // the last connection checkpoints the WAL into the file
    // Scribble over the last page (a b-tree page of the tables above), keeping page 1.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 3 * 4096, "{len}");
    let bytes = std::fs::read(&path).unwrap();
    let mut damaged = bytes.clone();
    for b in &mut damaged[(len - 4096) as usize..] {
        *b = 0x3C;
    }
    std::fs::write(&path, &damaged).unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(err.is_damaged(), "{err}");
    assert!(matches!(err, JournalError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("repair --rebuild"), "{err}");
    // Nothing was written to the damaged file.
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
    // And a healthy journal opens.
    std::fs::write(&path, &bytes).unwrap();
    Journal::open(&path).unwrap();
}

#[test]
fn a_sibling_shares_the_file_at_full_and_writes_up_front() {
    let (_d, path) = temp();
    let j = Journal::open(&path).unwrap();
    let s = j.sibling().unwrap();
    s.create_job(&new_job("a", 1)).unwrap();
    assert_eq!(j.job("a").unwrap().unwrap().id, "a");
    assert_eq!(pragma(&s, "synchronous"), 2, "FULL");
    assert_eq!(pragma(&s, "foreign_keys"), 1);
    // Job directories resolve where the journal is, as on the first connection.
    assert_eq!(s.job("a").unwrap(), j.job("a").unwrap());
}

#[test]
fn only_a_journal_with_no_byte_anywhere_is_fresh() {
    let (_d, path) = temp();
    assert!(is_fresh(&path), "nothing yet");
    let j = Journal::open(&path).unwrap();
    j.create_job(&new_job("a", 1)).unwrap();
    assert!(!is_fresh(&path), "written");
    drop(j);
    // An empty file beside a WAL that holds frames is not new: it is checked.
    std::fs::write(&path, b"").unwrap();
    std::fs::write(path.with_extension("db-wal"), [1u8; 64]).unwrap();
    assert!(!is_fresh(&path));
    std::fs::write(path.with_extension("db-wal"), b"").unwrap();
    assert!(is_fresh(&path));
}
