//! `kill -9` of `edgerec record` at random moments, then `edgerec repair`: every segment
//! opens, the journal agrees with the files, and no more than the sync interval is lost.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RATE: u64 = 48_000;
const SYNC_INTERVAL_MS: u64 = 1000;

fn sox_opens(path: &Path) {
    match Command::new("sox").arg("--i").arg(path).output() {
        Ok(out) => assert!(
            out.status.success(),
            "sox --i {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("sox not installed: checked with hound only"),
    }
}

#[test]
fn kill_9_at_20_random_moments_then_repair() {
    let _rt = realtime();
    let seed: u64 = std::env::var("EDGEREC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    eprintln!("seed {seed} (rerun with EDGEREC_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let out = tempfile::tempdir().unwrap();
    let mut worst_loss = 0i64;
    let mut seen = Vec::new();
    for round in 0..20 {
        let mut child = edgerec()
            .args([
                "record",
                "--backend",
                "synth",
                "--device",
                "noise",
                "--duration",
                "60s",
                "--segment-seconds",
                "1",
            ])
            .args(["--sync-interval", &format!("{SYNC_INTERVAL_MS}ms"), "--out"])
            .arg(out.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..3000)));
        let killed_at = now_ms();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let repair = run(edgerec().arg("repair").arg(out.path()));
        assert!(repair.status.success(), "round {round}: repair failed");
        // A kill before the job began (the process was still starting: the draw can be
        // 300 ms) leaves nothing to repair, and nothing was captured to lose.
        let Some(job) = job_dirs(out.path()).pop().filter(|j| !seen.contains(j)) else {
            eprintln!("round {round}: killed before its job began");
            continue;
        };
        seen.push(job.clone());
        let tl = timeline(&job);

        // The journal agrees with the files, and every segment opens.
        let files = segment_files(&job);
        let segs = tl["segments"].as_array().unwrap();
        assert_eq!(files.len(), segs.len(), "round {round}: {tl:#}");
        let mut audio = 0;
        for (file, seg) in files.iter().zip(segs) {
            assert_eq!(
                wav_frames(file),
                seg["frames"].as_u64().unwrap(),
                "round {round}: {}",
                file.display()
            );
            sox_opens(file);
            audio += seg["frames"].as_u64().unwrap();
        }
        if tl["started_at"].is_null() {
            assert_eq!(audio, 0, "round {round}: audio without a start time");
            continue;
        };
        // Loss = audio the wall clock says was captured before the kill, minus audio on disk.
        let expected = (killed_at - at_ms(&tl["started_at"])) as u64 * RATE / 1000;
        let lost = expected as i64 - audio as i64;
        eprintln!("round {round}: {audio} frames on disk, {lost} frames lost");
        assert!(
            lost <= (SYNC_INTERVAL_MS * RATE / 1000) as i64,
            "round {round}: lost {lost} frames"
        );
        worst_loss = worst_loss.max(lost);
        let crash = events_of(&tl, "crash_recovered");
        assert_eq!(crash.len(), 1, "round {round}: {tl:#}");
        assert_eq!(crash[0]["frame"].as_u64().unwrap(), audio);
        // Killed before the first write: the job ends with no audio and no recording.
        let recording = job.join("recording.wav");
        let delivered = if audio == 0 && !recording.exists() {
            0
        } else {
            wav_frames(&recording)
        };
        assert_eq!(delivered, tl["frames"].as_u64().unwrap());
    }
    eprintln!(
        "worst loss over 20 kills: {worst_loss} frames ({} ms)",
        worst_loss as u64 * 1000 / RATE
    );
}
