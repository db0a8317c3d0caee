//! The disk budget on a real filesystem that fills up: a small tmpfs mounted per test.
//!
//! Mounting needs root (or `unshare -Urm`); where it is denied, each test says so and
//! skips. Every mount is undone by a guard, also when a test fails.

use edgerec::core::disk_budget::{DiskAction, DiskBudget, DiskState};
use edgerec::core::format::{SampleFormat, StreamSpec};
use edgerec::core::job::JobState;
use edgerec::core::timeline::{EventKind, TimelineEvent};
use edgerec::journal::{JobSource, Journal, NewJob};
use edgerec::segment::disk::{
    JournalReserve, ReclaimedJob, disk_space, free_bytes, is_disk_full, is_journal_disk_full,
    reclaim, reclaim_bytes,
};
use edgerec::segment::file::SegmentFile;
use edgerec::segment::repair::segment_frames;
use edgerec::segment::wav::SEGMENT_HEADER_LEN;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// A tmpfs of a fixed size, unmounted (and its mount point removed) on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (e.g. "4m"); `None` (after saying why) where mounting is
    /// not allowed.
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("mount point");
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={size},mode=0755")).unwrap();
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({err}); run as root, or under \
                     `unshare -Urm`, to test a disk that fills up"
                );
                return None;
            }
            panic!("mount tmpfs on {}: {err}", dir.path().display());
        }
        Some(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path. Lazy unmount if something still holds a file
        // open (a failed test's leftovers): the mount never outlives the test process.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                let err = io::Error::last_os_error();
                eprintln!("umount {}: {err}; detaching", self.dir.path().display());
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
        // `dir` drops next and removes the (now empty) mount point.
    }
}

/// Writes `chunk`s to `file` until the disk refuses; returns the refusal.
fn write_until_full(file: &mut File) -> io::Error {
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            return e;
        }
    }
}

/// Fills the filesystem of `dir` with a file named `name` until it is full.
fn fill_disk(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = File::create(&path).unwrap();
    let err = write_until_full(&mut f);
    assert!(is_disk_full(&err), "filling {}: {err}", path.display());
    path
}

fn new_job(id: &str, source: JobSource, dir: &Path, state: JobState) -> NewJob {
    NewJob {
        id: id.to_string(),
        source,
        controller_job_id: (source == JobSource::Controller).then(|| format!("ctl-{id}")),
        recording_id: Some(format!("rec-{id}")),
        command_json: "{}".to_string(),
        backend: "synth".to_string(),
        device: "synth:sine".to_string(),
        spec: SPEC,
        duration_frames: None,
        dir: dir.to_path_buf(),
        state,
        created_at_ms: 0,
    }
}

/// A job directory with `files` files of `bytes` each.
fn job_dir(spool: &Path, id: &str, files: usize, bytes: usize) -> PathBuf {
    let dir = spool.join(id);
    fs::create_dir(&dir).unwrap();
    for i in 0..files {
        fs::write(dir.join(format!("{:06}.wav", i + 1)), vec![0x5Au8; bytes]).unwrap();
    }
    fs::write(dir.join("timeline.json"), b"{}").unwrap();
    dir
}

#[test]
fn a_filling_disk_pauses_below_the_reserve_and_enospc_is_a_full_disk() {
    let Some(small) = SmallFs::mount("4m") else {
        return;
    };
    let space = disk_space(small.path()).unwrap();
    assert_eq!(space.total_bytes, 4 * MIB);
    let budget = DiskBudget::for_spool_size(space.total_bytes).unwrap();
    assert_eq!(
        budget.decide(DiskState::Writing, space.free_bytes).action,
        DiskAction::Write
    );

    // Another writer takes the disk down to just below the reserve.
    let filler = small.path().join("filler");
    let mut f = File::create(&filler).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while free_bytes(small.path()).unwrap() >= budget.reserve_below() {
        f.write_all(&chunk).unwrap();
    }
    let free = free_bytes(small.path()).unwrap();
    let d = budget.decide(DiskState::Writing, free);
    assert_eq!(d.action, DiskAction::Pause, "{free} bytes free");
    assert!(d.reclaim);
    assert_eq!(
        budget.decide(DiskState::Paused, free).action,
        DiskAction::StayPaused
    );

    // Past the reserve, to the end of the disk: the write error is a full disk.
    let err = write_until_full(&mut f);
    assert!(is_disk_full(&err), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert!(free_bytes(small.path()).unwrap() < 64 * 1024);
    assert_eq!(
        budget.on_write_error(DiskState::Writing).action,
        DiskAction::Pause
    );

    // Space comes back: the paused writer resumes.
    drop(f);
    fs::remove_file(&filler).unwrap();
    let free = free_bytes(small.path()).unwrap();
    assert_eq!(
        budget.decide(DiskState::Paused, free).action,
        DiskAction::Resume,
        "{free} bytes free"
    );
}

#[test]
fn released_reserve_lets_the_journal_write_on_a_full_disk() {
    let Some(small) = SmallFs::mount("4m") else {
        return;
    };
    let spool = small.path();
    let mut reserve = JournalReserve::open(spool, JournalReserve::DEFAULT_BYTES).unwrap();
    reserve.restore().unwrap();
    let journal = Journal::open(&spool.join("journal.db")).unwrap();
    journal
        .create_job(&new_job(
            "rec",
            JobSource::Local,
            &spool.join("rec"),
            JobState::Capturing,
        ))
        .unwrap();

    fill_disk(spool, "filler");
    // With the disk full and the reserve held, the journal runs out of room.
    let detail = "x".repeat(2000);
    let mut refused = None;
    for i in 0..4096u64 {
        let ev = TimelineEvent::new(EventKind::Stall, i, 1_000).with_detail(&detail);
        if let Err(e) = journal.add_event("rec", &ev) {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("the journal never ran out of room on a full disk");
    assert!(is_journal_disk_full(&err), "{err}");

    // Released, the reserve's space is the journal's.
    assert!(reserve.release().unwrap());
    assert!(!spool.join(JournalReserve::FILE_NAME).exists());
    let free = free_bytes(spool).unwrap();
    assert!(
        free >= JournalReserve::DEFAULT_BYTES,
        "{free} bytes free after release"
    );
    // As the budget counts it, nothing came back for audio.
    assert!(reserve.budget_free(free) < 64 * 1024);
    let pause = TimelineEvent::new(EventKind::DiskPause, 4096, 2_000).with_detail("disk full");
    journal.add_event("rec", &pause).unwrap();
    journal
        .create_job(&new_job(
            "next",
            JobSource::Local,
            &spool.join("next"),
            JobState::Capturing,
        ))
        .unwrap();
    journal
        .set_job_state("rec", JobState::Failed, Some("disk full"), 3_000)
        .unwrap();
    drop(journal);

    // Durable: a fresh connection reads it all back.
    let journal = Journal::open(&spool.join("journal.db")).unwrap();
    let events = journal.events("rec").unwrap();
    assert!(events.contains(&pause), "{events:?}");
    assert!(journal.job("next").unwrap().is_some());
    assert_eq!(journal.job("rec").unwrap().unwrap().state, JobState::Failed);

    // Space freed: the reserve comes back, and it is real blocks again.
    fs::remove_file(spool.join("filler")).unwrap();
    let before = free_bytes(spool).unwrap();
    reserve.restore().unwrap();
    assert!(reserve.is_held());
    let after = free_bytes(spool).unwrap();
    assert!(
        before - after >= JournalReserve::DEFAULT_BYTES,
        "restoring took {} bytes",
        before - after
    );
}

#[test]
fn restoring_the_reserve_on_a_full_disk_fails_cleanly() {
    let Some(small) = SmallFs::mount("2m") else {
        return;
    };
    let spool = small.path();
    let mut reserve = JournalReserve::open(spool, JournalReserve::DEFAULT_BYTES).unwrap();
    fill_disk(spool, "filler");
    let err = reserve.restore().unwrap_err();
    assert!(is_disk_full(&err), "{err}");
    assert!(!reserve.is_held());
    let names: Vec<_> = fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["filler"], "nothing half-made is left behind");
}

/// Jobs ended at `ENDED_OLD` (past retention) or `ENDED_RECENT` (inside it); reclaim runs
/// at `NOW`.
const NOW: i64 = 1_800_000_000_000;
const RETENTION: Duration = Duration::from_secs(24 * 3600);
const ENDED_OLD: i64 = NOW - 3 * 24 * 3600 * 1000;
const ENDED_RECENT: i64 = NOW - 3600 * 1000;

#[test]
fn reclaim_deletes_only_delivered_controller_recordings_past_retention() {
    let Some(small) = SmallFs::mount("4m") else {
        return;
    };
    let spool = small.path();
    let journal = Journal::open(&spool.join("journal.db")).unwrap();
    // (id, source, final state, ended at)
    let jobs = [
        (
            "delivered-old",
            JobSource::Controller,
            Some(JobState::Delivered),
            ENDED_OLD,
        ),
        (
            "delivered-recent",
            JobSource::Controller,
            Some(JobState::Delivered),
            ENDED_RECENT,
        ),
        (
            "local-delivered",
            JobSource::Local,
            Some(JobState::Delivered),
            ENDED_OLD - 1,
        ),
        (
            "failed",
            JobSource::Controller,
            Some(JobState::Failed),
            ENDED_OLD - 2,
        ),
        ("capturing", JobSource::Controller, None, ENDED_OLD - 3),
    ];
    for (id, source, state, ended) in jobs {
        let dir = job_dir(spool, id, 2, 250 * 1024);
        journal
            .create_job(&new_job(id, source, &dir, JobState::Capturing))
            .unwrap();
        if let Some(state) = state {
            journal.set_job_state(id, state, None, ended).unwrap();
        }
    }
    // Five recordings of ~500 KiB on 4 MiB: below the reclaim mark.
    let budget = DiskBudget::for_spool_size(disk_space(spool).unwrap().total_bytes).unwrap();
    let free = free_bytes(spool).unwrap();
    let decision = budget.decide(DiskState::Writing, free);
    assert!(decision.reclaim, "{free} bytes free, {budget:?}");

    let got = reclaim(&journal, spool, &budget, RETENTION, NOW).unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(ids, ["delivered-old"]);
    let ReclaimedJob { dir, bytes, .. } = &got[0];
    assert!(*bytes >= 500 * 1024, "{bytes} bytes");
    assert!(!dir.exists());
    for (id, ..) in &jobs[1..] {
        let kept = spool.join(id);
        assert!(kept.join("000001.wav").exists(), "{id} was deleted");
        assert!(kept.join("000002.wav").exists(), "{id} was deleted");
    }
    // The journal still knows the job; its recording is gone from this box.
    assert_eq!(
        journal.job("delivered-old").unwrap().unwrap().state,
        JobState::Delivered
    );
    // Running again finds nothing more to delete, however much is needed.
    let again = reclaim_bytes(&journal, spool, u64::MAX, RETENTION, NOW).unwrap();
    assert!(again.is_empty(), "{again:?}");
    // Once past its retention, the recent one goes too; the others never.
    let later = ENDED_RECENT + 24 * 3600 * 1000;
    let got = reclaim_bytes(&journal, spool, u64::MAX, RETENTION, later).unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(ids, ["delivered-recent"]);
    for id in ["local-delivered", "failed", "capturing"] {
        assert!(
            spool.join(id).join("000001.wav").exists(),
            "{id} was deleted"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A recording that fills the disk, end to end: a small writer loop that follows the
// protocol the segment writer is to follow (see `Recorder`), on a real tmpfs.

/// 3-byte samples, so a disk that fills mid-write can cut a frame in two.
const SPEC: StreamSpec = StreamSpec {
    format: SampleFormat::S24Le3,
    rate: 48_000,
    channels: 2,
};
/// Frames the ring hands over per tick (100 ms).
const BATCH: u64 = 4_800;
/// The writer looks at the disk every this many ticks (once a second).
const LOOK_EVERY: u64 = 10;

/// The audio of ring frames `first..first + frames`: every byte depends on its position,
/// so a segment's content proves which frames it holds.
fn audio(first: u64, frames: u64) -> Vec<u8> {
    let bpf = SPEC.bytes_per_frame() as u64;
    (first * bpf..(first + frames) * bpf)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A closed segment: its file, where it sits on the timeline, how many frames it holds.
#[derive(Debug)]
struct Closed {
    path: PathBuf,
    first_frame: u64,
    frames: u64,
}

/// A minimal segment writer following the disk budget. The ring is simulated: each tick
/// hands over `BATCH` frames, which are written, or drained unwritten while paused (the
/// device never notices; the frames are the gap).
struct Recorder {
    spool: PathBuf,
    job_id: String,
    job_dir: PathBuf,
    journal: Journal,
    reserve: JournalReserve,
    budget: DiskBudget,
    state: DiskState,
    open: Option<(SegmentFile, u64)>,
    closed: Vec<Closed>,
    next_seq: u32,
    /// Ring frames consumed so far = timeline position of the next frame.
    ring_pos: u64,
    /// Timeline position where the current pause began.
    paused_at: u64,
    ticks: u64,
    reclaimed: Vec<String>,
}

impl Recorder {
    fn tick(&mut self) {
        let at = self.ring_pos;
        self.ring_pos += BATCH;
        self.ticks += 1;
        let action = if self.ticks % LOOK_EVERY == 0 {
            self.look()
        } else if self.state == DiskState::Writing {
            DiskAction::Write
        } else {
            DiskAction::StayPaused
        };
        match action {
            DiskAction::Write => self.write(at),
            DiskAction::Resume => {
                self.resume(at);
                self.write(at);
            }
            DiskAction::Pause => {
                let free = self.budget_free();
                self.pause(at, &format!("{free} bytes free, below the reserve"));
            }
            DiskAction::StayPaused => {}
        }
    }

    fn budget_free(&self) -> u64 {
        self.reserve
            .budget_free(free_bytes(&self.spool).expect("statvfs"))
    }

    /// Looks at the disk: reclaims if asked, then decides on the free space after it.
    fn look(&mut self) -> DiskAction {
        let mut d = self.budget.decide(self.state, self.budget_free());
        if d.reclaim {
            let need = self.budget.reclaim_need(self.budget_free());
            let got =
                reclaim_bytes(&self.journal, &self.spool, need, RETENTION, NOW).expect("reclaim");
            if !got.is_empty() {
                self.reclaimed.extend(got.into_iter().map(|r| r.job_id));
                d = self.budget.decide(self.state, self.budget_free());
            }
        }
        d.action
    }

    fn write(&mut self, at: u64) {
        if self.open.is_none() {
            let path = self.job_dir.join(format!("{:06}.wav", self.next_seq));
            self.next_seq += 1;
            let seg = SegmentFile::create(&path, SPEC).expect("new segment");
            self.open = Some((seg, at));
        }
        let (seg, first) = self.open.as_mut().expect("a segment is open");
        assert_eq!(*first + seg.frames(), at, "segments are contiguous runs");
        if let Err(e) = seg.write_frames(&audio(at, BATCH)) {
            assert!(is_disk_full(&e), "segment write: {e}");
            assert_eq!(
                self.budget.on_write_error(self.state).action,
                DiskAction::Pause
            );
            // The segment kept the whole frames that reached the disk; the run ends there.
            let end = *first + seg.frames();
            self.pause(end, &format!("write: {e}"));
        }
    }

    fn pause(&mut self, at: u64, detail: &str) {
        // 1. End the run: the segment is a valid WAV up to its last whole frame.
        if let Some((seg, first_frame)) = self.open.take() {
            let path = seg.path().to_path_buf();
            let frames = seg.close().expect("closing a segment needs no new space");
            self.closed.push(Closed {
                path,
                first_frame,
                frames,
            });
        }
        // 2. Give the journal its room, 3. then record the pause.
        self.reserve.release().expect("release the reserve");
        let ev = TimelineEvent::new(EventKind::DiskPause, at, NOW).with_detail(detail);
        self.journal
            .add_event(&self.job_id, &ev)
            .expect("the journal stays writable on a full disk");
        self.paused_at = at;
        self.state = DiskState::Paused;
    }

    fn resume(&mut self, at: u64) {
        // The budget counted the reserve as used, so the room to re-create it is there.
        self.reserve.restore().expect("restore the reserve");
        let gap = at - self.paused_at;
        let ev = TimelineEvent::new(EventKind::DiskResume, self.paused_at, NOW)
            .with_detail("disk has room again")
            .with_gap(gap);
        self.journal.add_event(&self.job_id, &ev).unwrap();
        self.state = DiskState::Writing;
    }

    /// Ticks until the state is `want`, at most `max` ticks; returns the ticks taken.
    fn tick_until(&mut self, want: DiskState, max: u64) -> u64 {
        for n in 1..=max {
            self.tick();
            if self.state == want {
                return n;
            }
        }
        panic!(
            "still {:?} after {max} ticks ({} bytes free for the budget)",
            self.state,
            self.budget_free()
        );
    }

    fn finish(&mut self) {
        if let Some((seg, first_frame)) = self.open.take() {
            let path = seg.path().to_path_buf();
            let frames = seg.close().unwrap();
            self.closed.push(Closed {
                path,
                first_frame,
                frames,
            });
        }
    }
}

#[test]
fn a_recording_that_fills_the_disk_pauses_and_resumes_with_the_gap_on_the_timeline() {
    let Some(small) = SmallFs::mount("8m") else {
        return;
    };
    let spool = small.path().to_path_buf();
    let total = disk_space(&spool).unwrap().total_bytes;
    let budget = DiskBudget::for_spool_size(total).unwrap();
    let mut reserve = JournalReserve::open(&spool, JournalReserve::DEFAULT_BYTES).unwrap();
    reserve.restore().unwrap();
    let journal = Journal::open(&spool.join("journal.db")).unwrap();

    // An old controller recording still being uploaded (3 MiB), and a local one that is
    // delivered (its directory is the only copy): neither may be deleted for now.
    let old = job_dir(&spool, "old", 3, MIB as usize);
    journal
        .create_job(&new_job(
            "old",
            JobSource::Controller,
            &old,
            JobState::Uploading,
        ))
        .unwrap();
    let local = job_dir(&spool, "local", 1, 256 * 1024);
    journal
        .create_job(&new_job(
            "local",
            JobSource::Local,
            &local,
            JobState::Capturing,
        ))
        .unwrap();
    journal
        .set_job_state("local", JobState::Delivered, None, ENDED_OLD)
        .unwrap();
    let rec_dir = spool.join("rec");
    fs::create_dir(&rec_dir).unwrap();
    journal
        .create_job(&new_job(
            "rec",
            JobSource::Local,
            &rec_dir,
            JobState::Capturing,
        ))
        .unwrap();

    let mut r = Recorder {
        spool: spool.clone(),
        job_id: "rec".into(),
        job_dir: rec_dir,
        journal,
        reserve,
        budget,
        state: DiskState::Writing,
        open: None,
        closed: Vec::new(),
        next_seq: 1,
        ring_pos: 0,
        paused_at: 0,
        ticks: 0,
        reclaimed: Vec::new(),
    };

    // Phase 1: the recording fills the disk and pauses below the reserve, with nothing
    // it may reclaim.
    r.tick_until(DiskState::Paused, 400);
    assert!(r.budget_free() < budget.reserve_below());
    assert!(!r.reserve.is_held(), "the pause released the reserve");
    let first_pause = r.paused_at;
    for _ in 0..2 * LOOK_EVERY {
        r.tick();
    }
    assert_eq!(r.state, DiskState::Paused, "nothing freed, still paused");
    assert!(r.reclaimed.is_empty());
    assert!(old.exists() && local.exists());

    // The upload is acknowledged: the old recording is delivered and past retention.
    r.journal
        .set_job_state("old", JobState::Delivered, None, ENDED_OLD)
        .unwrap();
    r.tick_until(DiskState::Writing, 2 * LOOK_EVERY);
    assert_eq!(r.reclaimed, ["old"]);
    assert!(!old.exists());
    assert!(
        local.join("000001.wav").exists(),
        "a local recording is never reclaimed"
    );
    assert!(r.reserve.is_held(), "resuming restored the reserve");
    for _ in 0..2 * LOOK_EVERY {
        r.tick();
    }
    assert_eq!(r.state, DiskState::Writing);

    // Phase 2: another program fills the disk to the last byte between two looks; the
    // next segment write fails with ENOSPC, and the journal must still record the pause.
    while r.ticks % LOOK_EVERY != 0 {
        r.tick();
    }
    let filler = fill_disk(&spool, "filler");
    r.tick();
    assert_eq!(r.state, DiskState::Paused, "ENOSPC paused the writer");
    let second_pause = r.paused_at;
    for _ in 0..2 * LOOK_EVERY {
        r.tick();
    }
    assert_eq!(r.state, DiskState::Paused);
    // Freeing space resumes writing.
    fs::remove_file(&filler).unwrap();
    r.tick_until(DiskState::Writing, 2 * LOOK_EVERY);
    for _ in 0..LOOK_EVERY {
        r.tick();
    }
    r.finish();
    let total_frames = r.ring_pos;

    // The timeline: two pauses, each resumed with its gap, in frames.
    let events = r.journal.events("rec").unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.frame)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::DiskPause, first_pause),
            (EventKind::DiskResume, first_pause),
            (EventKind::DiskPause, second_pause),
            (EventKind::DiskResume, second_pause),
        ]
    );
    assert!(events[0].detail.contains("below the reserve"), "{events:?}");
    assert!(events[2].detail.contains("write:"), "{events:?}");

    // Segments and gaps tile the timeline exactly, and every segment is a valid WAV
    // holding exactly its frames.
    assert_eq!(r.closed.len(), 3, "{:?}", r.closed);
    let gaps: Vec<_> = events.iter().filter_map(|e| e.gap_frames).collect();
    let mut pos = 0;
    for (i, seg) in r.closed.iter().enumerate() {
        if i > 0 {
            let gap = gaps[i - 1];
            assert!(gap >= BATCH, "a pause of at least a tick: {gap}");
            assert_eq!(
                events[2 * i - 1].frame,
                pos,
                "gap {i} starts where the run ended"
            );
            pos += gap;
        }
        assert_eq!(seg.first_frame, pos, "segment {i} starts after the gap");
        assert!(seg.frames > 0);
        let (spec, frames) = segment_frames(&seg.path).expect("valid segment");
        assert_eq!((spec, frames), (SPEC, seg.frames), "{}", seg.path.display());
        let reader = hound::WavReader::open(&seg.path).expect("hound reads it");
        assert_eq!(reader.len() as u64, seg.frames * SPEC.channels as u64);
        let bytes = fs::read(&seg.path).unwrap();
        let data = &bytes[SEGMENT_HEADER_LEN as usize..];
        assert!(
            data == audio(seg.first_frame, seg.frames).as_slice(),
            "segment {i} holds other frames than its place on the timeline says"
        );
        pos += seg.frames;
    }
    assert_eq!(pos, total_frames, "segments + gaps = the whole capture");
}
