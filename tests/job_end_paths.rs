//! Every end path of a job, each a real fault against real parts: a device that never
//! opens, never delivers, refuses the format, comes late or goes for good; a crash before
//! the first frame; a controller job that can never capture. Each ends in one terminal
//! state, by the end of its window, and the node goes on claiming.

mod common;

use common::controller::*;
use common::fakemic::{self, Fakemic};
use common::*;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const RATE: u64 = 48_000;
/// `record`'s exit code for a job whose window ended without a frame.
const NO_AUDIO: i32 = 11;
const UNSUPPORTED_FORMAT: i32 = 6;

fn record_cmd(mic: &Fakemic, device: &str, duration: &str, out: &Path) -> Command {
    let mut cmd = edgerec();
    cmd.env("ALSA_CONFIG_PATH", &mic.config_path)
        .env("EDGEREC_LOG", "info")
        .args(["record", "--backend", "alsa", "--device", device])
        .args(["--duration", duration, "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits (bounded) for the child; returns its status, stderr and how long it took.
fn finish(child: Child, started: Instant, within: Duration) -> (ExitStatus, String, Duration) {
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(within);
        // SAFETY: kill(2) on our own child's pid; harmless if it already exited.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    drop(watchdog);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("took {took:?}, {}\n{stderr}", out.status);
    (out.status, stderr, took)
}

#[test]
fn record_on_a_device_stalled_from_the_start_ends_with_its_window() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("stalled", &[])]);
    mic.mic("stall", "stalled");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "stalled", "4s", out.path())
        .spawn()
        .unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(20));
    assert_eq!(status.code(), Some(NO_AUDIO), "{stderr}");
    // The 4 s window plus the start and the end; a CI-like box with four other builds on
    // its two cores took 8.3 s once (never ending is what this guards against).
    assert!(took < Duration::from_secs(10), "ended {took:?} after start");
    assert!(stderr.contains("no audio captured") && stderr.contains("stalled"));
    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(tl["frames"], 0, "{tl:#}");
}

#[test]
fn record_waiting_for_a_missing_device_ends_with_its_window() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("absent", &[])]);
    mic.mic("unplug", "absent");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "absent", "3s", out.path())
        .arg("--wait-for-device")
        .spawn()
        .unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(20));
    assert_eq!(status.code(), Some(NO_AUDIO), "{stderr}");
    assert!(took < Duration::from_secs(4), "ended {took:?} after start");
    // The reason names the device and the last thing it said.
    assert!(
        stderr.contains("device_never_delivered: device absent"),
        "{stderr}"
    );
}

#[test]
fn record_of_a_missing_device_without_waiting_fails_at_once() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("gone", &[])]);
    mic.mic("unplug", "gone");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "gone", "30s", out.path()).spawn().unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(10));
    assert_eq!(status.code(), Some(4), "no such device: {stderr}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn record_of_a_refused_format_fails_at_once() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("fixedrate", &[])]);
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "fixedrate", "30s", out.path())
        .args(["--rate", "44100", "--wait-for-device"])
        .spawn()
        .unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(10));
    assert_eq!(status.code(), Some(UNSUPPORTED_FORMAT), "{stderr}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_device_plugged_in_late_records_the_rest_with_the_start_as_a_gap() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("latemic", &[])]);
    mic.mic("unplug", "latemic");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "latemic", "4s", out.path())
        .arg("--wait-for-device")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    mic.mic("replug", "latemic");
    // As udev would: the hotplug wake-up reopens at once.
    let woke = edgerec()
        .args([
            "hotplug",
            "--action",
            "add",
            "--devpath",
            "/devices/latemic",
        ])
        .arg("--state-dir")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(woke.success());
    let (status, stderr, took) = finish(child, started, Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let job = only_job(out.path());
    let tl = timeline(&job);
    let late = events_of(&tl, "late_start");
    assert_eq!(late.len(), 1, "{tl:#}");
    assert_eq!(late[0]["frame"], 0);
    let gap_s = late[0]["gap_frames"].as_u64().unwrap() as f64 / RATE as f64;
    assert!((1.8..=2.6).contains(&gap_s), "missing start {gap_s} s");
    // The window is what was booked: 4 s from the start, the first ~2 s a gap.
    assert_eq!(tl["frames"].as_u64().unwrap(), 4 * RATE, "{tl:#}");
    let audio: u64 = segment_files(&job).iter().map(|f| wav_frames(f)).sum();
    let audio_s = audio as f64 / RATE as f64;
    assert!((1.4..=2.2).contains(&audio_s), "captured {audio_s} s");
    assert_eq!(wav_frames(&job.join("recording.wav")), 4 * RATE);
}

#[test]
fn a_device_lost_for_good_ends_the_recording_at_its_last_frame() {
    let _rt = realtime();
    let mic = fakemic::setup(&[("leaves", &[])]);
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = record_cmd(&mic, "leaves", "5s", out.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    mic.mic("unplug", "leaves");
    let (status, stderr, took) = finish(child, started, Duration::from_secs(20));
    assert!(
        status.success(),
        "the audio before the loss is delivered: {stderr}"
    );
    assert!(took < Duration::from_secs(7), "{took:?}");
    let job = only_job(out.path());
    let tl = timeline(&job);
    assert_eq!(events_of(&tl, "device_still_lost").len(), 1, "{tl:#}");
    let frames = tl["frames"].as_u64().unwrap();
    let seconds = frames as f64 / RATE as f64;
    // No padding past the audio: the recording ends where the device went.
    assert!((1.5..=2.5).contains(&seconds), "recording is {seconds} s");
    assert_eq!(wav_frames(&job.join("recording.wav")), frames);
}

#[test]
fn synth_disconnected_at_frame_zero_ends_with_its_window() {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "sine:440,disconnect=0s",
        ])
        .args(["--duration", "3s", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(20));
    assert_eq!(status.code(), Some(NO_AUDIO), "{stderr}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// Under the agent: a job whose device never delivers is `failed` on the controller with
/// the reason, by the end of its window, and the next queued job is claimed and done.
#[test]
fn a_controller_job_that_never_gets_a_frame_fails_with_its_reason_and_the_next_is_claimed() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let dead = ctl.add_job("sine:440,disconnect=0s", 3.0);
    let next = ctl.add_job("sine:440", 2.0);
    let started = Instant::now();
    let mut agent = ctl.spawn_agent(state.path());
    let failed = ctl.wait_status(&dead.id, None, Duration::from_secs(15));
    let took = started.elapsed();
    eprintln!("never-delivering job ended {took:?} after the agent started");
    assert_eq!(failed.status.to_string(), "failed");
    let reason = failed.failure_reason.unwrap_or_default();
    assert!(
        reason.contains("device_never_delivered") && reason.contains("disconnect=0s"),
        "the reason names the device and its error: {reason:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    let done = ctl.wait_status(&next.id, Some("completed"), Duration::from_secs(20));
    assert_eq!(done.status.to_string(), "completed");
    let health = ctl.health_events();
    let absent: Vec<_> = health
        .iter()
        .filter(|e| e["type"] == "agent.recording_job.capture_device_unavailable")
        .collect();
    assert_eq!(
        absent.len(),
        1,
        "one event for the absent device: {health:#?}"
    );
    assert_eq!(
        absent[0]["recordingId"],
        dead.recording_id.as_str(),
        "{health:#?}"
    );
    assert_eq!(absent[0]["details"]["frame"], 0, "{health:#?}");
    let lost = health
        .iter()
        .filter(|e| e["type"] == "agent.recording_job.capture_device_lost")
        .count();
    assert_eq!(lost, 0, "a device never opened was not lost: {health:#?}");
    sigterm(&mut agent, Duration::from_secs(5));
}

/// A crash before the first frame: the restarted agent still ends the job by its window.
#[test]
fn a_crash_before_the_first_frame_still_ends_the_job_by_its_window() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440,disconnect=0s", 4.0);
    let started = Instant::now();
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = ctl.spawn_agent(state.path());
    let failed = ctl.wait_status(&job.id, None, Duration::from_secs(20));
    let took = started.elapsed();
    eprintln!("ended {took:?} after the first start");
    assert_eq!(failed.status.to_string(), "failed", "{failed:?}");
    assert!(took < Duration::from_secs(9), "{took:?}");
    sigterm(&mut agent, Duration::from_secs(5));
}

/// A job the capture role cannot run (its directory cannot be made) is retried a few
/// times with growing pauses, then ended with its reason: it never stays `claimed`.
#[test]
fn a_job_the_capture_role_cannot_run_is_ended_after_its_attempts() {
    use edgerec::core::format::{SampleFormat, StreamSpec};
    use edgerec::core::job::JobState;
    use edgerec::journal::{JobSource, Journal, NewJob};
    let state = tempfile::tempdir().unwrap();
    let blocked = state.path().join("blocked");
    std::fs::write(&blocked, b"a file where the job's directory should be").unwrap();
    let db = state.path().join("edgerec.db");
    let spec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 48_000,
        channels: 2,
    };
    Journal::open(&db)
        .unwrap()
        .create_job(&NewJob {
            id: "job_blocked".into(),
            source: JobSource::Local,
            controller_job_id: None,
            recording_id: None,
            command_json: "{}".into(),
            backend: "synth".into(),
            device: "sine:440".into(),
            spec,
            duration_frames: Some(2 * RATE),
            dir: blocked.clone(),
            state: JobState::Claimed,
            created_at_ms: now_ms(),
        })
        .unwrap();
    let started = Instant::now();
    let child = edgerec()
        .args(["capture", "--exit-when-idle", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr, took) = finish(child, started, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let job = Journal::open(&db)
        .unwrap()
        .job("job_blocked")
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let cause = job.end_cause.unwrap_or_default();
    assert!(
        cause.starts_with("gave_up") && cause.contains("blocked"),
        "{cause}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(blocked.is_file(), "nothing of the operator's is touched");
}

/// A job for a capture backend the box does not have (PipeWire with no server or no
/// pipewire-alsa; a backend no agent has) fails at claim with that reason, once, and the
/// next job is captured: nothing is silently captured from ALSA instead.
#[test]
fn a_job_for_an_absent_capture_backend_fails_with_that_reason() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let with = |backend: &str| {
        let fields = format!(r#"{{"captureBackend": "{backend}"}}"#);
        ctl.add_job_with("sine:440", 2.0, &["--command-json", &fields])
    };
    let pipewire_runs = std::path::Path::new("/run/user/0/pipewire-0").exists()
        || std::path::Path::new("/run/pipewire/pipewire-0").exists();
    let pipewire = (!pipewire_runs).then(|| with("pipewire"));
    let unknown = with("coreaudio");
    let next = ctl.add_job("sine:440", 2.0);
    let mut agent = ctl.spawn_agent(state.path());
    let mut refused = vec![(unknown, "\"coreaudio\" is not a capture backend")];
    refused.extend(pipewire.map(|j| (j, "capture_backend_unavailable: pipewire: ")));
    for (job, why) in refused {
        let failed = ctl.wait_status(&job.id, Some("failed"), Duration::from_secs(20));
        let reason = failed.failure_reason.unwrap_or_default();
        assert!(reason.contains(why), "{reason:?} says {why:?}");
        assert!(
            ctl.recording(&job.id).cache_path.is_none(),
            "nothing uploaded"
        );
    }
    ctl.wait_status(&next.id, Some("completed"), Duration::from_secs(30));
    sigterm(&mut agent, Duration::from_secs(5));
    let unavailable: Vec<_> = (ctl.health_events().into_iter())
        .filter(|e| e["type"] == "agent.audio_backend.unavailable")
        .map(|e| {
            e["details"]["backend"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut want = vec!["coreaudio".to_string()];
    if !pipewire_runs {
        want.insert(0, "pipewire".into());
    }
    assert_eq!(unavailable, want, "one event per absent backend");
}
