//! Live levels reach the controller: meter frames every 5 s while a job captures, with
//! the levels of the known tone the synth plays (a -20 dBFS sine: peak -20.0 dBFS,
//! RMS -23.01 dBFS), live-listen chunks that sox hears as the same tone, and the writer's
//! snapshot files go when the capture does.

mod common;

use common::controller::*;
use common::*;
use std::time::{Duration, Instant};

/// The controller's latest frame per interface, with when it was received.
fn latest_frame(ctl: &Ctl) -> Option<(i64, serde_json::Value)> {
    let db =
        rusqlite::Connection::open_with_flags(&ctl.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    db.busy_timeout(Duration::from_secs(2)).ok()?;
    db.query_row(
        "SELECT received_at_ms, frame_json FROM meter_frames ORDER BY received_at_ms DESC LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )
    .ok()
    .and_then(|(at, json)| Some((at, serde_json::from_str(&json).ok()?)))
}

#[test]
fn meter_frames_arrive_every_5_s_with_the_tone_s_levels() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440,level=-20", 22.0);
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    // Each new frame, as the controller stored it.
    let mut frames: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut status_screen = String::new();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until && ctl.job(&job.id).status == "running" {
        if let Some(f) = latest_frame(&ctl)
            && frames.last().is_none_or(|l| l.0 != f.0)
        {
            frames.push(f);
            if frames.len() == 2 {
                // The operator's view of the same levels, mid-capture.
                let out = edgerec()
                    .args(["status", "--state-dir"])
                    .arg(state.path())
                    .output()
                    .unwrap();
                status_screen = String::from_utf8_lossy(&out.stdout).into_owned();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(20));
    sigterm(&mut agent, Duration::from_secs(5));
    let gaps: Vec<i64> = frames.windows(2).map(|w| w[1].0 - w[0].0).collect();
    eprintln!("{} frames, spacing {gaps:?} ms", frames.len());
    assert!(
        frames.len() >= 3,
        "frames while a 22 s job captured: {frames:#?}"
    );
    for g in &gaps {
        assert!((4_000..=6_000).contains(g), "every 5 s ± 1 s: {gaps:?}");
    }
    for (_, f) in &frames {
        assert_eq!(f["interfaceId"], "sine:440,level=-20", "{f}");
        let levels = f["levels"].as_array().unwrap();
        assert_eq!(levels.len(), 2);
        for l in levels {
            let rms = l["rmsDbfs"].as_f64().unwrap();
            let peak = l["peakDbfs"].as_f64().unwrap();
            assert!((rms + 23.01).abs() < 0.5, "rms {rms}");
            assert!((peak + 20.0).abs() < 0.5, "peak {peak}");
            assert_eq!(l["clipping"], false);
        }
    }
    eprintln!("status mid-capture:\n{status_screen}");
    assert!(
        status_screen.contains("levels of") && status_screen.contains("-23.0 rms"),
        "{status_screen}"
    );
    for dir in ["run/meter", "run/listen"] {
        let left: Vec<_> = std::fs::read_dir(state.path().join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "live state goes with the capture: {left:?}"
        );
    }
    assert_listen_chunks_are_the_tone(&ctl);
}

/// The controller kept the job's listen chunks: about 5 s each, every 5 s, mono 24 kHz
/// WAVs in which sox finds the 440 Hz tone at its level (0.1 full scale; the two channels
/// are 0.25 rad apart, so their average peaks at 0.1 x cos 0.125 = 0.0992).
fn assert_listen_chunks_are_the_tone(ctl: &Ctl) {
    let out = tempfile::tempdir().unwrap();
    let listed = ctl
        .admin
        .run(&["listen", &ctl.node, "--out", out.path().to_str().unwrap()])
        .unwrap();
    let chunks: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(chunks.len() >= 3, "chunks of a 22 s job: {chunks:#?}");
    let at: Vec<i64> = chunks
        .iter()
        .map(|c| {
            let t = humantime::parse_rfc3339(c["capturedAt"].as_str().unwrap()).unwrap();
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
        })
        .collect();
    for w in at.windows(2) {
        assert!(
            (4_000..=6_000).contains(&(w[1] - w[0])),
            "every 5 s: {at:?}"
        );
    }
    for c in &chunks {
        let ms = c["durationMs"].as_i64().unwrap();
        assert!((4_000..=6_000).contains(&ms), "{c}");
        let path = c["path"].as_str().unwrap();
        let reader = hound::WavReader::open(path).unwrap();
        assert_eq!(
            (reader.spec().channels, reader.spec().sample_rate),
            (1, 24_000)
        );
        let stat = sox_stat(std::path::Path::new(path), &[]);
        let field = |name: &str| stat.field(name);
        let freq = field("Rough   frequency:");
        let max = field("Maximum amplitude:");
        eprintln!("listen chunk {ms} ms: sox hears {freq} Hz, max amplitude {max}");
        assert!(
            (freq - 440.0).abs() < 22.0,
            "sox hears {freq} Hz:\n{}",
            stat.0
        );
        assert!((max - 0.0992).abs() < 0.005, "amplitude {max}:\n{}", stat.0);
    }
}
