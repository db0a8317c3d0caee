//! `kill -9` at 20 random moments of one running job, restarting the capture role each
//! time: the job resumes, ends as one recording as long as its window, every crash is a
//! `crash_recovered` gap on the timeline, and each loses no more than the sync interval
//! plus the restart time.
//!
//! Each kill comes at a random moment of a run's capture (0.1 to 1.1 s after the run's
//! first audio reaches its segment), not of its start-up: a kill during start-up, before the
//! resumed run's first frame, leaves nothing new to recover, so the two outages are
//! rightly one `crash_recovered` gap, and a count of one event per kill was then wrong
//! (a loaded box took over 0.8 s to start the role and saw 16 events for 20 kills).

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The job's newest segment file under `out` (none before its directory exists).
fn newest_segment(out: &std::path::Path) -> Option<std::path::PathBuf> {
    job_dirs(out)
        .first()
        .and_then(|job| segment_files(job).pop())
}

/// Waits until the run has put audio in a segment of its own (newer than `before`, a
/// page long: the file appears before its fsyncs and journal row, and audio follows).
fn wait_for_capture(out: &std::path::Path, before: Option<PathBuf>, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    let ours = |seg: &PathBuf| {
        Some(seg) > before.as_ref() && std::fs::metadata(seg).is_ok_and(|m| m.len() >= 4096)
    };
    while !newest_segment(out).is_some_and(|s| ours(&s)) {
        assert!(child.try_wait().unwrap().is_none(), "the run exited");
        assert!(Instant::now() < until, "no segment 30 s after the start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill9(mut child: Child) -> i64 {
    let at = now_ms();
    child.kill().unwrap();
    child.wait().unwrap();
    at
}

#[test]
fn kill_9_twenty_times_then_the_job_resumes_to_one_recording() {
    let _rt = realtime();
    let seed: u64 = std::env::var("EDGEREC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now_ms() as u64);
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let out = tempfile::tempdir().unwrap();
    let quiet = || Stdio::null();
    let mut first = edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "noise",
            "--duration",
            "60s",
            "--out",
        ])
        .arg(out.path())
        .stdout(quiet())
        .spawn()
        .unwrap();
    let capture_role = || {
        edgerec()
            .args(["capture", "--exit-when-idle", "--state-dir"])
            .arg(out.path())
            .stdout(quiet())
            .spawn()
            .unwrap()
    };
    // Segments before the run started: its own is the next one.
    let in_capture = |child: &mut Child, before, rng: &mut rand::rngs::StdRng| {
        wait_for_capture(out.path(), before, child);
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..1100)));
    };
    in_capture(&mut first, None, &mut rng);
    let mut kills = vec![kill9(first)];
    for _ in 1..20 {
        let before = newest_segment(out.path());
        let mut child = capture_role();
        in_capture(&mut child, before, &mut rng);
        kills.push(kill9(child));
    }
    let mut last = capture_role();
    let until = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = last.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "the resumed job did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());

    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(
        tl["frames"].as_u64().unwrap(),
        60 * 48_000,
        "one recording as long as the window"
    );
    assert_eq!(wav_frames(&delivered_wav(&job)), 60 * 48_000);
    let crashes = events_of(&tl, "crash_recovered");
    assert_eq!(crashes.len(), 20, "{tl:#}");
    let mut worst_loss = 0;
    for (i, (ev, killed)) in crashes.iter().zip(&kills).enumerate() {
        let gap_ms = ev["gap_frames"].as_u64().unwrap() as i64 * 1000 / 48_000;
        let restart_ms = at_ms(&ev["at"]) - killed; // kill -> first frame of the resumed run
        let lost_before_kill = gap_ms - restart_ms;
        worst_loss = worst_loss.max(lost_before_kill);
        assert!(restart_ms >= 0, "crash {i}: resumed before the kill?");
        assert!(
            lost_before_kill <= 1000 + 20,
            "crash {i}: {lost_before_kill} ms lost before the kill (sync interval 1 s)"
        );
    }
    for file in segment_files(&job) {
        assert!(wav_frames(&file) > 0, "{}", file.display());
    }
    eprintln!(
        "20 crashes: worst audio lost before a kill {worst_loss} ms (plus each restart's own time)"
    );
}
