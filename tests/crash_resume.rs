//! `kill -9` at 20 random moments of one running job, restarting the capture role each
//! time: the job resumes, ends as one recording as long as its window, every crash is a
//! `crash_recovered` gap on the timeline, and each loses no more than the sync interval
//! plus the restart time.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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
    let first = edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "noise",
            "--duration",
            "40s",
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
    std::thread::sleep(Duration::from_millis(rng.gen_range(800..1800)));
    let mut kills = vec![kill9(first)];
    for _ in 1..20 {
        let child = capture_role();
        std::thread::sleep(Duration::from_millis(rng.gen_range(800..1800)));
        kills.push(kill9(child));
    }
    let mut last = capture_role();
    let until = Instant::now() + Duration::from_secs(60);
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
        40 * 48_000,
        "one recording as long as the window"
    );
    assert_eq!(wav_frames(&delivered_wav(&job)), 40 * 48_000);
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
