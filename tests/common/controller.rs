//! The reference controller in the test process (real HTTP on 127.0.0.1), and the agent
//! as real `edgerec` processes talking to it.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgerec::controller::server::{Admin, JobSummary, NewJobSpec, Server, ServerConfig};

pub struct Ctl {
    pub server: Option<Server>,
    pub admin: Admin,
    pub node: String,
    pub token_file: PathBuf,
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub store: PathBuf,
    pub lease: Duration,
    pub dir: tempfile::TempDir,
}

impl Ctl {
    pub fn start(lease: Duration) -> Ctl {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("controller.db");
        let store = dir.path().join("store");
        let server = Self::serve("127.0.0.1:0".parse().unwrap(), &db, &store, lease);
        let addr = server.addr();
        let admin = Admin::open(&db).unwrap().with_lease(lease);
        let (node, token) = admin.add_node("test-box").unwrap();
        let token_file = dir.path().join("node.token");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap();
        f.write_all(token.as_bytes()).unwrap();
        Ctl {
            server: Some(server),
            admin,
            node,
            token_file,
            addr,
            db,
            store,
            lease,
            dir,
        }
    }

    fn serve(addr: SocketAddr, db: &Path, store: &Path, lease: Duration) -> Server {
        let mut cfg = ServerConfig::new(addr, db.to_path_buf(), store.to_path_buf());
        cfg.lease = lease;
        cfg.lease_runner_interval = Duration::from_millis(500);
        Server::start(cfg).unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Takes the controller away (connection refused).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }

    /// Brings it back on the same port, same database.
    pub fn restart(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let mut cfg = ServerConfig::new(self.addr, self.db.clone(), self.store.clone());
            cfg.lease = self.lease;
            cfg.lease_runner_interval = Duration::from_millis(500);
            match Server::start(cfg) {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                Err(e) if Instant::now() < until => {
                    eprintln!("restart: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("controller restart: {e}"),
            }
        }
    }

    pub fn add_job(&self, device: &str, seconds: f64) -> JobSummary {
        self.add_job_spec(NewJobSpec::new(&self.node, device, seconds))
    }

    pub fn add_job_spec(&self, spec: NewJobSpec) -> JobSummary {
        self.admin.add_job(&spec).unwrap()
    }

    pub fn job(&self, id: &str) -> JobSummary {
        self.admin.job(id).unwrap().unwrap()
    }

    /// Waits until the job's status is `want` (or any terminal one when `want` is None).
    pub fn wait_status(&self, id: &str, want: Option<&str>, within: Duration) -> JobSummary {
        let until = Instant::now() + within;
        loop {
            let job = self.job(id);
            let status = job.status.to_string();
            let done = match want {
                Some(w) => status == w,
                None => job.status.is_terminal(),
            };
            if done {
                return job;
            }
            assert!(
                Instant::now() < until,
                "job {id} is {status}, waited {within:?} for {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's command line for this controller (`role` = agent, sync).
    pub fn role(&self, role: &str, state_dir: &Path) -> Command {
        let mut cmd = super::edgerec();
        cmd.arg(role)
            .arg("--state-dir")
            .arg(state_dir)
            .args([
                "--controller",
                &self.url(),
                "--node-id",
                &self.node,
                "--token-file",
            ])
            .arg(&self.token_file)
            .args(["--backend-override", "synth"])
            .stdout(Stdio::null());
        cmd
    }

    pub fn spawn_agent(&self, state_dir: &Path) -> Child {
        self.role("agent", state_dir).spawn().unwrap()
    }

    pub fn health_events(&self) -> Vec<serde_json::Value> {
        self.admin.health_events(&self.node).unwrap()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, then how long the process took to exit (panics past `deadline`).
pub fn sigterm(child: &mut Child, deadline: Duration) -> Duration {
    let sent = Instant::now();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        if child.try_wait().unwrap().is_some() {
            return sent.elapsed();
        }
        assert!(
            sent.elapsed() < deadline,
            "no exit within {deadline:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The agent-side job directory for a controller job: named by the agent's own local id,
/// found through the journal (a controller id is never a path).
pub fn agent_job_dir(state_dir: &Path, job_id: &str) -> PathBuf {
    let dir = agent_job(state_dir, job_id).dir;
    if dir.is_relative() {
        state_dir.join(dir)
    } else {
        dir
    }
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let digest = sha2::Sha256::digest(&bytes);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The agent journal's view of a controller job, by the controller's job id.
pub fn agent_job(state_dir: &Path, job_id: &str) -> edgerec::journal::JobRow {
    let journal = edgerec::journal::Journal::open_read_only(&state_dir.join("edgerec.db")).unwrap();
    journal
        .job_by_controller_id(job_id)
        .unwrap()
        .unwrap_or_else(|| panic!("no agent job for controller job {job_id}"))
}
