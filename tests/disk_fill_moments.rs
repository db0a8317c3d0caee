//! A full disk at any moment of a recording — the start, mid-segment, a rotation, the
//! end, the finalize — never aborts it: 20 recordings on their own small tmpfs, each
//! filled by another process at a different moment and freed 1.5 s later. Every one
//! exits 0 with a journal that passes `integrity_check`, valid segments and an output
//! as long as the booking; the frames not written are disk-pause gaps on the timeline.

mod common;

use common::smallfs::{SmallFs, fill};
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const RATE: u64 = 48_000;
const SECONDS: u64 = 4;
const TRIALS: usize = 20;
/// Trials run this many at a time (each is mostly waiting on a real-time source).
const AT_ONCE: usize = 4;

/// What one trial saw.
struct Trial {
    fill_at_ms: u64,
    exit_ok: bool,
    stderr: String,
    integrity: String,
    frames: u64,
    gap_frames: u64,
}

fn trial(fill_at: Duration) -> Option<Trial> {
    let fs = SmallFs::mount("8m")?;
    let out = fs.dir.join("out");
    let child = edgerec()
        .args(["record", "--backend", "synth", "--device", "noise"])
        .args([
            "--format",
            "S32_LE",
            "--channels",
            "2",
            "--segment-seconds",
            "1",
        ])
        .args(["--duration", &format!("{SECONDS}s"), "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(fill_at);
    let filler = fs.dir.join("filler");
    fill(&filler);
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(&filler).unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    let integrity = rusqlite::Connection::open(out.join("edgerec.db"))
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|e| format!("cannot check: {e}"));
    let (frames, gap_frames) = match job_dirs(&out).first() {
        Some(job) if job.join("timeline.json").exists() => {
            let tl = timeline(job);
            for (file, seg) in segment_files(job)
                .iter()
                .zip(tl["segments"].as_array().unwrap())
            {
                assert_eq!(
                    wav_frames(file),
                    seg["frames"].as_u64().unwrap(),
                    "{}",
                    file.display()
                );
            }
            let gaps = events_of(&tl, "disk_resume")
                .iter()
                .filter_map(|e| e["gap_frames"].as_u64())
                .sum();
            assert_eq!(
                wav_frames(&job.join("recording.wav")),
                tl["frames"].as_u64().unwrap()
            );
            (tl["frames"].as_u64().unwrap(), gaps)
        }
        _ => (0, 0),
    };
    Some(Trial {
        fill_at_ms: fill_at.as_millis() as u64,
        exit_ok: result.status.success(),
        stderr,
        integrity,
        frames,
        gap_frames,
    })
}

#[test]
fn a_disk_filled_at_twenty_moments_never_aborts_a_recording() {
    let _rt = realtime();
    if SmallFs::mount("1m").is_none() {
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here (needs root)");
        return;
    }
    // Moments spread over the whole job and its finalize (4 s of capture, rotations
    // every second), offset so they fall on and between rotations.
    let moments: Vec<Duration> = (0..TRIALS)
        .map(|i| {
            Duration::from_millis(100 + i as u64 * 4_600 / TRIALS as u64 + (i as u64 % 3) * 37)
        })
        .collect();
    let started = Instant::now();
    let mut trials = Vec::new();
    for batch in moments.chunks(AT_ONCE) {
        let handles: Vec<_> = batch
            .iter()
            .map(|&at| std::thread::spawn(move || trial(at)))
            .collect();
        trials.extend(handles.into_iter().filter_map(|h| h.join().unwrap()));
    }
    eprintln!("{TRIALS} trials in {:?}", started.elapsed());
    eprintln!("fill at ms | exit | integrity | frames | frames not written");
    for t in &trials {
        eprintln!(
            "{:>10} | {:>4} | {:>9} | {:>6} | {:>6} ({:.2} s)",
            t.fill_at_ms,
            if t.exit_ok { "0" } else { "FAIL" },
            t.integrity,
            t.frames,
            t.gap_frames,
            t.gap_frames as f64 / RATE as f64
        );
    }
    assert_eq!(trials.len(), TRIALS);
    for t in &trials {
        assert!(
            t.exit_ok,
            "filled at {} ms: aborted:\n{}",
            t.fill_at_ms, t.stderr
        );
        assert_eq!(t.integrity, "ok", "filled at {} ms", t.fill_at_ms);
        assert_eq!(
            t.frames,
            SECONDS * RATE,
            "filled at {} ms: output time = wall time",
            t.fill_at_ms
        );
    }
}
