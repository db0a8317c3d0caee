//! `edgerec demo`: the whole product in one command, on loopback. Starts the reference
//! controller, registers a node, queues a 20 s job on the synth backend with an injected
//! device drop-out, runs the agent (capture + sync roles) until the controller has the
//! recording, and reports what was delivered: path, duration, the controller's checksum,
//! and the agent's timeline.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::StopFlag;
use crate::controller::client::ClientConfig;
use crate::controller::server::{Admin, NewJobSpec, Server, ServerConfig};
use crate::roles::capture::CaptureRoleSettings;
use crate::roles::finalize::TIMELINE_FILE;
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
    #[error("controller: {0}")]
    Server(#[from] crate::controller::server::ServerError),
    #[error("controller admin: {0}")]
    Admin(#[from] crate::controller::server::AdminError),
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

pub fn run(dir: &Path, job_seconds: f64) -> Result<DemoReport, DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let db = dir.join("controller.db");
    let store = dir.join("controller-store");
    let state = dir.join("agent");
    let server = Server::start(ServerConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        db.clone(),
        store.clone(),
    ))?;
    let base_url = server.base_url();
    log::info!("demo: reference controller at {base_url}");

    let admin = Admin::open(&db)?;
    let (node_id, token) = admin.add_node("demo-box")?;
    let token_file = dir.join("node.token");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .map_err(io(&token_file))?;
    f.write_all(token.as_bytes()).map_err(io(&token_file))?;
    let mut spec = NewJobSpec::new(&node_id, DEMO_DEVICE, job_seconds);
    spec.output_file_name = Some("demo.wav".into());
    let job = admin.add_job(&spec)?;
    log::info!("demo: queued {} ({job_seconds} s on {DEMO_DEVICE})", job.id);

    let mut capture = CaptureRoleSettings::new(state.clone());
    capture.run.stall_guard = Duration::from_secs(3);
    let mut sync = SyncSettings::new(
        state.clone(),
        ClientConfig::new(base_url.clone(), node_id, token_file),
    );
    sync.backend_override = Some("synth".into());
    sync.claim_every = Duration::from_secs(1);
    let shutdown = StopFlag::new();
    let agent_stop = shutdown.clone();
    let agent = std::thread::spawn(move || crate::roles::agent::run(capture, sync, &agent_stop));

    let limit = Duration::from_secs_f64(job_seconds + 60.0);
    let until = Instant::now() + limit;
    let finished = loop {
        let current = admin.job(&job.id)?;
        if current.as_ref().is_some_and(|j| j.status.is_terminal()) {
            break current;
        }
        if Instant::now() >= until || agent.is_finished() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // Let the agent journal the upload's answer before stopping it.
    std::thread::sleep(Duration::from_millis(600));
    shutdown.stop();
    let agent_result = agent.join().unwrap_or(Ok(()));
    server.shutdown();
    agent_result?;
    let Some(finished) = finished else {
        return Err(DemoError::Timeout(limit));
    };

    let recording = admin.recording(&finished.recording_id)?;
    // The agent names its job directories itself; the journal knows which is this job's.
    let timeline =
        crate::journal::Journal::open_read_only(&crate::roles::finalize::journal_path(&state))
            .ok()
            .and_then(|j| j.job_by_controller_id(&finished.id).ok().flatten())
            .and_then(|row| std::fs::read_to_string(row.dir.join(TIMELINE_FILE)).ok())
            .and_then(|t| serde_json::from_str(&t).ok());
    Ok(DemoReport {
        controller_url: base_url,
        job_id: finished.id.clone(),
        job_status: finished.status.to_string(),
        delivered: recording
            .as_ref()
            .and_then(|r| r.cache_path.as_ref())
            .map(|p| store.join(p)),
        duration_seconds: recording.as_ref().and_then(|r| r.duration_seconds),
        checksum: recording.and_then(|r| r.checksum),
        timeline,
    })
}
