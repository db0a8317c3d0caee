//! The agent against the reference controller, end to end: real HTTP on 127.0.0.1, real
//! SQLite on both sides, real `edgerec` processes and signals.

mod common;

use common::controller::*;
use common::*;
use edgerec::core::job::JobState;
use std::process::Stdio;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(30);

#[test]
fn full_lifecycle_claim_capture_upload_completed_with_our_checksum() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 3.0);
    let mut agent = ctl.spawn_agent(state.path());
    let done = ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(30));
    let rec = ctl.recording(&done.id);
    let dir = agent_job_dir(state.path(), &job.id);
    // Written once: the upload streamed the segments; no stitched copy on the box.
    assert!(!dir.join("recording.wav").exists());
    let local = delivered_wav(&dir);
    assert_eq!(
        rec.checksum.clone().unwrap(),
        sha256_file(&local),
        "the controller has exactly our file"
    );
    let stored = ctl.store.join(rec.cache_path.clone().unwrap());
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_eq!(wav_frames(&stored), 3 * 48_000);
    assert_eq!(rec.duration_seconds, Some(3.0));
    let tl = timeline(&agent_job_dir(state.path(), &job.id));
    // Claim (the controller's startedAt) to the first captured frame (the agent's frame 0).
    let first_frame = humantime::parse_rfc3339(tl["started_at"].as_str().unwrap()).unwrap();
    let claimed = done.started().expect("a completed job was claimed");
    let latency = first_frame
        .duration_since(claimed)
        .map_or(0, |d| d.as_millis());
    eprintln!("claim -> first captured frame: {latency} ms");
    assert!(
        latency < 2_000,
        "capture starts promptly after a claim: {latency} ms"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent_job(state.path(), &job.id).state, JobState::Delivered);
    sigterm(&mut agent, Duration::from_secs(5));
}

#[test]
fn a_stop_mid_capture_uploads_the_partial_before_anything_else() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 20.0);
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2500));
    ctl.stop_job(&job.id);
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(20));
    // On this controller the stopped partial's upload completes the job.
    assert_eq!(done.status.to_string(), "completed");
    let rec = ctl.recording(&done.id);
    let seconds = rec.duration_seconds.unwrap();
    assert!(
        (1.0..8.0).contains(&seconds),
        "the partial, not the booking: {seconds} s"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let row = agent_job(state.path(), &job.id);
    assert_eq!(row.state, JobState::Delivered, "{row:?}");
    let tl = timeline(&agent_job_dir(state.path(), &job.id));
    assert_eq!(events_of(&tl, "stop_requested").len(), 1, "{tl:#}");
    sigterm(&mut agent, Duration::from_secs(5));
}

#[test]
fn cancelled_or_failed_on_the_controller_mid_capture_finalizes_locally_and_keeps_the_audio() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let cancelled = ctl.add_job("sine:440", 20.0);
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&cancelled.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2000));
    ctl.cancel_job(&cancelled.id);
    let failed = ctl.add_job("sine:440", 20.0);
    ctl.wait_status(&failed.id, Some("running"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2000));
    ctl.fail_job(&failed.id, "operator_failed");
    let until = Instant::now() + Duration::from_secs(20);
    let (c, f) = loop {
        let c = agent_job(state.path(), &cancelled.id);
        let f = agent_job(state.path(), &failed.id);
        if c.state.is_terminal() && f.state.is_terminal() {
            break (c, f);
        }
        assert!(
            Instant::now() < until,
            "agent did not finalize: {:?} {:?}",
            c.state,
            f.state
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(f.state, JobState::Failed);
    for job in [&cancelled, &failed] {
        // Audio is never deleted because of controller state: kept, and not uploaded.
        let local = delivered_wav(&agent_job_dir(state.path(), &job.id));
        assert!(wav_frames(&local) > 48_000, "kept locally");
        assert!(!ctl.recording(&job.id).cached, "not uploaded");
    }
    assert_eq!(ctl.job(&cancelled.id).status.to_string(), "cancelled");
    assert_eq!(ctl.job(&failed.id).status.to_string(), "failed");
    sigterm(&mut agent, Duration::from_secs(5));
}

/// The roles as separate processes: the sync role is killed mid-job and restarted 5 s
/// later; capture never notices, and the job ends once.
#[test]
fn kill_9_of_the_sync_role_loses_no_frames_and_reports_once() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 12.0);
    let mut capture = edgerec()
        .args(["capture", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2000));
    sync.kill().unwrap();
    sync.wait().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(30));
    assert_eq!(done.status.to_string(), "completed");
    let tl = timeline(&agent_job_dir(state.path(), &job.id));
    assert_eq!(tl["frames"].as_u64().unwrap(), 12 * 48_000);
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["gap_frames"].is_null()),
        "no gap: {tl:#}"
    );
    sigterm(&mut sync, Duration::from_secs(5));
    sigterm(&mut capture, Duration::from_secs(5));
}

/// Health events keep coming (a drop-out every 2 s) while the sync role is killed with
/// SIGKILL three times: every event reaches the controller. The server keeps no
/// idempotency and offers no read-back (Rakkr's too), so a kill between its 201 and our
/// commit of it (the outbox commits an answer as soon as it arrives: milliseconds) resends
/// that one event: at most one duplicate per kill, never a loss (seen once, in a CI-like
/// run with four other builds on the two cores).
#[test]
fn kill_9_of_the_sync_role_loses_no_health_event_and_resends_at_most_one_per_kill() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let dropouts: Vec<String> = (1..8)
        .map(|i| format!("dropout={}s+200ms", 2 * i))
        .collect();
    let job = ctl.add_job(&format!("sine:440,{}", dropouts.join(",")), 16.0);
    let mut capture = edgerec()
        .args(["capture", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    for pause in [2_300, 1_700, 2_900] {
        std::thread::sleep(Duration::from_millis(pause));
        sync.kill().unwrap();
        sync.wait().unwrap();
        sync = ctl.role("sync", state.path()).spawn().unwrap();
    }
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(40));
    assert_eq!(done.status.to_string(), "completed");
    std::thread::sleep(Duration::from_secs(3)); // the last rows of the outbox
    sigterm(&mut sync, Duration::from_secs(5));
    sigterm(&mut capture, Duration::from_secs(5));
    let events = ctl.health_events();
    let ids: Vec<String> = events
        .iter()
        .filter_map(|e| e["details"]["localEventId"].as_str().map(str::to_string))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    let kills = 3;
    let twice = ids.len() - unique.len();
    eprintln!("{} events, {twice} sent again after a kill", ids.len());
    assert!(twice <= kills, "more resends than kills: {events:#?}");
    let drop_outs: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "agent.recording_job.drop_out")
        .filter_map(|e| e["details"]["localEventId"].as_str())
        .collect();
    assert_eq!(drop_outs.len(), 7, "every drop-out arrived: {events:#?}");
}

/// The capture role is killed mid-job: the janitor of the next one resumes it.
#[test]
fn kill_9_of_the_capture_role_is_resumed_by_the_janitor_and_reports_once() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 10.0);
    let capture = || {
        edgerec()
            .args(["capture", "--state-dir"])
            .arg(state.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = capture();
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(3000));
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let mut second = capture();
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(30));
    assert_eq!(done.status.to_string(), "completed");
    let tl = timeline(&agent_job_dir(state.path(), &job.id));
    assert_eq!(events_of(&tl, "crash_recovered").len(), 1, "{tl:#}");
    assert_eq!(tl["frames"].as_u64().unwrap(), 10 * 48_000);
    sigterm(&mut sync, Duration::from_secs(5));
    sigterm(&mut second, Duration::from_secs(5));
}

/// Two jobs of one capture group, disjoint channel subsets of one 4-channel device:
/// captured once, each output holds exactly its channels.
#[test]
fn a_capture_group_is_captured_once_and_each_job_keeps_its_channels() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let jobs = ctl.add_group("noise", 3.0, "room-a");
    let mut agent = ctl.spawn_agent(state.path());
    for job in &jobs {
        let done = ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(30));
        let local = delivered_wav(&agent_job_dir(state.path(), &job.id));
        let rec = ctl.recording(&done.id);
        assert_eq!(rec.checksum.unwrap(), sha256_file(&local));
    }
    // One capture: only one job directory has segments.
    let with_segments: Vec<_> = jobs
        .iter()
        .filter(|j| !segment_files(&agent_job_dir(state.path(), &j.id)).is_empty())
        .collect();
    assert_eq!(with_segments.len(), 1, "the group was captured once");
    let leader_dir = agent_job_dir(state.path(), &with_segments[0].id);
    let device: Vec<i16> = segment_files(&leader_dir)
        .iter()
        .flat_map(|f| {
            hound::WavReader::open(f)
                .unwrap()
                .into_samples::<i16>()
                .map(|s| s.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    for (job, channels) in jobs.iter().zip([[0usize, 1], [2, 3]]) {
        let mut reader =
            hound::WavReader::open(delivered_wav(&agent_job_dir(state.path(), &job.id))).unwrap();
        assert_eq!(
            reader.spec().channels,
            2,
            "{}: only its two channels",
            job.id
        );
        let got: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        let want: Vec<i16> = device
            .chunks_exact(4)
            .flat_map(|f| [f[channels[0]], f[channels[1]]])
            .collect();
        assert_eq!(got.len(), want.len(), "{}", job.id);
        assert!(
            got == want,
            "{}: output channels are not device channels {channels:?}",
            job.id
        );
    }
    sigterm(&mut agent, Duration::from_secs(5));
}

/// One honest story per job: the sync role's machine says `capturing` while the job
/// captures (within 2 s of its first frame), not in the same millisecond as the render.
#[test]
fn the_log_says_capturing_while_the_job_captures() {
    use std::io::BufRead;
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 8.0);
    let mut agent = ctl
        .role("agent", state.path())
        .env("EDGEREC_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each line stamped with the wall time the test saw it.
    let stderr = agent.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|l| (now_ms(), l))
            .collect::<Vec<_>>()
    });
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(30));
    sigterm(&mut agent, Duration::from_secs(5));
    let lines = reader.join().unwrap();
    let tl = timeline(&agent_job_dir(state.path(), &job.id));
    let first_frame = at_ms(&tl["started_at"]);
    let seen = |what: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(what))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no {what:?} line in {lines:#?}"))
    };
    let capturing = seen("claimed -> capturing");
    let stopping = seen("capturing -> stopping");
    eprintln!(
        "first frame -> 'capturing' logged: {} ms; 'stopping' {} ms later",
        capturing - first_frame,
        stopping - capturing
    );
    assert!(
        capturing - first_frame < 2_000,
        "{}",
        capturing - first_frame
    );
    assert!(
        stopping - capturing > 5_000,
        "the story unfolds over the capture"
    );
}

/// The sync role is killed with kill -9 while it streams a WAV from the segments into
/// the upload, and restarted: the stream is re-created from the segments and the
/// controller stores exactly the stitched view's bytes, once.
#[test]
fn kill_9_mid_upload_then_restart_delivers_the_same_bytes() {
    let _rt = realtime();
    let ctl = Ctl::start(LEASE);
    let state = tempfile::tempdir().unwrap();
    // 8 ch S32 for 8 s: 12 MB to stream, long enough to be caught mid-way.
    let job = ctl.add_job_with("noise", 8.0, &["--channels", "8", "--format", "S32_LE"]);
    let mut capture = edgerec()
        .args(["capture", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    // Kill it as soon as the controller has some of the body (or it finished first).
    let tmp = ctl.store.join(".tmp");
    let until = Instant::now() + Duration::from_secs(40);
    let mut caught = false;
    while Instant::now() < until && !ctl.recording(&job.id).cached {
        let partial = std::fs::read_dir(&tmp)
            .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
            .unwrap_or(false);
        if partial {
            caught = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sync.kill().unwrap();
    sync.wait().unwrap();
    eprintln!("killed mid-upload: {caught}");
    let dir = agent_job_dir(state.path(), &job.id);
    assert!(
        !dir.join("recording.wav").exists(),
        "streamed, never copied"
    );
    let mut sync = ctl.role("sync", state.path()).spawn().unwrap();
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(40));
    assert_eq!(done.status.to_string(), "completed");
    let rec = ctl.recording(&done.id);
    // What the controller stored is the stitched view, byte for byte.
    let hashed = sha256_file(&common::delivered_wav(&dir));
    assert_eq!(rec.checksum.unwrap(), hashed);
    let stored = ctl.store.join(rec.cache_path.unwrap());
    assert_eq!(sha256_file(&stored), hashed);
    let r = hound::WavReader::open(&stored).unwrap();
    assert_eq!((r.spec().channels, r.duration()), (8, 8 * 48_000));
    sigterm(&mut sync, Duration::from_secs(5));
    sigterm(&mut capture, Duration::from_secs(5));
}

/// A capture group whose members stop at different times: the stopped one ends at its own
/// frame (its upload holds only its part) while the shared capture goes on for the other,
/// whether the stopped one is a member or the group's leader (the first claimed).
#[test]
fn a_group_member_stopped_early_ends_at_its_own_frame() {
    let _rt = realtime();
    for stopped in [1, 0] {
        let ctl = Ctl::start(LEASE);
        let state = tempfile::tempdir().unwrap();
        let jobs = ctl.add_group("sine:440", 6.0, "room-b");
        let mut agent = ctl.spawn_agent(state.path());
        ctl.wait_status(&jobs[stopped].id, Some("running"), Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(2));
        ctl.stop_job(&jobs[stopped].id);
        let other = &jobs[1 - stopped];
        let whole = ctl.wait_status(&other.id, Some("completed"), Duration::from_secs(30));
        let part = ctl.wait_status(
            &jobs[stopped].id,
            Some("completed"),
            Duration::from_secs(30),
        );
        let whole_s = ctl.recording(&whole.id).duration_seconds.unwrap();
        let part_s = ctl.recording(&part.id).duration_seconds.unwrap();
        eprintln!("stopped job {stopped}: {part_s} s; the other: {whole_s} s");
        assert!(
            (whole_s - 6.0).abs() < 0.05,
            "the capture went on: {whole_s}"
        );
        // Stopped 2 s in; the agent sees a stop within its 2 s poll.
        assert!((1.5..5.0).contains(&part_s), "stopped job: {part_s} s");
        let dir = agent_job_dir(state.path(), &part.id);
        let frames = wav_frames(&delivered_wav(&dir));
        assert_eq!(
            frames as f64 / 48_000.0,
            part_s,
            "the file is the header's length"
        );
        let tl = timeline(&dir);
        let ends = events_of(&tl, "stop_requested");
        assert!(
            ends.iter().any(|e| e["frame"].as_u64() == Some(frames)
                && e["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("capture group member ended")),
            "{ends:?}"
        );
        sigterm(&mut agent, Duration::from_secs(5));
    }
}
