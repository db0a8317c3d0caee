//! Tables for the lenient reading and the validation of jobs.

use super::*;
use crate::format::SampleFormat;
use serde_json::{Value, json};
use std::time::Duration;

fn job_json() -> Value {
    json!({
        "id": "job_0b6c1f1e-6a5e-4c1e-9d7a-3f2f8f1f2a10",
        "nodeId": "node_1",
        "recordingId": "rec_1",
        "status": "running",
        "createdAt": "2026-11-23T01:00:00.000Z",
        "claimedBy": "node_1",
        "startedAt": "2026-11-23T01:00:01.000Z",
        "lastHeartbeatAt": "2026-11-23T01:00:01.000Z",
        "leaseExpiresAt": "2026-11-23T01:00:31.000Z",
        "scheduleId": "sched_9",
        "somethingNew": {"nested": [1, 2, 3]},
        "command": command_json()
    })
}

fn command_json() -> Value {
    let channel_map = json!({
        "assignmentId": "asg_1", "channelMode": "stereo", "sourceChannels": 8,
        "targetId": "node_1", "targetType": "node", "templateId": "tpl_1",
        "templateName": "Room A",
        "entries": [{"included": true, "label": "L", "outputChannelIndex": 1,
                     "sourceChannelIndex": 3, "gainDb": 0}]
    });
    let retention = json!({"policyId": "pol_1", "deleteAfterUpload": false,
        "maxAgeDays": 14, "maxBytes": null, "minFreeDiskPercent": 10.5});
    json!({
            "type": "alsa_capture",
            "captureBackend": "alsa",
            "captureDevice": "plughw:CARD=USB,DEV=0",
            "captureFormat": "S24_3LE",
            "captureSampleRate": 48000,
            "captureChannels": 8,
            "captureChannelSelection": [3, 4],
            "captureGroupId": "grp_1",
            "durationSeconds": 3600,
            "chunkSeconds": 600,
            "trackGroupId": "tg_1",
            "trackIndex": 2,
            "trackTotal": 4,
            "outputCodec": "flac",
            "outputFileName": "room-a-2026-11-23.flac",
            "channelMap": channel_map,
            "recorderCacheRetention": retention,
            "enhancement": {"denoise": true},
            "futureKnob": 42
    })
}

#[test]
fn parses_a_real_looking_job_with_unknown_fields() {
    let job: Job = serde_json::from_value(job_json()).unwrap();
    assert_eq!(job.status, Some(JobStatus::Running));
    assert_eq!(job.command.capture_channel_selection, Some(vec![3, 4]));
    assert_eq!(job.command.channel_map.as_ref().unwrap().entries.len(), 1);
    let retention = job.command.recorder_cache_retention.as_ref().unwrap();
    assert_eq!(retention.max_age_days, Some(14.0));
    assert_eq!(retention.max_bytes, None);
    let valid = job.validate().unwrap();
    assert_eq!(valid.format, SampleFormat::S24Le3);
    assert_eq!(valid.duration, Duration::from_secs(3600));
    assert_eq!(valid.output_codec, Some(OutputCodec::Flac));
    assert_eq!(valid.stream_spec().bytes_per_frame(), 24);
    // The journal keeps exactly what was sent, unknown fields included.
    assert_eq!(serde_json::to_value(&job).unwrap(), job_json());
}

#[test]
fn job_envelope_and_group() {
    let body = json!({"data": [job_json(), {"id": "job_2", "command": "garbage"}, 7]});
    let env: Envelope<Vec<Job>> = serde_json::from_value(body).unwrap();
    assert_eq!(env.data.len(), 3);
    assert!(env.data[0].validate().is_ok());
    let broken = env.data[1].validate().unwrap_err();
    assert_eq!(broken.job_id.as_deref(), Some("job_2"));
    assert_eq!(env.data[2].id, None);
}

#[test]
fn unknown_status_is_kept() {
    let mut v = job_json();
    v["status"] = json!("paused_by_operator");
    let job = Job::from_value(v);
    assert_eq!(
        job.status,
        Some(JobStatus::Unknown("paused_by_operator".into()))
    );
    assert_eq!(job.status.as_ref().unwrap().as_str(), "paused_by_operator");
    assert_eq!(
        serde_json::to_value(JobStatus::StopRequested).unwrap(),
        json!("stop_requested")
    );
}

#[test]
fn each_rejection_reason() {
    // (pointer to change, new value or None to remove, field, expected words)
    let cases: &[(&str, Option<Value>, &str, &str)] = &[
        ("/id", None, "id", "missing"),
        ("/id", Some(json!(17)), "id", "invalid (got 17)"),
        ("/id", Some(json!("  ")), "id", "is empty"),
        ("/nodeId", None, "nodeId", "missing"),
        ("/recordingId", Some(json!(null)), "recordingId", "missing"),
        ("/status", None, "status", "missing"),
        (
            "/command/type",
            Some(json!("video")),
            "command.type",
            "unsupported",
        ),
        (
            "/command/captureDevice",
            None,
            "command.captureDevice",
            "missing",
        ),
        (
            "/command/captureDevice",
            Some(json!("hw:0\n")),
            "command.captureDevice",
            "control",
        ),
        (
            "/command/captureFormat",
            None,
            "command.captureFormat",
            "missing",
        ),
        (
            "/command/captureFormat",
            Some(json!("S8")),
            "command.captureFormat",
            "unknown sample format",
        ),
        (
            "/command/captureSampleRate",
            None,
            "command.captureSampleRate",
            "missing",
        ),
        (
            "/command/captureSampleRate",
            Some(json!(4000)),
            "command.captureSampleRate",
            "4000 is outside 8000..=384000",
        ),
        (
            "/command/captureSampleRate",
            Some(json!(768000)),
            "command.captureSampleRate",
            "outside",
        ),
        (
            "/command/captureSampleRate",
            Some(json!(10_000_000_000u64)),
            "command.captureSampleRate",
            "outside",
        ),
        (
            "/command/captureSampleRate",
            Some(json!("48000")),
            "command.captureSampleRate",
            "invalid (got \"48000\")",
        ),
        (
            "/command/captureSampleRate",
            Some(json!(48000.5)),
            "command.captureSampleRate",
            "invalid",
        ),
        (
            "/command/captureChannels",
            Some(json!(0)),
            "command.captureChannels",
            "0 is outside 1..=64",
        ),
        (
            "/command/captureChannels",
            Some(json!(65)),
            "command.captureChannels",
            "outside",
        ),
        (
            "/command/captureChannels",
            Some(json!(-2)),
            "command.captureChannels",
            "invalid",
        ),
        (
            "/command/durationSeconds",
            None,
            "command.durationSeconds",
            "missing",
        ),
        (
            "/command/durationSeconds",
            Some(json!(0)),
            "command.durationSeconds",
            "0 is outside",
        ),
        (
            "/command/durationSeconds",
            Some(json!(1.5e-271)),
            "command.durationSeconds",
            "outside [0.001",
        ),
        (
            "/command/durationSeconds",
            Some(json!(7 * 24 * 3600 + 1)),
            "command.durationSeconds",
            "outside",
        ),
        (
            "/command/outputFileName",
            None,
            "command.outputFileName",
            "missing",
        ),
        (
            "/command/outputFileName",
            Some(json!("")),
            "command.outputFileName",
            "is empty",
        ),
        (
            "/command/outputFileName",
            Some(json!("../etc/passwd")),
            "command.outputFileName",
            "separator",
        ),
        (
            "/command/outputFileName",
            Some(json!("a\\b.wav")),
            "command.outputFileName",
            "separator",
        ),
        (
            "/command/outputFileName",
            Some(json!("..")),
            "command.outputFileName",
            "\"..\"",
        ),
        (
            "/command/outputFileName",
            Some(json!("x".repeat(300))),
            "command.outputFileName",
            "longer",
        ),
        (
            "/command/captureChannelSelection",
            Some(json!([])),
            "command.captureChannelSelection",
            "empty",
        ),
        (
            "/command/captureChannelSelection",
            Some(json!([0])),
            "command.captureChannelSelection",
            "channel 0 is outside 1..=8",
        ),
        (
            "/command/captureChannelSelection",
            Some(json!([9])),
            "command.captureChannelSelection",
            "channel 9 is outside",
        ),
        (
            "/command/captureChannelSelection",
            Some(json!([2, 3, 2])),
            "command.captureChannelSelection",
            "channel 2 is listed twice",
        ),
        (
            "/command/captureChannelSelection",
            Some(json!(["L"])),
            "command.captureChannelSelection",
            "not a list",
        ),
        (
            "/command/outputCodec",
            Some(json!("ogg")),
            "command.outputCodec",
            "unsupported \"ogg\"",
        ),
        (
            "/command/outputCodec",
            Some(json!(3)),
            "command.outputCodec",
            "not a string",
        ),
        (
            "/command/chunkSeconds",
            Some(json!(0)),
            "command.chunkSeconds",
            "is 0",
        ),
        (
            "/command/chunkSeconds",
            Some(json!(-5)),
            "command.chunkSeconds",
            "not a positive integer",
        ),
        ("/command", None, "command.captureDevice", "missing"),
        (
            "/command",
            Some(json!("alsa")),
            "command.captureDevice",
            "missing",
        ),
    ];
    for (pointer, value, field, words) in cases {
        let mut v = job_json();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Some(value) => obj.insert(key.to_string(), value.clone()),
            None => obj.remove(key),
        };
        let err = Job::from_value(v)
            .validate()
            .expect_err(&format!("{pointer} = {value:?} should be rejected"));
        assert_eq!(err.field, *field, "{pointer} = {value:?}: {err}");
        assert!(
            err.problem.contains(words),
            "{pointer} = {value:?}: {:?} lacks {words:?}",
            err.problem
        );
        assert!(err.reason().starts_with("invalid_job: "));
        assert!(!err.reason().contains('\n'));
    }
}

#[test]
fn optional_fields_may_be_absent() {
    let v = json!({
        "id": "job_1", "nodeId": "n", "recordingId": "r", "status": "queued",
        "command": {"captureDevice": "hw:CARD=X", "captureFormat": "S16_LE",
                    "captureSampleRate": 44100, "captureChannels": 2,
                    "durationSeconds": 60, "outputFileName": "a.wav"}
    });
    let valid = Job::from_value(v).validate().unwrap();
    assert_eq!(valid.channel_selection, None);
    assert_eq!(valid.output_codec, None);
    assert_eq!(valid.chunk_seconds, None);
}

#[test]
fn health_event_skips_nones() {
    let mut ev = HealthEvent::new("agent.capture.device_lost", Severity::Critical);
    ev.details.insert("device".into(), json!("hw:CARD=USB"));
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(
        v,
        json!({"type": "agent.capture.device_lost", "severity": "critical",
               "details": {"device": "hw:CARD=USB"}})
    );
    ev.id = Some("evt_1".into());
    ev.recording_id = Some("rec_1".into());
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["id"], "evt_1");
    assert_eq!(v["recordingId"], "rec_1");
    assert!(v.get("openedAt").is_none() && v.get("scheduleId").is_none());
    assert!(ev.check().is_ok());
    assert!(
        HealthEvent::new("watchdog.x", Severity::Info)
            .check()
            .is_err()
    );
    assert!(
        HealthEvent::new("controller.x", Severity::Info)
            .check()
            .is_err()
    );
}

#[test]
fn heartbeat_is_camel_case_without_nones() {
    let hb = NodeHeartbeat {
        agent_version: "edgerec 0.1.0".into(),
        hostname: "box-1".into(),
        ip_addresses: vec!["10.0.0.5".into()],
        status: NodeStatus::Online,
        runtime: Some(Runtime {
            audio_backends: vec![AudioBackend::Alsa],
            uptime_seconds: Some(12),
            ..Runtime::default()
        }),
        interfaces: None,
    };
    let v = serde_json::to_value(&hb).unwrap();
    assert_eq!(
        v,
        json!({"agentVersion": "edgerec 0.1.0", "hostname": "box-1",
               "ipAddresses": ["10.0.0.5"], "status": "online",
               "runtime": {"audioBackends": ["alsa"], "uptimeSeconds": 12}})
    );
    let iface = Interface {
        alias: "USB".into(),
        backend: AudioBackend::Alsa,
        channel_count: 2,
        channels: vec![ChannelInfo {
            alias: "L".into(),
            index: 1,
        }],
        hardware_path: None,
        sample_rates: vec![48000],
        serial_number: None,
        system_name: "hw:CARD=USB".into(),
        system_ref: Some("usb-0000:01:00.0-1".into()),
    };
    let v = serde_json::to_value(Inventory {
        interfaces: vec![iface],
    })
    .unwrap();
    assert_eq!(v["interfaces"][0]["channelCount"], 2);
    assert_eq!(v["interfaces"][0]["systemRef"], "usb-0000:01:00.0-1");
    assert!(v["interfaces"][0].get("serialNumber").is_none());
}

#[test]
fn node_config_defaults() {
    let c: NodeConfig = serde_json::from_value(json!({})).unwrap();
    assert_eq!(c.recording_capacity.max_concurrent_recordings, 1);
    assert!(c.recorder_cache_policies.is_empty());
    let c: NodeConfig = serde_json::from_value(json!({
        "recordingCapacity": {"maxConcurrentRecordings": null},
        "recorderCachePolicies": [{"policyId": "p", "deleteAfterUpload": true,
            "maxAgeDays": null, "maxBytes": 1000000, "minFreeDiskPercent": null, "x": 1}],
        "audioDefaults": {"sampleRate": 48000}
    }))
    .unwrap();
    assert_eq!(c.recording_capacity.max_concurrent_recordings, 1);
    assert_eq!(c.recorder_cache_policies[0].max_bytes, Some(1_000_000));
    assert!(c.recorder_cache_policies[0].delete_after_upload);
    let c: NodeConfig =
        serde_json::from_value(json!({"recordingCapacity": {"maxConcurrentRecordings": 4}}))
            .unwrap();
    assert_eq!(c.recording_capacity.max_concurrent_recordings, 4);
}

#[test]
fn meter_levels_are_clamped() {
    let frame = MeterFrame {
        captured_at: "2026-11-23T01:00:00.000Z".into(),
        interface_id: "if_1".into(),
        node_id: "node_1".into(),
        levels: vec![MeterLevel {
            channel_index: 1,
            label: "L".into(),
            peak_dbfs: f64::NEG_INFINITY,
            rms_dbfs: f64::NAN,
            clipping: false,
            quality: None,
        }],
    };
    let v = serde_json::to_value(&frame).unwrap();
    assert_eq!(v["levels"][0]["peakDbfs"], -160.0);
    assert_eq!(v["levels"][0]["rmsDbfs"], -160.0);
    assert_eq!(v["capturedAt"], "2026-11-23T01:00:00.000Z");
}

#[test]
fn cache_file_reply() {
    let v = json!({"data": {"file": {"cachePath": "cache/rec_1/a.flac",
        "checksum": "sha256:ABCDEF", "durationSeconds": 12.5, "fileName": "a.flac",
        "mimeType": "audio/flac", "size": 1234, "waveformPreview": [0, 1]},
        "recording": {"id": "rec_1"}, "uploadQueueItems": [], "chunk": {"index": 1}}});
    let env: Envelope<CacheFileReply> = serde_json::from_value(v).unwrap();
    assert_eq!(env.data.file.size, 1234);
    assert_eq!(env.data.file.sha256_hex().as_deref(), Some("abcdef"));
}

#[test]
fn error_body_from_anything() {
    let e = ErrorBody::from_bytes(br#"{"error":"Invalid body","issues":[{"path":["x"]}]}"#);
    assert_eq!(e.error, "Invalid body");
    assert_eq!(e.issues.as_ref().unwrap().len(), 1);
    let e = ErrorBody::from_bytes(b"<html>Bad Gateway</html>");
    assert_eq!(e.error, "<html>Bad Gateway</html>");
    assert!(e.issues.is_none());
}

#[test]
fn hostile_ids_and_file_names_are_refused_and_reported_only_when_printable() {
    // (pointer, value, field, words, reportable under the job's own id)
    let long = "job_".to_string() + &"a".repeat(200);
    let cases: &[(&str, Value, &str, &str, Option<&str>)] = &[
        (
            "/id",
            json!("../../../../tmp/x"),
            "id",
            "outside",
            Some("../../../../tmp/x"),
        ),
        (
            "/id",
            json!("/etc/passwd"),
            "id",
            "outside",
            Some("/etc/passwd"),
        ),
        ("/id", json!(".."), "id", "outside", None),
        ("/id", json!("job_\u{0}x"), "id", "control", None),
        ("/id", json!("job_\u{1b}[2J"), "id", "control", None),
        (
            "/id",
            json!(long),
            "id",
            "longer than 128",
            Some(long.as_str()),
        ),
        (
            "/id",
            json!("x".repeat(10_000)),
            "id",
            "longer than 255",
            None,
        ),
        ("/id", json!("job 1"), "id", "outside", Some("job 1")),
        (
            "/recordingId",
            json!("../rec"),
            "recordingId",
            "outside",
            Some(JOB),
        ),
        (
            "/recordingId",
            json!("/tmp/rec"),
            "recordingId",
            "outside",
            Some(JOB),
        ),
        (
            "/nodeId",
            json!("node_1/../x"),
            "nodeId",
            "outside",
            Some(JOB),
        ),
        (
            "/command/captureGroupId",
            json!("../g"),
            "command.captureGroupId",
            "outside",
            Some(JOB),
        ),
        (
            "/command/outputFileName",
            json!(".hidden.wav"),
            "command.outputFileName",
            "starts with",
            Some(JOB),
        ),
        (
            "/command/outputFileName",
            json!("noextension"),
            "command.outputFileName",
            "extension",
            Some(JOB),
        ),
        (
            "/command/outputFileName",
            json!("a.w@v"),
            "command.outputFileName",
            "extension",
            Some(JOB),
        ),
        (
            "/command/outputFileName",
            json!("a.wav\u{0}.sh"),
            "command.outputFileName",
            "control",
            Some(JOB),
        ),
    ];
    for (pointer, value, field, words, reported) in cases {
        let mut v = job_json();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        obj.insert(key.to_string(), value.clone());
        let err = Job::from_value(v)
            .validate()
            .expect_err(&format!("{pointer} = {value} should be rejected"));
        assert_eq!(err.field, *field, "{pointer}: {err}");
        assert!(err.problem.contains(words), "{pointer}: {:?}", err.problem);
        assert_eq!(err.job_id.as_deref(), *reported, "{pointer} = {value}");
    }
    for good in ["job_0b6c-1f", "rec_1", "A-z_9"] {
        assert_eq!(check_id(good), Ok(()), "{good}");
    }
}

const JOB: &str = "job_0b6c1f1e-6a5e-4c1e-9d7a-3f2f8f1f2a10";
