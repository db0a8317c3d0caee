//! The agent when the controller misbehaves, and SIGTERM in every state: capture is never
//! stopped or delayed by the network, every call is bounded, teardown is bounded.

mod common;

use common::controller::*;
use common::*;
use edgerec::core::job::JobState;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A listener on the controller's port that accepts and never answers.
struct Blackhole {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    fn on(addr: std::net::SocketAddr) -> Blackhole {
        let listener = {
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                match TcpListener::bind(addr) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < until => {
                        eprintln!("blackhole bind: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("blackhole bind: {e}"),
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn); // never read, never answered
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Blackhole {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Down for 45 s, longer than the 30 s lease: capture loses nothing; on return the agent
/// learns the lease expired, keeps the recording flagged, and says so exactly once.
#[test]
fn controller_down_45_s_loses_no_frames_and_the_agent_learns_the_jobs_fate() {
    let _rt = realtime();
    let mut ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 55.0);
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    ctl.stop();
    std::thread::sleep(Duration::from_secs(45));
    ctl.restart();
    let until = Instant::now() + Duration::from_secs(40);
    let row = loop {
        let row = agent_job(state.path(), &job.id);
        if row.state.is_terminal() {
            break row;
        }
        assert!(Instant::now() < until, "agent job still {}", row.state);
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(ctl.job(&job.id).status.to_string(), "failed");
    assert_eq!(
        ctl.job(&job.id).failure_reason.as_deref(),
        Some("lease_expired")
    );
    assert_eq!(row.state, JobState::Failed);
    let dir = agent_job_dir(state.path(), &job.id);
    let tl = timeline(&dir);
    assert_eq!(tl["frames"].as_u64().unwrap(), 55 * 48_000, "0 lost frames");
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["gap_frames"].is_null()),
        "{tl:#}"
    );
    assert_eq!(
        wav_frames(&delivered_wav(&dir)),
        55 * 48_000,
        "kept locally"
    );
    std::thread::sleep(Duration::from_secs(3)); // let the outbox deliver
    let events = ctl.health_events();
    eprintln!("health events on the server: {events:#?}");
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|e| e["details"]["localEventId"].as_str().map(String::from))
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a health event was delivered twice");
    assert!(!events.is_empty(), "the kept recording is reported");
    sigterm(&mut agent, Duration::from_secs(5));
}

/// A controller that accepts and never answers: capture unaffected, calls time out and
/// back off, SIGTERM still exits in time; when it answers again the job completes.
#[test]
fn a_blackholed_controller_never_delays_capture_and_sigterm_still_exits() {
    let _rt = realtime();
    let mut ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job("sine:440", 8.0);
    let mut agent = ctl
        .role("agent", state.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
    ctl.stop();
    let hole = Blackhole::on(ctl.addr);
    std::thread::sleep(Duration::from_secs(12)); // capture ends, the upload hangs
    let dir = agent_job_dir(state.path(), &job.id);
    let tl = timeline(&dir);
    assert_eq!(
        tl["frames"].as_u64().unwrap(),
        8 * 48_000,
        "capture finished on time"
    );
    let took = sigterm(&mut agent, Duration::from_secs(5));
    eprintln!(
        "SIGTERM with the controller blackholed: exited in {} ms",
        took.as_millis()
    );
    let mut log = String::new();
    use std::io::Read;
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("will retry"),
        "backoff visible in the log:\n{log}"
    );
    drop(hole);
    // The controller answers again: a new agent delivers the recording.
    ctl.restart();
    let mut agent = ctl.spawn_agent(state.path());
    let done = ctl.wait_status(&job.id, None, Duration::from_secs(30));
    assert_eq!(done.status.to_string(), "completed");
    sigterm(&mut agent, Duration::from_secs(5));
}

#[test]
fn sigterm_exits_within_5_s_idle_capturing_and_with_a_stalled_device() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    // Idle: nothing queued.
    let idle_state = tempfile::tempdir().unwrap();
    let mut agent = ctl.spawn_agent(idle_state.path());
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!(
        "idle: {} ms",
        sigterm(&mut agent, Duration::from_secs(5)).as_millis()
    );

    for (what, device) in [
        ("capturing", "sine:440"),
        ("device stalled", "sine:440,stall=1s+120s"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let job = ctl.add_job(device, 60.0);
        let mut agent = ctl.spawn_agent(state.path());
        ctl.wait_status(&job.id, Some("running"), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(2500));
        let took = sigterm(&mut agent, Duration::from_secs(5));
        eprintln!("{what}: exited {} ms after SIGTERM", took.as_millis());
        // The segments are valid WAVs, closed for the restart that resumes the job.
        let dir = agent_job_dir(state.path(), &job.id);
        let files = segment_files(&dir);
        assert!(!files.is_empty(), "{what}: no segment");
        for f in files {
            assert!(wav_frames(&f) > 0, "{what}: {}", f.display());
        }
        ctl.cancel_job(&job.id);
    }
}
