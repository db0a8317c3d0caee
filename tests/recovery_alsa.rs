//! Device loss on a real ALSA PCM (fakemic): unplug/replug cycles inside one job, a stall,
//! and a replug that comes back with another channel count.

mod common;

use common::fakemic::{self, Fakemic};
use common::*;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;

fn spawn_record(
    mic: &Fakemic,
    device: &str,
    duration: &str,
    out: &Path,
    config: Option<&Path>,
) -> Child {
    let mut cmd = edgerec();
    cmd.env("ALSA_CONFIG_PATH", &mic.config_path)
        .args([
            "record",
            "--backend",
            "alsa",
            "--device",
            device,
            "--duration",
            duration,
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::null());
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.spawn().unwrap()
}

fn count_entries(dir: String) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits for the child to exit (bounded) and asserts it succeeded.
fn wait_ok(mut child: Child, within: Duration) {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "edgerec exited {status}");
            return;
        }
        assert!(
            Instant::now() < until,
            "edgerec did not finish within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 20 unplug/replug cycles with random 0.2–3 s gaps inside one 60 s job, each replug
/// announced by the hotplug wake-up as udev would.
#[test]
fn twenty_unplug_cycles_make_one_recording_with_twenty_measured_gaps() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("flapmic", &[])]);
    let out = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("EDGEREC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now_ms() as u64);
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Frames the device captured but we had not read yet leave with it at an unplug: up
    // to one read (two periods). 10 ms periods keep that well inside the 50 ms tolerance.
    let config = out.path().join("edgerec.toml");
    std::fs::write(&config, "[capture]\nperiod = \"10ms\"\n").unwrap();
    let child = spawn_record(&mic, "flapmic", "60s", out.path(), Some(&config));
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(800));
    let threads_before = count_entries(format!("/proc/{pid}/task"));
    let fds_before = count_entries(format!("/proc/{pid}/fd"));
    let mut unplugs: Vec<(i64, i64)> = Vec::new(); // (unplug ms, replug ms)
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(400..900)));
        // The device goes when its `present` file does: stamp that instant, not a shell's
        // start-up later; mic.sh then takes it out of the enumeration too.
        let unplug = now_ms();
        std::fs::remove_file(mic.dir.join("flapmic.present")).unwrap();
        mic.mic("unplug", "flapmic");
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..3000)));
        mic.mic("replug", "flapmic");
        let replug = now_ms();
        let woke = edgerec()
            .args([
                "hotplug",
                "--action",
                "add",
                "--devpath",
                "/devices/fake/flapmic",
                "--state-dir",
            ])
            .arg(out.path())
            .status()
            .unwrap();
        assert!(woke.success());
        unplugs.push((unplug, replug));
    }
    std::thread::sleep(Duration::from_millis(700));
    let threads_after = count_entries(format!("/proc/{pid}/task"));
    let fds_after = count_entries(format!("/proc/{pid}/fd"));
    wait_ok(child, Duration::from_secs(75));

    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(
        tl["frames"].as_u64().unwrap(),
        60 * 48_000,
        "one recording as long as the job"
    );
    let lost = events_of(&tl, "device_lost");
    let restored = events_of(&tl, "device_restored");
    assert_eq!((lost.len(), restored.len()), (20, 20), "{tl:#}");
    let mut latencies = Vec::new();
    let mut gap_errors = Vec::new();
    for (i, ((l, r), (unplug, replug))) in lost.iter().zip(&restored).zip(&unplugs).enumerate() {
        assert_eq!(
            l["frame"], r["frame"],
            "cycle {i}: the restore closes the gap its loss opened"
        );
        let gap_ms = r["gap_frames"].as_u64().unwrap() as f64 * 1000.0 / RATE;
        // The gap is the audio the device did not deliver: from unplug to the first frame
        // after replug. Resume latency is that first frame's time after the replug.
        let resumed = at_ms(&r["at"]);
        let latency = resumed - replug;
        latencies.push(latency);
        let measured = (resumed - unplug) as f64;
        gap_errors.push((gap_ms - measured).abs());
        assert!(
            latency <= 1000,
            "cycle {i}: resumed {latency} ms after replug"
        );
        assert!(
            (gap_ms - measured).abs() <= 50.0,
            "cycle {i}: gap {gap_ms} ms vs measured {measured} ms"
        );
    }
    assert_eq!(wav_frames(&job.join("recording.wav")), 60 * 48_000);
    latencies.sort();
    eprintln!(
        "resume latency after replug: median {} ms, max {} ms; worst gap error {:.1} ms",
        latencies[10],
        latencies[19],
        gap_errors.iter().cloned().fold(0.0, f64::max)
    );
    eprintln!("threads {threads_before} -> {threads_after}, fds {fds_before} -> {fds_after}");
    assert_eq!(threads_after, threads_before, "leaked threads");
    assert_eq!(fds_after, fds_before, "leaked fds");
}

/// Without udev, backoff alone brings the device back within its cap.
#[test]
fn without_hotplug_backoff_alone_recovers_within_its_cap() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("slowmic", &[])]);
    let out = tempfile::tempdir().unwrap();
    let child = spawn_record(&mic, "slowmic", "16s", out.path(), None);
    let mut replugs = Vec::new();
    for gap in [2500u64, 600, 1500] {
        // Each replug stays plugged for longer than the 2 s cap (plus the open), so a
        // reopen attempt must land while the device is there.
        std::thread::sleep(Duration::from_millis(2600));
        mic.mic("unplug", "slowmic");
        std::thread::sleep(Duration::from_millis(gap));
        mic.mic("replug", "slowmic");
        replugs.push(now_ms());
    }
    wait_ok(child, Duration::from_secs(30));
    let tl = timeline(&only_job(out.path()));
    let restored = events_of(&tl, "device_restored");
    assert_eq!(restored.len(), 3, "{tl:#}");
    for (r, replug) in restored.iter().zip(&replugs) {
        let latency = at_ms(&r["at"]) - replug;
        eprintln!("resume {latency} ms after replug (backoff only)");
        assert!(
            latency <= 2_000 + 300,
            "backoff cap is 2 s; resumed {latency} ms after replug"
        );
    }
    assert_eq!(tl["frames"].as_u64().unwrap(), 16 * 48_000);
}

#[test]
fn a_stall_is_detected_within_the_guard_and_recovered() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("stallmic", &[])]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgerec.toml");
    // A 20 ms period: the stall is dated at the last frame delivered, which at the
    // default 100 ms period may come a whole period before the stall began; this test is
    // about the dating, not about the period's grain.
    let settings = "[capture]\nstall_guard = \"1s\"\nperiod = \"20ms\"\n";
    std::fs::write(&config, settings).unwrap();
    let out = dir.path().join("out");
    let child = spawn_record(&mic, "stallmic", "8s", &out, Some(&config));
    std::thread::sleep(Duration::from_millis(2000));
    let stalled = now_ms();
    mic.mic("stall", "stallmic");
    std::thread::sleep(Duration::from_millis(2500));
    mic.mic("unstall", "stallmic");
    wait_ok(child, Duration::from_secs(20));
    let tl = timeline(&only_job(&out));
    let stall = events_of(&tl, "stall");
    assert!(!stall.is_empty(), "{tl:#}");
    // The stall is dated at the last frame; it was noticed one guard time later.
    let dated = at_ms(&stall[0]["at"]);
    assert!(
        (dated - stalled).abs() <= 100,
        "stall dated {} ms from when it began",
        dated - stalled
    );
    let restored = events_of(&tl, "device_restored");
    assert!(!restored.is_empty(), "recovered after the stall: {tl:#}");
    let gap_ms = restored[0]["gap_frames"].as_u64().unwrap() as f64 * 1000.0 / RATE;
    assert!(
        (2400.0..3600.0).contains(&gap_ms),
        "gap {gap_ms} ms for a 2.5 s stall"
    );
    assert_eq!(tl["frames"].as_u64().unwrap(), 8 * 48_000);
}

#[test]
fn a_replug_with_another_channel_count_fails_capture_and_keeps_the_audio() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("chmic", &[])]);
    let out = tempfile::tempdir().unwrap();
    let child = spawn_record(&mic, "chmic", "10s", out.path(), None);
    std::thread::sleep(Duration::from_millis(1500));
    mic.mic("unplug", "chmic");
    // A replug takes a human longer than a period: let the stream see it gone (the
    // plugin looks once per ~85 ms period) before the name comes back.
    std::thread::sleep(Duration::from_millis(500));
    // The same name comes back as a 4-channel device.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakemic/setup.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(&mic.dir)
        .args(["chmic", "--channels", "4"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = {
        let mut child = child;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < until,
                "capture did not fail on the mismatched device"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(
        exit.success(),
        "the job ends (failed), edgerec itself does not crash: {exit}"
    );
    let job = only_job(out.path());
    let tl = timeline(&job);
    let mismatch = events_of(&tl, "device_mismatch");
    assert_eq!(mismatch.len(), 1, "{tl:#}");
    assert!(
        mismatch[0]["detail"].as_str().unwrap().contains("ch"),
        "{}",
        mismatch[0]
    );
    let frames = wav_frames(&job.join("recording.wav"));
    assert!(
        (60_000..=80_000).contains(&frames),
        "the 1.5 s before the unplug are kept: {frames}"
    );
    let journal =
        edgerec::journal::Journal::open_read_only(&out.path().join("edgerec.db")).unwrap();
    let row = journal.jobs().unwrap().remove(0);
    assert_eq!(row.state, edgerec::core::job::JobState::Failed);
    assert!(row.end_cause.unwrap().starts_with("device_mismatch"));
}
