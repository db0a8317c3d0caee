//! `edgerec record --backend alsa` against the fakemic ALSA device (a real PCM): sample
//! exactness in each format, wall-time accuracy, and one clear error per bad input.

mod common;

use common::fakemic::{self, Fakemic};
use common::*;
use std::sync::OnceLock;

const RATE: u64 = 48_000;
/// Source loop length: 3 s of stereo, so a 10 s capture wraps it three times.
const PATTERN_FRAMES: usize = 3 * 48_000;

struct Kit {
    mic: Fakemic,
    pattern: Vec<i16>,
}

fn kit() -> &'static Kit {
    static KIT: OnceLock<Kit> = OnceLock::new();
    KIT.get_or_init(|| {
        let scratch = tempfile::tempdir().unwrap().keep();
        let pattern = fakemic::pattern(PATTERN_FRAMES * 2);
        let raw = scratch.join("pattern.raw");
        fakemic::write_raw(&raw, &pattern);
        let raw = raw.to_str().unwrap().to_string();
        let mic = fakemic::setup(&[
            ("exactmic", &["--file", &raw]),
            ("plainmic", &[]),
            ("gonemic", &[]),
            ("busymic", &["--exclusive"]),
        ]);
        mic.mic("unplug", "gonemic");
        Kit { mic, pattern }
    })
}

fn record_cmd(kit: &Kit) -> std::process::Command {
    let mut cmd = edgerec();
    cmd.env("ALSA_CONFIG_PATH", &kit.mic.config_path)
        .args(["record", "--backend", "alsa"]);
    cmd
}

#[test]
fn ten_seconds_from_fakemic_are_sample_exact_in_each_format() {
    let _rt = realtime();
    let kit = kit();
    for format in ["S16_LE", "S32_LE", "FLOAT_LE"] {
        let out = tempfile::tempdir().unwrap();
        let result = run(record_cmd(kit)
            .args([
                "--device",
                "exactmic",
                "--format",
                format,
                "--rate",
                "48000",
                "--channels",
                "2",
            ])
            .args(["--duration", "10s", "--out"])
            .arg(out.path()));
        assert!(result.status.success(), "{format}");
        let job = only_job(out.path());
        let tl = timeline(&job);
        assert_eq!(tl["frames"], 10 * RATE, "{format}");
        assert!(
            events_of(&tl, "overrun").is_empty(),
            "{format}: overrun on a quiet run: {tl:#}"
        );
        // Output time matches the wall time of the capture within one period (20 ms),
        // plus the millisecond rounding of the two timestamps.
        let wall_ms = at_ms(&events_of(&tl, "ended")[0]["at"]) - at_ms(&tl["started_at"]);
        assert!(
            (wall_ms - 10_000).abs() <= 22,
            "{format}: 10 s of audio took {wall_ms} ms of wall time"
        );

        let mut reader = hound::WavReader::open(job.join("recording.wav")).unwrap();
        assert_eq!(reader.duration() as u64, 10 * RATE);
        let n = kit.pattern.len();
        let mismatches = match format {
            "S16_LE" => reader
                .samples::<i16>()
                .enumerate()
                .filter(|(i, s)| *s.as_ref().unwrap() != kit.pattern[i % n])
                .count(),
            "S32_LE" => reader
                .samples::<i32>()
                .enumerate()
                .filter(|(i, s)| *s.as_ref().unwrap() != (kit.pattern[i % n] as i32) << 16)
                .count(),
            _ => reader
                .samples::<f32>()
                .enumerate()
                .filter(|(i, s)| *s.as_ref().unwrap() != kit.pattern[i % n] as f32 / 32768.0)
                .count(),
        };
        assert_eq!(mismatches, 0, "{format}: samples differ from the source");
        eprintln!("{format}: 480000 frames sample-exact, wall {wall_ms} ms");
    }
}

/// Runs a failing record and checks its exit code and its one error line.
fn assert_fails(cmd: &mut std::process::Command, code: i32, needle: &str) {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(code), "exit code");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("edgerec: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(
        errors[0].contains(needle),
        "{:?} should mention {needle:?}",
        errors[0]
    );
}

#[test]
fn a_bad_config_names_the_key_and_exits_3() {
    let kit = kit();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgerec.toml");
    std::fs::write(
        &config,
        "[capture]\nbackend = \"alsa\"\nsample_rate = 48000\n",
    )
    .unwrap();
    assert_fails(
        record_cmd(kit).arg("--config").arg(&config),
        3,
        "sample_rate",
    );
    std::fs::write(&config, "[capture]\nrate = 7\n").unwrap();
    assert_fails(
        record_cmd(kit).arg("--config").arg(&config),
        3,
        "capture.rate",
    );
    assert_fails(
        record_cmd(kit)
            .arg("--config")
            .arg(dir.path().join("missing.toml")),
        3,
        "missing.toml",
    );
}

#[test]
fn a_missing_device_exits_4() {
    let kit = kit();
    let out = tempfile::tempdir().unwrap();
    assert_fails(
        record_cmd(kit)
            .args(["--device", "nosuchpcm", "--duration", "1s", "--out"])
            .arg(out.path()),
        4,
        "nosuchpcm",
    );
    // An unplugged device is missing too.
    assert_fails(
        record_cmd(kit)
            .args(["--device", "gonemic", "--duration", "1s", "--out"])
            .arg(out.path()),
        4,
        "gonemic",
    );
}

#[test]
fn an_unsupported_rate_or_format_exits_6_and_says_what_the_device_offers() {
    let kit = kit();
    let out = tempfile::tempdir().unwrap();
    assert_fails(
        record_cmd(kit)
            .args([
                "--device",
                "plainmic",
                "--rate",
                "44100",
                "--duration",
                "1s",
                "--out",
            ])
            .arg(out.path()),
        6,
        "48000",
    );
    assert_fails(
        record_cmd(kit)
            .args([
                "--device",
                "plainmic",
                "--format",
                "S24_3LE",
                "--duration",
                "1s",
                "--out",
            ])
            .arg(out.path()),
        6,
        "S16_LE",
    );
}

#[test]
fn an_unwritable_output_exits_7() {
    let kit = kit();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    assert_fails(
        record_cmd(kit)
            .args(["--device", "plainmic", "--duration", "1s", "--out"])
            .arg(file.join("out")),
        7,
        "not writable",
    );
}

#[test]
fn a_failed_open_leaves_one_failed_job_in_the_journal() {
    let kit = kit();
    let out = tempfile::tempdir().unwrap();
    let status = run(record_cmd(kit)
        .args(["--device", "nosuchpcm", "--duration", "1s", "--out"])
        .arg(out.path()))
    .status;
    assert_eq!(status.code(), Some(4));
    let journal =
        edgerec::journal::Journal::open_read_only(&out.path().join("edgerec.db")).unwrap();
    let jobs = journal.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, edgerec::core::job::JobState::Failed);
    assert!(
        jobs[0]
            .end_cause
            .as_deref()
            .unwrap_or("")
            .contains("nosuchpcm"),
        "{:?}",
        jobs[0].end_cause
    );
}

#[test]
fn a_device_held_by_another_process_exits_5() {
    let kit = kit();
    let out = tempfile::tempdir().unwrap();
    // A real peer holds the device, as another recorder would hold a hw: PCM.
    let _holder = kit.mic.hold("busymic", 5);
    assert_fails(
        record_cmd(kit)
            .args(["--device", "busymic", "--duration", "1s", "--out"])
            .arg(out.path()),
        5,
        "busy",
    );
}
