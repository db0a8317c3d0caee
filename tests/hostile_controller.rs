//! The agent against a hostile controller (issue 7, items 2, 3 and 7): a test server on
//! 127.0.0.1 (`common/hostile.rs`) serves jobs whose ids, recording ids and file names are
//! paths, NUL, escapes or 10k characters, absurd numbers, malformed JSON, a 2 GB
//! `Content-Length` with a short body and 1-byte-per-second replies, to the real
//! `edgerec agent` (synth backend). Each row says what must come of it; every run checks
//! that the process stays up without a panic, that nothing is written outside the state
//! directory, and that a running job's heartbeats keep their interval while calls hang.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use common::controller::sigterm;
use hostile::{Hostile, Reply, Script, good_job, largest_gap, tree};
use serde_json::{Value, json};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The agent's job poll interval (`SyncSettings::job_poll_every`).
const POLL: Duration = Duration::from_secs(2);
/// What a heartbeat's spacing may exceed the poll interval by: the loop's tick (200 ms)
/// and scheduling on a loaded 2-core box.
const SLACK: Duration = Duration::from_millis(900);

/// A real agent with its state directory three levels below a temp root that holds
/// everything it may touch (state, TMPDIR, token): anything else appearing under the root
/// was written outside the state directory.
struct Agent {
    root: tempfile::TempDir,
    state: PathBuf,
    child: Child,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Agent {
    fn start(server: &Hostile) -> Agent {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("a/b/c/state");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let token = root.path().join("node.token");
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&token)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"rakkr_node_hostile"))
            .unwrap();
        let logs = tempfile::tempdir().unwrap();
        let stderr = logs.path().join("agent.log");
        let child = common::edgerec()
            .arg("agent")
            .arg("--state-dir")
            .arg(&state)
            .args(["--controller", &server.url(), "--node-id", "node_hostile"])
            .arg("--token-file")
            .arg(&token)
            .args(["--backend-override", "synth"])
            .env("TMPDIR", &tmp)
            .env("EDGEREC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Agent {
            root,
            state,
            child,
            stderr,
            _logs: logs,
        }
    }

    /// Still running, then stopped by SIGTERM; its log, checked for panics and for raw
    /// control characters.
    fn stop(mut self) -> (String, tempfile::TempDir, PathBuf) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the agent stays up through every hostile reply"
        );
        sigterm(&mut self.child, Duration::from_secs(6));
        let log = std::fs::read(&self.stderr).unwrap();
        let text = String::from_utf8_lossy(&log).into_owned();
        eprintln!("agent log:\n{text}");
        assert!(!text.contains("panicked"), "no panic");
        let raw: Vec<u8> = log
            .iter()
            .copied()
            .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
            .collect();
        assert!(raw.is_empty(), "raw control bytes in the log: {raw:?}");
        (text, self.root, self.state)
    }
}

/// Waits until `done` holds (checked every 100 ms), at most `within`.
fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn with(mut job: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    job.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_string(), value);
    job
}

/// What must come of a hostile job.
enum Expect {
    /// `/failed` for this id, once, with a reason naming the field.
    Failed { id: String, field: &'static str },
    /// No usable id: logged, skipped, never reported.
    Skipped,
}

struct Row {
    name: &'static str,
    job: Value,
    expect: Expect,
}

fn failed(id: &str, field: &'static str) -> Expect {
    Expect::Failed {
        id: id.to_string(),
        field,
    }
}

/// The job-level rows; `tag` makes the path-shaped ids unique to this run.
fn hostile_jobs(tag: &str) -> Vec<Row> {
    let base = |id: &str| good_job(id, 5.0);
    let deep = format!("../../../../../../../../../../tmp/{tag}-deep");
    let shallow = format!("../../{tag}-shallow");
    let abs = format!("/tmp/{tag}-abs");
    let ten_k = "j".repeat(10_000);
    let row = |name, job, expect| Row { name, job, expect };
    vec![
        row("id_dotdot_deep", base(&deep), failed(&deep, "id")),
        row("id_dotdot_shallow", base(&shallow), failed(&shallow, "id")),
        row("id_absolute", base(&abs), failed(&abs, "id")),
        row(
            "id_etc_passwd",
            base("/etc/passwd"),
            failed("/etc/passwd", "id"),
        ),
        row("id_dotdot_only", base(".."), Expect::Skipped),
        row("id_nul", base("job_\u{0}nul"), Expect::Skipped),
        row("id_newline_esc", base("job_\n\u{1b}[2J"), Expect::Skipped),
        row("id_10k_chars", base(&ten_k), Expect::Skipped),
        row("job_not_an_object", json!(7), Expect::Skipped),
        row(
            "recording_id_dotdot",
            with(
                base("job_h_rec_dotdot"),
                "/recordingId",
                json!(format!("../../{tag}-rec")),
            ),
            failed("job_h_rec_dotdot", "recordingId"),
        ),
        row(
            "recording_id_absolute",
            with(
                base("job_h_rec_abs"),
                "/recordingId",
                json!(format!("/tmp/{tag}-recabs")),
            ),
            failed("job_h_rec_abs", "recordingId"),
        ),
        row(
            "recording_id_nul",
            with(base("job_h_rec_nul"), "/recordingId", json!("rec_\u{0}")),
            failed("job_h_rec_nul", "recordingId"),
        ),
        row(
            "recording_id_10k",
            with(base("job_h_rec_10k"), "/recordingId", json!(ten_k)),
            failed("job_h_rec_10k", "recordingId"),
        ),
        row(
            "file_name_dotdot",
            with(
                base("job_h_file_dotdot"),
                "/command/outputFileName",
                json!(format!("../../../{tag}-file.wav")),
            ),
            failed("job_h_file_dotdot", "command.outputFileName"),
        ),
        row(
            "file_name_absolute",
            with(
                base("job_h_file_abs"),
                "/command/outputFileName",
                json!(format!("/tmp/{tag}-file.wav")),
            ),
            failed("job_h_file_abs", "command.outputFileName"),
        ),
        row(
            "group_id_dotdot",
            with(
                base("job_h_group"),
                "/command/captureGroupId",
                json!("../grp"),
            ),
            failed("job_h_group", "command.captureGroupId"),
        ),
        row(
            "device_10k",
            with(base("job_h_device"), "/command/captureDevice", json!(ten_k)),
            failed("job_h_device", "command.captureDevice"),
        ),
        row(
            "duration_1e300",
            with(
                base("job_h_dur_huge"),
                "/command/durationSeconds",
                json!(1e300),
            ),
            failed("job_h_dur_huge", "command.durationSeconds"),
        ),
        row(
            "duration_negative",
            with(base("job_h_dur_neg"), "/command/durationSeconds", json!(-5)),
            failed("job_h_dur_neg", "command.durationSeconds"),
        ),
        row(
            "rate_2_pow_32",
            with(
                base("job_h_rate"),
                "/command/captureSampleRate",
                json!(4_294_967_296u64),
            ),
            failed("job_h_rate", "command.captureSampleRate"),
        ),
        row(
            "channels_65535",
            with(
                base("job_h_channels"),
                "/command/captureChannels",
                json!(65_535),
            ),
            failed("job_h_channels", "command.captureChannels"),
        ),
    ]
}

/// Paths a hostile id would have reached had it been joined to the state directory.
fn escaped_paths(tag: &str, state: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["deep", "abs", "recabs"]
        .iter()
        .map(|s| PathBuf::from(format!("/tmp/{tag}-{s}")))
        .collect();
    for rel in [
        format!("../../{tag}-shallow"),
        format!("../../{tag}-rec"),
        format!("../../../{tag}-file.wav"),
        "../grp".to_string(),
    ] {
        out.push(state.join(&rel));
        out.push(state.join("x").join(&rel));
    }
    out.push(PathBuf::from(format!("/tmp/{tag}-file.wav")));
    out
}

/// Nothing under the root but the state directory (and what the test made); no job
/// directory named by anything but the agent's own ids.
fn assert_nothing_outside_state(root: &Path, state: &Path, tag: &str) {
    for entry in tree(root) {
        let ok = entry == "a"
            || entry == "a/b"
            || entry == "a/b/c"
            || entry.starts_with("a/b/c/state")
            || entry == "tmp"
            || entry == "node.token";
        assert!(ok, "{entry} was written outside the state directory");
    }
    assert!(
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing in TMPDIR"
    );
    for entry in std::fs::read_dir(state).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            assert!(
                // Besides job directories, the agent's own: wake-up sockets, live levels.
                name.starts_with("ctl-") || name == "hotplug" || name == "run",
                "job directory {name:?} is not an agent-made id"
            );
        }
    }
    for path in escaped_paths(tag, state) {
        assert!(!path.exists(), "{} exists", path.display());
    }
}

fn assert_heartbeats_kept_interval(server: &Hostile, job: &str, at_least: usize) -> Duration {
    let seen = server.seen();
    let beats = seen.heartbeats.get(job).cloned().unwrap_or_default();
    let (gap, n) = largest_gap(&beats);
    eprintln!("{job}: {n} heartbeats, largest gap {gap:?}");
    assert!(n >= at_least, "{job}: only {n} heartbeats");
    assert!(
        gap <= POLL + SLACK,
        "{job}: heartbeats {gap:?} apart while other calls hung (poll interval {POLL:?})"
    );
    gap
}

/// The fault table: one claim serves every hostile job; further claims serve malformed
/// JSON, a non-list, a 2 GB `Content-Length` over a short body, a 1-byte-per-second reply
/// and the hostile jobs again (each is still reported once); then a good job that must
/// still be claimed. A good job runs throughout.
#[test]
fn hostile_controller_fault_table() {
    let tag = format!("edgerec-hostile-{}", std::process::id());
    let rows = hostile_jobs(&tag);
    let group: Vec<Value> = rows.iter().map(|r| r.job.clone()).collect();
    let trickled = serde_json::to_vec(&json!({"data": [good_job("job_trickled", 3.0)]})).unwrap();
    let mut script = Script::default();
    script.claims.extend([
        Reply::Data(json!([good_job("job_good", 48.0)])),
        Reply::Data(Value::Array(group.clone())),
        Reply::Body(br#"{"data": [{"id": "job_malformed", "command": {"#.to_vec()),
        Reply::Data(json!("jobs")),
        Reply::LyingLength {
            declared: 2 * 1024 * 1024 * 1024,
            body: br#"{"data": [{"id": "job_lying""#.to_vec(),
        },
        Reply::Trickle {
            body: trickled,
            every: Duration::from_secs(1),
        },
        // The same hostile jobs again (a controller re-offers what it leased).
        Reply::Data(Value::Array(group)),
        Reply::Data(json!([good_job("job_after", 3.0)])),
    ]);
    let server = Hostile::start(script);
    let agent = Agent::start(&server);

    wait_for(Duration::from_secs(90), "job_after's heartbeats", || {
        server
            .seen()
            .heartbeats
            .get("job_after")
            .is_some_and(|b| !b.is_empty())
    });
    let reported = || {
        rows.iter()
            .filter(|r| matches!(r.expect, Expect::Failed { .. }))
            .count()
    };
    wait_for(Duration::from_secs(10), "every /failed", || {
        server.seen().failed.len() >= reported()
    });
    let gap = assert_heartbeats_kept_interval(&server, "job_good", 10);
    let (log, root, state) = agent.stop();

    let seen = server.seen();
    let group_served = seen
        .claims
        .iter()
        .find(|(_, i)| *i == Some(1))
        .map(|(t, _)| *t)
        .expect("the hostile group was served");
    eprintln!("row                      | outcome  | claim -> /failed");
    for row in &rows {
        match &row.expect {
            Expect::Failed { id, field } => {
                let reports: Vec<_> = seen.failed.iter().filter(|(f, ..)| f == id).collect();
                assert_eq!(reports.len(), 1, "{}: one /failed for {id:?}", row.name);
                let (_, reason, at) = reports[0];
                assert!(
                    reason.starts_with("invalid_job: ") && reason.contains(field),
                    "{}: reason {reason:?} names {field}",
                    row.name
                );
                eprintln!(
                    "{:<24} | failed   | {:?}",
                    row.name,
                    at.duration_since(group_served)
                );
                assert!(at.duration_since(group_served) < Duration::from_secs(5));
            }
            Expect::Skipped => eprintln!("{:<24} | skipped  | -", row.name),
        }
    }
    assert!(
        seen.claims.iter().any(|(_, i)| *i == Some(6)),
        "the hostile jobs were offered a second time"
    );
    assert_eq!(seen.failed.len(), reported(), "no other job was reported");
    for never in ["job_malformed", "job_lying", "job_trickled"] {
        assert!(
            !seen.heartbeats.contains_key(never),
            "{never} came from a broken reply and must not run"
        );
    }
    // Three kinds of claim failure within a minute: each logged when it first happens.
    for kind in [
        "controller claim: unexpected reply",
        "controller claim: controller unreachable",
        "controller claim: controller call timed out",
    ] {
        assert!(log.contains(kind), "the first {kind:?} is logged at once");
    }
    assert!(
        log.contains("without a usable id"),
        "a job without a usable id is logged"
    );
    assert_eq!(
        log.matches("job_\\0nul").count(),
        1,
        "the NUL is shown escaped, once though the job came twice"
    );
    eprintln!("job_good's largest heartbeat gap during the table: {gap:?}");
    assert_nothing_outside_state(root.path(), &state, &tag);
}

/// Node heartbeat, inventory and config answer at 1 byte per second, and another job's
/// heartbeats trickle too: a steady job's heartbeats keep their interval.
#[test]
fn slow_node_calls_and_another_jobs_slow_heartbeat_hold_no_heartbeat() {
    let trickle = |v: Value| Reply::Trickle {
        body: serde_json::to_vec(&json!({ "data": v })).unwrap(),
        every: Duration::from_secs(1),
    };
    let mut script = Script {
        node: Some(trickle(json!({}))),
        config: Some(trickle(
            json!({"recordingCapacity": {"maxConcurrentRecordings": 8}}),
        )),
        slow_heartbeats: vec!["job_slow".into()],
        ..Script::default()
    };
    script.claims.push_back(Reply::Data(json!([
        good_job("job_slow", 16.0),
        good_job("job_steady", 16.0)
    ])));
    let server = Hostile::start(script);
    let agent = Agent::start(&server);
    wait_for(Duration::from_secs(40), "job_steady's upload", || {
        server
            .seen()
            .uploads
            .iter()
            .any(|(rec, ..)| rec == "rec_job_steady")
    });
    let gap = assert_heartbeats_kept_interval(&server, "job_steady", 6);
    eprintln!("job_steady's largest heartbeat gap while node calls hung: {gap:?}");
    let (_, root, state) = agent.stop();
    assert_nothing_outside_state(root.path(), &state, "none");
}

/// The second claim is answered at 1 byte per second (held for the whole claim timeout)
/// while a job runs: its heartbeats keep their interval, and it is uploaded on time.
#[test]
fn a_claim_answered_at_1_byte_per_second_holds_no_heartbeat() {
    let mut script = Script::default();
    script.claims.extend([
        Reply::Data(json!([good_job("job_running", 20.0)])),
        Reply::Trickle {
            body: serde_json::to_vec(&json!({"data": [good_job("job_slowly_claimed", 3.0)]}))
                .unwrap(),
            every: Duration::from_secs(1),
        },
    ]);
    let server = Hostile::start(script);
    let agent = Agent::start(&server);
    wait_for(Duration::from_secs(45), "job_running's upload", || {
        server
            .seen()
            .uploads
            .iter()
            .any(|(rec, ..)| rec == "rec_job_running")
    });
    let gap = assert_heartbeats_kept_interval(&server, "job_running", 7);
    {
        let seen = server.seen();
        let slow_claim = seen.claims.iter().find(|(_, i)| *i == Some(1));
        assert!(
            slow_claim.is_some(),
            "the slow claim was made while the job ran"
        );
        assert!(!seen.heartbeats.contains_key("job_slowly_claimed"));
    }
    eprintln!("job_running's largest heartbeat gap while a claim hung: {gap:?}");
    let (_, root, state) = agent.stop();
    assert_upload_journaled(&server, &state, "job_running");
    assert_nothing_outside_state(root.path(), &state, "none");
}

/// The journal holds the upload as acknowledged, with the checksum the controller stored.
fn assert_upload_journaled(server: &Hostile, state: &Path, job: &str) {
    let rec = format!("rec_{job}");
    let stored = server
        .seen()
        .uploads
        .iter()
        .find(|u| u.0 == rec)
        .map(|u| u.2.clone())
        .expect("uploaded");
    let journal = edgerec::journal::Journal::open_read_only(&state.join("edgerec.db")).unwrap();
    let row = journal
        .job_by_controller_id(job)
        .unwrap()
        .expect("journaled");
    // The controller answered before the agent journaled its answer: allow it that time.
    wait_for(
        Duration::from_secs(10),
        "the upload's acknowledgement",
        || {
            journal
                .uploads(&row.id)
                .is_ok_and(|u| u.iter().any(|u| u.acknowledged_at_ms.is_some()))
        },
    );
    let uploads = journal.uploads(&row.id).unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert!(uploads[0].acknowledged_at_ms.is_some(), "{uploads:?}");
    assert_eq!(format!("sha256:{}", uploads[0].sha256), stored);
    // A WAV streamed from the segments: the view it was made from, relative to the job.
    assert_eq!(
        uploads[0].path,
        Path::new(edgerec::render::job::RENDER_FILE),
        "relative to the job"
    );
}

/// A finished job's upload is answered at 1 byte per second (held until the upload's read
/// timeout, then retried): a running job's heartbeats keep their interval meanwhile.
#[test]
fn a_slow_upload_holds_no_heartbeat() {
    let mut script = Script {
        slow_uploads: vec!["rec_job_short".into()],
        ..Script::default()
    };
    script.claims.push_back(Reply::Data(json!([
        good_job("job_short", 2.0),
        good_job("job_long", 22.0)
    ])));
    let server = Hostile::start(script);
    let agent = Agent::start(&server);
    wait_for(Duration::from_secs(45), "job_long's upload", || {
        server.seen().uploads.iter().any(|u| u.0 == "rec_job_long")
    });
    let gap = assert_heartbeats_kept_interval(&server, "job_long", 8);
    eprintln!("job_long's largest heartbeat gap while an upload hung: {gap:?}");
    let (_, root, state) = agent.stop();
    assert_upload_journaled(&server, &state, "job_long");
    assert_nothing_outside_state(root.path(), &state, "none");
}

/// The controller forgets a job it leased (every call about it answers 404): the agent
/// captures its window anyway (the network never stops capture), ends it in one terminal
/// state with the audio kept, stops calling about it, and claims the next job.
#[test]
fn a_job_the_controller_forgets_ends_once_and_the_next_is_claimed() {
    let mut script = Script {
        forgotten: vec!["job_forgotten".into()],
        ..Script::default()
    };
    script
        .claims
        .push_back(Reply::Data(json!([good_job("job_forgotten", 3.0)])));
    script
        .claims
        .push_back(Reply::Data(json!([good_job("job_after", 2.0)])));
    let server = Hostile::start(script);
    let agent = Agent::start(&server);
    let started = Instant::now();
    wait_for(Duration::from_secs(40), "job_after's upload", || {
        server.seen().uploads.iter().any(|u| u.0 == "rec_job_after")
    });
    eprintln!("next job delivered {:?} after start", started.elapsed());
    // Calls about the forgotten job stop: none in the last few seconds.
    std::thread::sleep(Duration::from_secs(4));
    let calls = |seen: &hostile::Seen| {
        seen.requests
            .iter()
            .filter(|r| r.contains("job_forgotten"))
            .count()
    };
    let before = calls(&server.seen());
    std::thread::sleep(Duration::from_secs(4));
    let after = calls(&server.seen());
    eprintln!("calls about the forgotten job: {before}, then {after}");
    assert_eq!(before, after, "the agent stopped calling about it");
    let (_, _root, state) = agent.stop();
    let journal = edgerec::journal::Journal::open_read_only(&state.join("edgerec.db")).unwrap();
    let row = journal
        .job_by_controller_id("job_forgotten")
        .unwrap()
        .expect("journaled");
    assert!(row.state.is_terminal(), "{row:?}");
    let kept = row.dir.join(edgerec::render::job::RENDER_FILE);
    assert!(
        kept.exists() && common::wav_frames(&common::delivered_wav(&row.dir)) > 0,
        "the audio stays in the local library: {}; the tree: {:#?}",
        kept.display(),
        tree(&state)
    );
}

/// The controller's clock runs 30 s ahead, then is put right: the box says so once each
/// way (`agent.system.clock_skew` and its recovery, one episode), `status` shows the skew
/// while it lasts, and the agent announced its start exactly once.
#[test]
fn a_skewed_controller_clock_is_one_event_pair_and_status_shows_it() {
    let server = Hostile::start(Script {
        clock_offset_s: 30,
        ..Script::default()
    });
    let agent = Agent::start(&server);
    let count = |kind: &str| {
        let seen = server.seen();
        let evs: Vec<Value> = seen
            .health_events
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect();
        evs
    };
    wait_for(Duration::from_secs(30), "the clock_skew event", || {
        !count("agent.system.clock_skew").is_empty()
    });
    let status = common::edgerec()
        .args(["status", "--state-dir"])
        .arg(&agent.state)
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        (screen.contains("; clock +29.") || screen.contains("; clock +30."))
            && screen.contains("WARN: check NTP"),
        "status shows the skew:\n{screen}"
    );
    server.script.lock().unwrap().clock_offset_s = 0;
    wait_for(Duration::from_secs(30), "the clock_skew recovery", || {
        !count("agent.system.clock_skew_recovered").is_empty()
    });
    // Two more heartbeats: nothing is repeated.
    std::thread::sleep(Duration::from_secs(11));
    let opened = count("agent.system.clock_skew");
    let recovered = count("agent.system.clock_skew_recovered");
    assert_eq!(
        (opened.len(), recovered.len()),
        (1, 1),
        "{opened:?} {recovered:?}"
    );
    assert_eq!(
        opened[0]["details"]["firstObservedAt"], recovered[0]["details"]["firstObservedAt"],
        "one episode"
    );
    let skew = opened[0]["details"]["skewSeconds"].as_i64().unwrap();
    assert!((29..=31).contains(&skew), "skew {skew}");
    assert_eq!(count("agent.started").len(), 1);
    let (log, ..) = agent.stop();
    assert_eq!(
        log.matches("node: the clock differs").count(),
        1,
        "one log line for the episode"
    );
}
