//! `edgerec demo`: the whole product in one command, on loopback. Starts the reference
//! controller (`edgerec-controller`, as its own process), registers a node, queues a 20 s job on the synth backend with an injected
//! device drop-out, runs the agent (capture + sync roles) until the controller has the
//! recording, and reports what was delivered: path, duration, the controller's checksum,
//! and the agent's timeline.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::StopFlag;
use crate::controller::client::ClientConfig;
use crate::roles::capture::CaptureRoleSettings;
use crate::roles::finalize::TIMELINE_FILE;
use crate::roles::reference_controller::{
    ControllerError, JobView, Operator, RecordingView, ServeProcess,
};
use crate::roles::sync::SyncSettings;

/// What the demo delivered.
#[derive(Debug)]
pub struct DemoReport {
    pub controller_url: String,
    pub job_id: String,
    pub job_status: String,
    /// The recording as the controller stored it.
    pub delivered: Option<PathBuf>,
    pub duration_seconds: Option<f64>,
    /// `sha256:<hex>`, as the controller computed it.
    pub checksum: Option<String>,
    /// The agent's timeline for the job.
    pub timeline: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent: {0}")]
    Agent(#[from] crate::roles::agent::AgentError),
    #[error("the job did not finish within {0:?}")]
    Timeout(Duration),
}

/// The job the demo queues: 20 s of a 440 Hz tone whose "device" drops out for 1.5 s.
pub const DEMO_DEVICE: &str = "sine:440,dropout=8s+1500ms";

/// Runs the demo with the reference controller at `controller` (the program).
pub fn run(dir: &Path, job_seconds: f64, controller: &Path) -> Result<DemoReport, DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let db = dir.join("controller.db");
    let store = dir.join("controller-store");
    let state = dir.join("agent");
    let admin = Operator {
        program: controller.to_path_buf(),
        db: db.clone(),
    };
    let (node_id, token) = admin.add_node("demo-box")?;
    let mut server =
        ServeProcess::start(&admin, "127.0.0.1:0".parse().expect("literal"), &store, &[])?;
    let base_url = server.base_url.clone();
    log::info!("demo: reference controller at {base_url}");

    let token_file = dir.join("node.token");
    write_token(&token_file, &token)?;
    let seconds = format!("{}ms", (job_seconds * 1000.0).round() as u64);
    let job_id = admin.add_job(
        &node_id,
        &[
            "--device",
            DEMO_DEVICE,
            "--duration",
            &seconds,
            "--file-name",
            "demo.wav",
        ],
    )?;
    log::info!("demo: queued {job_id} ({job_seconds} s on {DEMO_DEVICE})");

    let (capture, sync) = agent_settings(
        &state,
        ClientConfig::new(base_url.clone(), node_id, token_file),
    );
    let shutdown = StopFlag::new();
    let agent_stop = shutdown.clone();
    let agent = std::thread::spawn(move || crate::roles::agent::run(capture, sync, &agent_stop));

    let limit = Duration::from_secs_f64(job_seconds + 60.0);
    let finished = wait_until_ended(&admin, &job_id, limit, &agent);
    // Let the agent journal the upload's answer before stopping it.
    std::thread::sleep(Duration::from_millis(600));
    shutdown.stop();
    let agent_result = agent.join().unwrap_or(Ok(()));
    server.stop();
    agent_result?;
    let Some((finished, recording)) = finished? else {
        return Err(DemoError::Timeout(limit));
    };

    let timeline = agent_timeline(&state, &finished.id);
    Ok(DemoReport {
        controller_url: base_url,
        job_id: finished.id.clone(),
        job_status: finished.status.clone(),
        delivered: recording
            .as_ref()
            .and_then(|r| r.cache_path.as_ref())
            .map(|p| store.join(p)),
        duration_seconds: recording.as_ref().and_then(|r| r.duration_seconds),
        checksum: recording.and_then(|r| r.checksum),
        timeline,
    })
}

/// Writes the node token where the sync role reads it, readable by its owner only.
fn write_token(token_file: &Path, token: &str) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: token_file.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(token_file)
        .map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)
}

/// The agent's roles for the demo: synthetic capture, a short stall guard, quick claims.
fn agent_settings(state: &Path, client: ClientConfig) -> (CaptureRoleSettings, SyncSettings) {
    let mut capture = CaptureRoleSettings::new(state.to_path_buf());
    capture.run.stall_guard = Duration::from_secs(3);
    let mut sync = SyncSettings::new(state.to_path_buf(), client);
    sync.backend_override = Some("synth".into());
    sync.claim_every = Duration::from_secs(1);
    (capture, sync)
}

/// The agent's timeline file for the controller's job `controller_id`. The agent names its
/// job directories itself; the journal knows which is this job's.
fn agent_timeline(state: &Path, controller_id: &str) -> Option<serde_json::Value> {
    crate::journal::Journal::open_read_only(&crate::roles::finalize::journal_path(state))
        .ok()
        .and_then(|j| j.job_by_controller_id(controller_id).ok().flatten())
        .and_then(|row| std::fs::read_to_string(row.dir.join(TIMELINE_FILE)).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Polls the controller (every 250 ms, for at most `limit`) until the job has ended;
/// `None` if it did not, or if the agent stopped first.
fn wait_until_ended<T>(
    admin: &Operator,
    job_id: &str,
    limit: Duration,
    agent: &std::thread::JoinHandle<T>,
) -> Result<Option<(JobView, Option<RecordingView>)>, ControllerError> {
    let until = Instant::now() + limit;
    loop {
        let current = admin.show(job_id)?;
        if current.0.is_terminal() {
            return Ok(Some(current));
        }
        if Instant::now() >= until || agent.is_finished() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
