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
        // writes only its encoded file.
        let rendered: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("recording."))
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
    assert_eq!(done.failure_reason.as_deref(), Some("render_failed"));
    // The job machine's reason is the kind; the health event says which channel. The
    // event is sent after the report: wait for it, boundedly.
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
