//! The agent delivers the codec the job asks for: against the reference controller (real
//! HTTP on 127.0.0.1, real `edgerec` processes), the stored file's bytes, name and type
//! agree, and `ffprobe` reads the stored file as that codec.

mod common;

use common::controller::*;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn each_codec_is_delivered_as_itself() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    // (codec, extra command fields, magic bytes, content type, ffprobe codec name)
    let cases = [
        (
            "mp3",
            serde_json::json!({"outputVbr": true, "outputBitrateKbps": 190}),
            &b"ID3"[..],
            "audio/mpeg",
            "mp3",
        ),
        (
            "flac",
            serde_json::json!({"captureChannelSelection": [2]}),
            &b"fLaC"[..],
            "audio/flac",
            "flac",
        ),
        (
            "wav",
            serde_json::json!({}),
            &b"RIFF"[..],
            "audio/wav",
            "pcm_s16le",
        ),
    ];
    let mut jobs = Vec::new();
    for (codec, extra, ..) in &cases {
        let name = format!("room-a.{codec}");
        let fields = extra.to_string();
        let args = [
            "--codec",
            codec,
            "--file-name",
            &name,
            "--command-json",
            &fields,
        ];
        jobs.push(ctl.add_job_with("sine:440", 2.0, &args));
    }
    let mut agent = ctl.spawn_agent(state.path());
    for (job, (codec, _, magic, content_type, probe_codec)) in jobs.iter().zip(&cases) {
        let done = ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
        let rec = ctl.recording(&done.id);
        assert_eq!(
            rec.file_name.as_deref(),
            Some(format!("room-a.{codec}").as_str())
        );
        assert_eq!(rec.mime_type.as_deref(), Some(*content_type), "{codec}");
        let stored = ctl.store.join(rec.cache_path.as_deref().unwrap());
        let bytes = std::fs::read(&stored).unwrap();
        assert_eq!(
            &bytes[..magic.len()],
            *magic,
            "{codec}: the bytes are {codec}"
        );
        let dir = agent_job_dir(state.path(), &job.id);
        // Every byte written once: a WAV streams from the segments, an encoded job
        // writes only its encoded file (no peaks: the controller draws its own).
        let rendered: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("recording.") || n.contains("peaks"))
            .collect();
        let want: Vec<String> = match *codec {
            "wav" => vec![],
            other => vec![format!("recording.{other}")],
        };
        assert_eq!(rendered, want, "{codec}");
        let local = delivered_wav(&dir);
        assert_eq!(
            rec.checksum.clone().unwrap(),
            sha256_file(&local),
            "{codec}"
        );
        let d = rec.duration_seconds.unwrap();
        assert!((d - 2.0).abs() < 0.05, "{codec}: duration header {d}");
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,channels",
                "-of",
                "csv=p=0",
            ])
            .arg(&stored)
            .output()
            .unwrap();
        let probe = String::from_utf8_lossy(&probe.stdout).trim().to_string();
        let channels = if *codec == "flac" { 1 } else { 2 };
        assert_eq!(probe, format!("{probe_codec},{channels}"), "{codec}");
    }
    sigterm(&mut agent, Duration::from_secs(10));
}

#[test]
fn a_map_naming_a_missing_channel_fails_the_job_with_that_channel() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let fields = serde_json::json!({"channelMap": {"channelMode": "mono", "entries": [
        {"sourceChannelIndex": 1, "included": true}, {"sourceChannelIndex": 7, "included": true}]}});
    let fields = fields.to_string();
    let job = ctl.add_job_with(
        "sine:440",
        1.0,
        &["--codec", "flac", "--command-json", &fields],
    );
    let mut agent = ctl.spawn_agent(state.path());
    let done = ctl.wait_status(&job.id, Some("failed"), Duration::from_secs(60));
    // The reason the controller shows names the kind and the channel.
    let reason = done.failure_reason.clone().unwrap_or_default();
    assert!(reason.starts_with("render_failed: "), "{reason}");
    assert!(reason.contains("channel 7"), "{reason}");
    // The health event says it too. It is sent after the report: wait for it, boundedly.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let detail = loop {
        let found = ctl.health_events().into_iter().find_map(|e| {
            let text = e.to_string();
            (text.contains("render.failed") && text.contains("channel 7")).then_some(text)
        });
        match found {
            Some(text) => break text,
            None if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(200))
            }
            None => panic!(
                "no render.failed health event naming channel 7: {:?}",
                ctl.health_events()
            ),
        }
    };
    assert!(detail.contains("capture has only 2 channel"), "{detail}");
    // The audio is kept for a render with a better map.
    assert!(!segment_files(&agent_job_dir(state.path(), &job.id)).is_empty());
    sigterm(&mut agent, Duration::from_secs(10));
}

/// The phase (radians) of a `freq` Hz tone in `x` at `rate`, by least squares.
fn phase_of(x: &[f64], freq: f64, rate: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / rate;
    let (mut a, mut b) = (0.0, 0.0);
    for (n, v) in x.iter().enumerate() {
        a += v * (w * n as f64).sin();
        b += v * (w * n as f64).cos();
    }
    b.atan2(a)
}

/// Left minus right phase of a stereo 16-bit WAV of a `freq` Hz tone, wrapped to -pi..pi.
fn stereo_phase_lead(path: &std::path::Path, freq: f64) -> f64 {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().channels, 2, "{}", path.display());
    let rate = f64::from(r.spec().sample_rate);
    let s: Vec<f64> = r.samples::<i16>().map(|v| f64::from(v.unwrap())).collect();
    let left: Vec<f64> = s.iter().step_by(2).copied().collect();
    let right: Vec<f64> = s.iter().skip(1).step_by(2).copied().collect();
    let d = phase_of(&left, freq, rate) - phase_of(&right, freq, rate);
    (d + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI
}

/// Jobs that pin no map take the node's channel-map assignments: the one for their
/// interface (here matched by device, as Rakkr's agent does), else the node's; one that
/// names a channel the capture lacks fails the job with that channel in the reason.
#[test]
fn jobs_without_a_map_take_the_assigned_one() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let assign = |kind: &str, target: &str, out_of: [(u16, u16); 2]| {
        let entries: Vec<_> = out_of
            .iter()
            .map(|&(source, output)| {
                serde_json::json!({"sourceChannelIndex": source, "outputChannelIndex": output,
                    "included": true, "label": format!("in {source}")})
            })
            .collect();
        let template = serde_json::json!({"name": format!("{kind} map"),
            "channelMode": "stereo", "entries": entries})
        .to_string();
        let args = [
            "node",
            "assign-map",
            &ctl.node,
            "--target-type",
            kind,
            "--target-id",
            target,
            "--template-json",
            &template,
        ];
        ctl.admin.run(&args).unwrap();
    };
    // The synth gives channel c (0-based) the phase 0.25·c: a swap is visible.
    assign("interface", "sine:440", [(3, 1), (1, 2)]);
    let node = ctl.node.clone();
    assign("node", &node, [(4, 1), (1, 2)]);
    let four = ["--channels", "4", "--codec", "wav"];
    let by_interface = ctl.add_job_with("sine:440", 2.0, &four);
    let by_node = ctl.add_job_with("sine:441", 2.0, &four);
    let too_few = ctl.add_job_with("sine:440", 1.0, &["--channels", "2", "--codec", "wav"]);
    let mut agent = ctl.spawn_agent(state.path());
    for (job, freq, lead) in [(&by_interface, 440.0, 0.5), (&by_node, 441.0, 0.75)] {
        ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
        let rec = ctl.recording(&job.id);
        let stored = ctl.store.join(rec.cache_path.as_deref().unwrap());
        let got = stereo_phase_lead(&stored, freq);
        assert!(
            (got - lead).abs() < 0.02,
            "job {}: lead {got}, want {lead}",
            job.id
        );
    }
    let failed = ctl.wait_status(&too_few.id, Some("failed"), Duration::from_secs(60));
    let reason = failed.failure_reason.unwrap_or_default();
    assert!(
        reason.starts_with("render_failed: ") && reason.contains("channel 3"),
        "{reason}"
    );
    // The journaled command says which assignment the render used.
    let cmd = agent_job(state.path(), &by_interface.id).command_json;
    assert!(cmd.contains("\"targetType\":\"interface\""), "{cmd}");
    sigterm(&mut agent, Duration::from_secs(10));
}
