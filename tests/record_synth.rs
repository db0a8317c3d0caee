//! `edgerec record` end to end on the synth backend: real processes, real files, real
//! SQLite, real signals.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn dropout_becomes_a_silent_gap_and_output_time_matches_the_timeline() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let result = run(edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "sine:440,dropout=1s+300ms",
            "--format",
            "S16_LE",
            "--rate",
            "48000",
            "--channels",
            "2",
            "--duration",
            "3s",
            "--out",
        ])
        .arg(out.path()));
    assert!(result.status.success());
    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(tl["frames"], 144_000);
    let dropouts = events_of(&tl, "drop_out");
    assert_eq!(dropouts.len(), 1, "{tl:#}");
    assert_eq!(dropouts[0]["frame"], 48_000);
    assert_eq!(dropouts[0]["gap_frames"], 14_400);
    assert_eq!(events_of(&tl, "ended")[0]["detail"], "duration_reached");
    // Two runs of device time, split by the gap.
    let segs = tl["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        (segs[0]["first_frame"].as_u64(), segs[0]["frames"].as_u64()),
        (Some(0), Some(48_000))
    );
    assert_eq!(
        (segs[1]["first_frame"].as_u64(), segs[1]["frames"].as_u64()),
        (Some(62_400), Some(81_600))
    );
    // The stitched file: audio, then exactly the gap in silence, then audio.
    let mut reader = hound::WavReader::open(job.join("recording.wav")).unwrap();
    assert_eq!(reader.duration(), 144_000);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    assert!(samples[..96_000].iter().any(|&s| s != 0));
    assert!(samples[96_000..124_800].iter().all(|&s| s == 0));
    assert!(samples[124_800..].iter().any(|&s| s != 0));
    for seg in segment_files(&job) {
        assert!(wav_frames(&seg) > 0);
    }
}

#[test]
fn segments_rotate_on_exact_frame_boundaries() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let result = run(edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--duration",
            "2500ms",
            "--segment-seconds",
            "1",
            "--out",
        ])
        .arg(out.path()));
    assert!(result.status.success());
    let job = only_job(out.path());
    let frames: Vec<u64> = segment_files(&job).iter().map(|p| wav_frames(p)).collect();
    assert_eq!(frames, [48_000, 48_000, 24_000]);
    let tl = timeline(&job);
    let firsts: Vec<u64> = tl["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["first_frame"].as_u64().unwrap())
        .collect();
    assert_eq!(firsts, [0, 48_000, 96_000]);
    assert_eq!(wav_frames(&job.join("recording.wav")), 120_000);
}

#[test]
fn sigterm_ends_the_job_cleanly_and_finalizes() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let mut child = edgerec()
        .args(["record", "--backend", "synth", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "SIGTERM not honoured within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(events_of(&tl, "stop_requested").len(), 1);
    let frames = tl["frames"].as_u64().unwrap();
    assert!(
        (40_000..=96_000).contains(&frames),
        "{frames} frames after ~1.5 s"
    );
    assert_eq!(wav_frames(&job.join("recording.wav")), frames);
}

#[test]
fn a_disconnecting_device_is_reopened_and_the_job_keeps_its_window() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    // Every (re)opened synth disconnects after 700 ms of audio.
    let result = run(edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "sine,disconnect=700ms",
            "--duration",
            "3s",
            "--out",
        ])
        .arg(out.path()));
    assert!(result.status.success());
    let job = only_job(out.path());
    let tl = timeline(&job);
    ends_within_its_booking(&tl, 144_000);
    let lost = events_of(&tl, "device_lost");
    let restored = events_of(&tl, "device_restored");
    assert!(lost.len() >= 3, "{tl:#}");
    assert!(
        restored.len() == lost.len() || restored.len() + 1 == lost.len(),
        "{tl:#}"
    );
    for (l, r) in lost.iter().zip(&restored) {
        assert_eq!(
            l["frame"], r["frame"],
            "a restore closes the gap its loss opened"
        );
        assert!(
            r["gap_frames"].as_u64().unwrap() < 48_000,
            "reopen within the backoff cap: {r}"
        );
    }
    assert_eq!(events_of(&tl, "ended")[0]["detail"], "duration_reached");
    assert_eq!(
        wav_frames(&job.join("recording.wav")),
        tl["frames"].as_u64().unwrap()
    );
}

#[test]
fn twenty_four_bit_formats_stitch_to_packed_24_bit() {
    let _rt = realtime();
    for format in ["S24_3LE", "S24_LE"] {
        let out = tempfile::tempdir().unwrap();
        let result = run(edgerec()
            .args([
                "record",
                "--backend",
                "synth",
                "--device",
                "sine:1000",
                "--format",
                format,
                "--duration",
                "1s",
                "--out",
            ])
            .arg(out.path()));
        assert!(result.status.success(), "{format}");
        let job = only_job(out.path());
        // The segment keeps the native layout; hound reads it as 24-bit either way.
        let seg = hound::WavReader::open(job.join("000001.wav")).unwrap();
        assert_eq!(seg.spec().bits_per_sample, 24, "{format}");
        let seg_samples: Vec<i32> = seg.into_samples::<i32>().map(|s| s.unwrap()).collect();
        let mut rec = hound::WavReader::open(job.join("recording.wav")).unwrap();
        assert_eq!(
            (rec.spec().bits_per_sample, rec.duration()),
            (24, 48_000),
            "{format}"
        );
        let rec_samples: Vec<i32> = rec.samples::<i32>().map(|s| s.unwrap()).collect();
        assert_eq!(
            rec_samples, seg_samples,
            "{format}: stitched samples differ from the segment's"
        );
        let peak = rec_samples.iter().map(|s| s.abs()).max().unwrap();
        // The synth plays at half scale: ~2^22 in 24 bits.
        assert!(
            (4_000_000..=4_200_000).contains(&peak),
            "{format}: peak {peak}"
        );
    }
}

#[test]
fn a_synth_stall_is_detected_within_the_guard_and_recovered() {
    let _rt = realtime();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgerec.toml");
    std::fs::write(&config, "[capture]\nstall_guard = \"500ms\"\n").unwrap();
    let out = dir.path().join("out");
    // Every (re)opened synth stalls after 1 s for 2 s: the watchdog must see it.
    let result = run(edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "sine,stall=1s+2s",
            "--duration",
            "3s",
            "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&out));
    assert!(result.status.success());
    let tl = timeline(&only_job(&out));
    let stalls = events_of(&tl, "stall");
    assert!(!stalls.is_empty(), "{tl:#}");
    assert_eq!(
        stalls[0]["frame"], 48_000,
        "dated at the last frame before the stall"
    );
    let restored = events_of(&tl, "device_restored");
    assert!(!restored.is_empty(), "{tl:#}");
    // Reopened after the 0.5 s guard: the gap is about the guard plus the reopen.
    let gap = restored[0]["gap_frames"].as_u64().unwrap();
    assert!((24_000..=40_000).contains(&gap), "gap {gap} frames");
    ends_within_its_booking(&tl, 144_000);
}

/// A job runs to its booked length, unless its window closed while the device was away:
/// then the recording ends at its last captured frame and the timeline says why (no
/// padding past the audio).
fn ends_within_its_booking(tl: &serde_json::Value, booked: u64) {
    let frames = tl["frames"].as_u64().unwrap();
    assert!(
        frames <= booked,
        "{frames} frames for a booking of {booked}"
    );
    if frames < booked {
        let why = events_of(tl, "device_still_lost");
        assert_eq!(why.len(), 1, "a short recording says why: {tl:#}");
        assert_eq!(why[0]["frame"].as_u64().unwrap(), frames, "{tl:#}");
    }
    // Short only by what the last reopen took, not by seconds.
    assert!(
        booked - frames < 48_000 * 3 / 4,
        "{frames} of {booked}: {tl:#}"
    );
}

#[test]
fn the_file_backend_replays_a_wav_sample_for_sample_and_ends_with_it() {
    let _rt = realtime();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&source, spec).unwrap();
    let samples: Vec<i16> = (0..48_000 * 2)
        .map(|i| ((i * 7919) % 65_536 - 32_768) as i16)
        .collect();
    for s in &samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let result = run(edgerec()
        .args(["record", "--backend", "file", "--device"])
        .arg(&source)
        .arg("--out")
        .arg(&out));
    assert!(result.status.success());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "replayed at real-time pace"
    );
    let job = only_job(&out);
    let tl = timeline(&job);
    assert_eq!(events_of(&tl, "ended")[0]["detail"], "source_exhausted");
    let got: Vec<i16> = hound::WavReader::open(job.join("recording.wav"))
        .unwrap()
        .into_samples()
        .map(|s| s.unwrap())
        .collect();
    assert!(
        got == samples,
        "the recording is the file, sample for sample"
    );
    // A file whose format is not the request's is refused with the unsupported code.
    let wrong = run(edgerec()
        .args(["record", "--backend", "file", "--rate", "44100", "--device"])
        .arg(&source)
        .arg("--out")
        .arg(&out));
    assert_eq!(wrong.status.code(), Some(6));
}

/// 256 channels (the controller inventory's limit) go through the whole path: config,
/// synth capture, a ring cut to its byte budget, segments, stitch; 257 are refused.
/// Overruns at full rate are the release build's business (benches/channel_sweep.sh:
/// none at 256 ch x 96 kHz x S32); a debug build only has to keep the booking.
#[test]
fn two_hundred_fifty_six_channels_record_end_to_end_and_257_are_refused() {
    let _rt = realtime();
    let out = tempfile::tempdir().unwrap();
    let record = |channels: &str| {
        run(edgerec()
            .env("EDGEREC_LOG", "debug")
            .args(["record", "--backend", "synth", "--device", "sine:997"])
            .args([
                "--format",
                "S16_LE",
                "--rate",
                "48000",
                "--channels",
                channels,
            ])
            .args(["--duration", "2s", "--out"])
            .arg(out.path()))
    };
    let result = record("256");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    // 256 x 2 B x 48 kHz is 24.6 MB/s: the 64 MiB budget leaves 2.73 s of the 10 s asked.
    assert!(stderr.contains("ring 2.73 s, 64.0 MiB"), "{stderr}");
    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(tl["channels"], 256);
    assert_eq!(tl["frames"], 96_000);
    let reader = hound::WavReader::open(job.join("recording.wav")).unwrap();
    assert_eq!(reader.spec().channels, 256);
    assert_eq!(reader.duration(), 96_000);

    let refused = record("257");
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("capture.channels"), "{stderr}");
}
