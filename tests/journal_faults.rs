//! Relocatable, self-checking output, against real processes, signals and files: a
//! recording killed with SIGKILL, then its output directory moved, copied, its journal
//! corrupted or its WAL damaged, a segment made unreadable, or the repair run after the
//! window: `edgerec repair` works on the directory it is given alone, reports a damaged
//! journal with its own exit code, rebuilds from the segment files, and never pads a
//! recording past its audio. Recordings are checked with sox and hound.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RATE: u64 = 48_000;
/// Exit code of a damaged journal (src/cli/exit.rs `JOURNAL_DAMAGED`).
const JOURNAL_DAMAGED: i32 = 12;

/// `record` of synth noise in 1 s segments into `out`.
fn synth_record(out: &Path, duration: &str) -> Command {
    let mut cmd = edgerec();
    cmd.args(["record", "--backend", "synth", "--device", "noise"])
        .args(["--duration", duration, "--segment-seconds", "1", "--out"])
        .arg(out);
    cmd
}

/// Starts [`synth_record`], SIGKILLs it `kill_after` after its job started; returns that
/// start's wall time in ms.
fn record_and_kill(out: &Path, duration: &str, kill_after: Duration) -> i64 {
    let mut child = synth_record(out, duration)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Timed from the job's start (its directory appears then), not from the spawn: on a
    // loaded CI box the process took over 1.5 s to get there, and a kill before it left
    // no job at all.
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_dirs(out).is_empty() {
        assert!(Instant::now() < deadline, "no job started in 30 s");
        assert!(child.try_wait().unwrap().is_none(), "record ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = now_ms();
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    started
}

/// Every file under `dir` with its bytes: a byte-for-byte picture of a tree.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let (p, kind) = (e.path(), e.file_type().unwrap());
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                out.insert(rel, Vec::new()); // a socket (the hotplug wake-up): it exists
            }
        }
    }
    out
}

fn soxi_seconds(path: &Path) -> f64 {
    let out = Command::new("soxi").arg("-D").arg(path).output().unwrap();
    assert!(out.status.success(), "soxi -D {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Audio frames the timeline's readable segments hold.
fn segment_audio(tl: &serde_json::Value) -> u64 {
    tl["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "unreadable")
        .map(|s| s["frames"].as_u64().unwrap())
        .sum()
}

fn repair(dir: &Path, rebuild: bool) -> std::process::Output {
    let mut cmd = edgerec();
    cmd.arg("repair");
    if rebuild {
        cmd.arg("--rebuild");
    }
    run(cmd.arg(dir))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The recording ends at its last captured frame: its length is what the segments hold,
/// hound and sox agree, and the timeline says the same.
fn assert_not_padded(job: &Path) -> u64 {
    let tl = timeline(job);
    let rec = delivered_wav(job);
    let frames = wav_frames(&rec);
    assert_eq!(frames, segment_audio(&tl), "{tl:#}");
    assert_eq!(tl["frames"].as_u64().unwrap(), frames);
    let sox = soxi_seconds(&rec);
    assert!(
        (sox - frames as f64 / RATE as f64).abs() < 0.001,
        "sox says {sox} s"
    );
    frames
}

#[test]
fn repair_of_moved_directory_works_there_alone() {
    let _rt = realtime();
    let root = tempfile::tempdir().unwrap();
    let old = root.path().join("recorded-here");
    let new = root.path().join("moved-there");
    record_and_kill(&old, "60s", Duration::from_millis(2900));
    std::fs::rename(&old, &new).unwrap();

    let out = repair(&new, false);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        !old.exists(),
        "repair recreated the old path {}",
        old.display()
    );
    let job = only_job(&new);
    let frames = assert_not_padded(&job);
    assert!(
        frames >= 48_000,
        "the audio in the moved directory was found: {frames}"
    );
    assert_eq!(events_of(&timeline(&job), "crash_recovered").len(), 1);
    assert!(stdout(&out).contains(&new.display().to_string()));
}

#[test]
fn repair_of_a_copy_leaves_the_original_untouched() {
    let _rt = realtime();
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let copy = root.path().join("copy");
    record_and_kill(&original, "60s", Duration::from_millis(2900));
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&original)
        .arg(&copy)
        .status();
    assert!(cp.unwrap().success());
    let before = snapshot(&original);

    let out = repair(&copy, false);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(snapshot(&original) == before, "the original changed");
    assert!(!only_job(&original).join("recording.wav").exists());
    assert_not_padded(&only_job(&copy));
}

/// A journal written before paths were relative stores absolute job directories: a copy
/// of such an output resolves them to its own directories and rewrites them relative.
#[test]
fn legacy_absolute_job_dirs_resolve_to_the_copy() {
    let _rt = realtime();
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let copy = root.path().join("copy");
    record_and_kill(&original, "60s", Duration::from_millis(1500));
    let job_dir = only_job(&original);
    let db = rusqlite::Connection::open(original.join("edgerec.db")).unwrap();
    let changed = db
        .execute("UPDATE jobs SET dir = ?1", [job_dir.to_str().unwrap()])
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&original)
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    let before = snapshot(&original);

    let out = repair(&copy, false);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(snapshot(&original) == before, "the original changed");
    assert_not_padded(&only_job(&copy));
    let db = rusqlite::Connection::open(copy.join("edgerec.db")).unwrap();
    let stored: String = db
        .query_row("SELECT dir FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        Path::new(&stored),
        job_dir.file_name().unwrap(),
        "now relative"
    );
}

#[test]
fn late_repair_does_not_pad_to_the_window() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let started = record_and_kill(out.path(), "5s", Duration::from_millis(2900));
    // Repair after the window (5 s) has closed.
    let wait = (started + 6_000 - now_ms()).max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait));
    let out_r = repair(out.path(), false);
    assert!(out_r.status.success());
    let job = only_job(out.path());
    let frames = assert_not_padded(&job);
    eprintln!(
        "killed at 2.9 s of a 5 s job, repaired at 6 s: delivered {:.3} s",
        frames as f64 / RATE as f64
    );
    assert!(
        frames <= 29 * RATE / 10,
        "no more than was captured: {frames}"
    );
    assert!(frames < 5 * RATE, "not padded to the window");
    let tl = timeline(&job);
    let crash = events_of(&tl, "crash_recovered");
    assert_eq!(crash.len(), 1, "{tl:#}");
    assert_eq!(crash[0]["frame"].as_u64().unwrap(), frames);
    assert_eq!(
        crash[0]["frame"].as_u64().unwrap() + crash[0]["gap_frames"].as_u64().unwrap(),
        5 * RATE,
        "the crash gap closes the window, on the timeline only"
    );
    assert!(
        crash[0]["detail"]
            .as_str()
            .unwrap()
            .contains("last captured frame")
    );
}

#[test]
fn late_capture_restart_does_not_pad_to_the_window() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let started = record_and_kill(out.path(), "4s", Duration::from_millis(1500));
    let wait = (started + 5_000 - now_ms()).max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait));
    let role = run(edgerec()
        .args(["capture", "--exit-when-idle", "--state-dir"])
        .arg(out.path()));
    assert!(role.status.success());
    let job = only_job(out.path());
    let frames = assert_not_padded(&job);
    assert!(
        frames <= 15 * RATE / 10,
        "no more than was captured, not the window: {frames}"
    );
    let tl = timeline(&job);
    let crash = events_of(&tl, "crash_recovered");
    assert_eq!(crash.len(), 1, "{tl:#}");
    assert_eq!(
        crash[0]["frame"].as_u64().unwrap() + crash[0]["gap_frames"].as_u64().unwrap(),
        4 * RATE
    );
}

/// Overwrites everything after SQLite's 100-byte header, and the WAL's frames.
fn corrupt_journal(out: &Path) {
    use std::os::unix::fs::FileExt;
    let db = out.join("edgerec.db");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&vec![0xA5; (len - 100) as usize], 100)
        .unwrap();
    let wal = out.join("edgerec.db-wal");
    if let Ok(meta) = std::fs::metadata(&wal) {
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.write_all_at(&vec![0x5A; meta.len() as usize], 0).unwrap();
    }
}

#[test]
fn corrupt_journal_has_its_own_exit_code() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    record_and_kill(out.path(), "60s", Duration::from_millis(2500));
    corrupt_journal(out.path());
    let job = only_job(out.path());
    let segments_before = snapshot(&job);

    let r = repair(out.path(), false);
    assert_eq!(r.status.code(), Some(JOURNAL_DAMAGED));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("damaged") && err.contains("repair --rebuild"),
        "{err}"
    );
    assert!(!job.join("recording.wav").exists(), "finalized as if fine");
    assert!(!job.join("timeline.json").exists(), "finalized as if fine");
    // The roles refuse it at start-up the same way.
    let role = run(edgerec()
        .args(["capture", "--exit-when-idle", "--state-dir"])
        .arg(out.path()));
    assert_eq!(role.status.code(), Some(JOURNAL_DAMAGED));
    let record = run(&mut synth_record(out.path(), "1s"));
    assert_eq!(record.status.code(), Some(JOURNAL_DAMAGED));
    assert_eq!(
        job_dirs(out.path()),
        std::slice::from_ref(&job),
        "no new job on a damaged journal"
    );
    assert!(snapshot(&job) == segments_before, "segments touched");
    // `--help` documents the code.
    let help = run(edgerec().arg("--help"));
    assert!(stdout(&help).contains("12 journal damaged"));
}

#[test]
fn rebuild_recovers_the_job_from_its_segment_files() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    record_and_kill(out.path(), "60s", Duration::from_millis(3500));
    corrupt_journal(out.path());
    let damaged = std::fs::read(out.path().join("edgerec.db")).unwrap();
    let job = only_job(out.path());
    let files = segment_files(&job);
    assert!(files.len() >= 2, "{files:?}");

    let r = repair(out.path(), true);
    assert!(r.status.success(), "{}", stdout(&r));
    // The damaged journal is kept beside the new one, byte for byte.
    let kept: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("edgerec.db.damaged-"))
        .collect();
    let kept_db = kept
        .iter()
        .find(|p| !p.to_string_lossy().ends_with("-wal"))
        .unwrap();
    assert_eq!(std::fs::read(kept_db).unwrap(), damaged);
    // Every segment is back on the timeline where its header places it.
    let tl = timeline(&job);
    let segs = tl["segments"].as_array().unwrap();
    assert_eq!(segs.len(), files.len(), "{tl:#}");
    let mut next = 0;
    for (seg, file) in segs.iter().zip(&files) {
        assert_eq!(seg["first_frame"].as_u64().unwrap(), next, "{tl:#}");
        assert_eq!(seg["frames"].as_u64().unwrap(), wav_frames(file));
        next += wav_frames(file);
    }
    let frames = assert_not_padded(&job);
    assert!(frames >= RATE, "{frames}");
    assert!(
        !tl["started_at"].is_null(),
        "the start is known from the first segment"
    );
    // The rebuilt journal is healthy: a second repair has nothing to do.
    let again = repair(out.path(), false);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("0 jobs finalized"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn damaged_wal_that_drops_a_job_lists_its_segments_then_rebuild_adopts_them() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    // A first job completes (its process checkpoints the WAL into the journal at exit).
    let done = run(&mut synth_record(out.path(), "1s"));
    assert!(done.status.success());
    std::thread::sleep(Duration::from_millis(1100)); // job ids are per second
    record_and_kill(out.path(), "60s", Duration::from_millis(2500));
    // The WAL holding the second job is lost (torn on a power cut, say).
    std::fs::write(out.path().join("edgerec.db-wal"), b"").unwrap();
    let _ = std::fs::remove_file(out.path().join("edgerec.db-shm"));
    let dropped = job_dirs(out.path()).pop().unwrap();
    let files = segment_files(&dropped);
    assert!(!files.is_empty());
    let before = snapshot(&dropped);

    let r = repair(out.path(), false);
    assert!(r.status.success());
    let text = stdout(&r);
    for f in &files {
        assert!(
            text.contains(&format!(
                "unknown to the journal (kept on disk): {}",
                f.display()
            )),
            "{} not listed: {text}",
            f.display()
        );
    }
    assert!(
        snapshot(&dropped) == before,
        "unknown segments were touched"
    );

    let r = repair(out.path(), true);
    assert!(r.status.success(), "{}", stdout(&r));
    assert!(stdout(&r).contains("1 jobs adopted"), "{}", stdout(&r));
    let frames = assert_not_padded(&dropped);
    let on_disk: u64 = files.iter().map(|f| wav_frames(f)).sum();
    assert_eq!(frames, on_disk, "every adopted frame is in the recording");
    let again = repair(out.path(), false);
    assert!(
        stdout(&again).contains("0 unknown segments"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn unreadable_closed_segment_is_a_gap_of_its_own_kind() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    record_and_kill(out.path(), "60s", Duration::from_millis(3700));
    let job = only_job(out.path());
    let files = segment_files(&job);
    assert!(files.len() >= 3, "{files:?}");
    let broken = &files[1]; // closed: the writer moved on to the next one
    let mut bytes = std::fs::read(broken).unwrap();
    bytes[..4].copy_from_slice(b"JUNK");
    std::fs::write(broken, &bytes).unwrap();

    let r = repair(out.path(), false);
    assert!(r.status.success());
    assert_eq!(std::fs::read(broken).unwrap(), bytes, "kept untouched");
    let tl = timeline(&job);
    let seg = tl["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "unreadable")
        .expect("the segment is listed unreadable")
        .clone();
    let (first, held) = (
        seg["first_frame"].as_u64().unwrap(),
        seg["frames"].as_u64().unwrap(),
    );
    assert_eq!(held, RATE, "the frames it held are known: {seg}");
    let gap = events_of(&tl, "segment_unreadable");
    assert_eq!(gap.len(), 1, "{tl:#}");
    assert_eq!(gap[0]["frame"].as_u64().unwrap(), first);
    assert_eq!(gap[0]["gap_frames"].as_u64().unwrap(), held);
    // Inside the recording the gap is filled (silence); the audio around it is intact.
    let rec = job.join("recording.wav");
    let total = wav_frames(&rec);
    assert_eq!(total, segment_audio(&tl) + held, "{tl:#}");
    let mut reader = hound::WavReader::open(&rec).unwrap();
    let ch = reader.spec().channels as u64;
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let range = |a: u64, b: u64| &samples[(a * ch) as usize..(b * ch) as usize];
    assert!(
        range(first, first + held).iter().all(|&s| s == 0),
        "the gap is silence"
    );
    assert!(
        range(0, first).iter().any(|&s| s != 0),
        "audio before it kept"
    );
    assert!(
        range(first + held, total).iter().any(|&s| s != 0),
        "audio after it kept"
    );
}

/// Under the agent: the capture role killed mid-job and back only after the window: the
/// job is delivered at its real length and the upload says so (x-rakkr-duration-seconds).
#[test]
fn agent_crash_past_the_window_uploads_the_real_duration() {
    use common::controller::*;
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("noise", 6.0);
    let capture = || {
        edgerec()
            .args(["capture", "--state-dir"])
            .arg(state.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = capture();
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(5000)); // past the 6 s window
    let mut second = capture();
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(30));
    assert_eq!(done.status.to_string(), "completed");
    let dir = agent_job_dir(state.path(), &job.id);
    let frames = assert_not_padded(&dir);
    assert!(frames < 5 * RATE, "not padded to the 6 s window: {frames}");
    let rec = ctl.recording(&done.id);
    let header = rec.duration_seconds.expect("a duration header");
    eprintln!(
        "delivered {:.3} s, upload header {header} s",
        frames as f64 / RATE as f64
    );
    assert!(
        (header - frames as f64 / RATE as f64).abs() < 0.001,
        "{header}"
    );
    assert_eq!(rec.checksum.unwrap(), sha256_file(&delivered_wav(&dir)));
    sigterm(&mut sync, Duration::from_secs(5));
    sigterm(&mut second, Duration::from_secs(5));
}

/// A job delivered before the journal was damaged: `--rebuild` renders the same recording
/// from its segments and keeps the events its earlier timeline.json recorded.
#[test]
fn rebuild_keeps_a_delivered_recording_and_its_timeline() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let done = run(&mut synth_record(out.path(), "2500ms"));
    assert!(done.status.success());
    let job = only_job(out.path());
    let recording = std::fs::read(job.join("recording.wav")).unwrap();
    let before = timeline(&job);
    corrupt_journal(out.path());

    let r = repair(out.path(), true);
    assert!(r.status.success(), "{}", stdout(&r));
    assert!(stdout(&r).contains("1 jobs adopted"), "{}", stdout(&r));
    assert_eq!(
        std::fs::read(job.join("recording.wav")).unwrap(),
        recording,
        "the same recording, byte for byte"
    );
    let after = timeline(&job);
    assert_eq!(after["started_at"], before["started_at"]);
    assert_eq!(after["segments"], before["segments"]);
    let ended = events_of(&after, "ended");
    assert_eq!(ended.len(), 1, "{after:#}");
    assert_eq!(
        ended[0]["detail"], "duration_reached",
        "the earlier end is kept"
    );
    assert_eq!(events_of(&after, "started").len(), 1);
}
