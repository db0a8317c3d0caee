//! The reference controller as its own process (`edgerec-controller`, built next to
//! `edgerec` by `cargo build --workspace`; real HTTP on 127.0.0.1), its operator commands
//! on the same database, and the agent as real `edgerec` processes talking to it.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use edgerec::roles::reference_controller::{JobView, RecordingView};
use edgerec::roles::reference_controller::{Operator, ServeProcess, program_next_to};

/// The `edgerec-controller` program of this build.
pub fn controller_program() -> PathBuf {
    program_next_to(Path::new(env!("CARGO_BIN_EXE_edgerec")))
}

pub struct Ctl {
    pub server: Option<ServeProcess>,
    pub admin: Operator,
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
        let admin = Operator {
            program: controller_program(),
            db: db.clone(),
        };
        let (node, token) = admin.add_node("test-box").unwrap();
        let server = Self::serve(&admin, "127.0.0.1:0".parse().unwrap(), &store, lease).unwrap();
        let addr = server.addr;
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

    fn serve(
        admin: &Operator,
        addr: SocketAddr,
        store: &Path,
        lease: Duration,
    ) -> Result<ServeProcess, edgerec::roles::reference_controller::ControllerError> {
        let lease = format!("{}ms", lease.as_millis());
        let extra = ["--lease", &lease, "--lease-runner-interval", "500ms"];
        ServeProcess::start(admin, addr, store, &extra)
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Takes the controller away (connection refused).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    /// Brings it back on the same port, same database.
    pub fn restart(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match Self::serve(&self.admin, self.addr, &self.store, self.lease) {
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

    pub fn add_job(&self, device: &str, seconds: f64) -> JobView {
        self.add_job_with(device, seconds, &[])
    }

    /// `job add` with more flags (`--channels 4`, `--select 1,2`, `--group g`, ...).
    pub fn add_job_with(&self, device: &str, seconds: f64, extra: &[&str]) -> JobView {
        let duration = format!("{}ms", (seconds * 1000.0).round() as u64);
        let mut args = vec!["--device", device, "--duration", &duration];
        args.extend_from_slice(extra);
        let id = self.admin.add_job(&self.node, &args).unwrap();
        self.job(&id)
    }

    /// A capture group `name` of two jobs on one 4-channel `device`: channels 1,2 and 3,4.
    pub fn add_group(&self, device: &str, seconds: f64, name: &str) -> Vec<JobView> {
        (["1,2", "3,4"].iter())
            .map(|selection| {
                let args = ["--channels", "4", "--select", selection, "--group", name];
                self.add_job_with(device, seconds, &args)
            })
            .collect()
    }

    pub fn job(&self, id: &str) -> JobView {
        self.admin.show(id).unwrap().0
    }

    /// The recording of job `id`.
    pub fn recording(&self, id: &str) -> RecordingView {
        self.admin
            .show(id)
            .unwrap()
            .1
            .expect("every job has a recording")
    }

    pub fn stop_job(&self, id: &str) {
        self.admin.run(&["job", "stop", id]).unwrap();
    }

    pub fn cancel_job(&self, id: &str) {
        self.admin.run(&["job", "cancel", id]).unwrap();
    }

    pub fn fail_job(&self, id: &str, reason: &str) {
        self.admin
            .run(&["job", "fail", id, "--reason", reason])
            .unwrap();
    }

    /// Waits until the job's status is `want` (or any terminal one when `want` is None).
    pub fn wait_status(&self, id: &str, want: Option<&str>, within: Duration) -> JobView {
        let until = Instant::now() + within;
        loop {
            let job = self.job(id);
            let done = match want {
                Some(w) => job.status == w,
                None => job.is_terminal(),
            };
            if done {
                return job;
            }
            assert!(
                Instant::now() < until,
                "job {id} is {}, waited {within:?} for {want:?}",
                job.status
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's command line for this controller (`role` = agent, sync).
    pub fn role(&self, role: &str, state_dir: &Path) -> Command {
        self.role_at(role, state_dir, &self.url())
    }

    /// The same, talking to the controller at `url` (a proxy in front of it).
    pub fn role_at(&self, role: &str, state_dir: &Path, url: &str) -> Command {
        let mut cmd = self.real_device_role(role, state_dir, url);
        cmd.args(["--backend-override", "synth"]);
        cmd
    }

    /// The role capturing from the real ALSA PCMs that `alsa_config` (a fakemic
    /// `ALSA_CONFIG_PATH`) defines, as the job names them: no synth override.
    pub fn alsa_role(&self, role: &str, state_dir: &Path, alsa_config: &str) -> Command {
        let mut cmd = self.real_device_role(role, state_dir, &self.url());
        cmd.env("ALSA_CONFIG_PATH", alsa_config);
        cmd
    }

    /// [`Ctl::alsa_role`] talking to the controller at `url` (a proxy in front of it).
    pub fn alsa_role_at(&self, role: &str, state_dir: &Path, alsa: &str, url: &str) -> Command {
        let mut cmd = self.real_device_role(role, state_dir, url);
        cmd.env("ALSA_CONFIG_PATH", alsa);
        cmd
    }

    fn real_device_role(&self, role: &str, state_dir: &Path, url: &str) -> Command {
        let mut cmd = super::edgerec();
        cmd.arg(role)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--controller", url, "--node-id", &self.node, "--token-file"])
            .arg(&self.token_file)
            .stdout(Stdio::null());
        cmd
    }

    pub fn spawn_agent(&self, state_dir: &Path) -> Child {
        self.role("agent", state_dir).spawn().unwrap()
    }

    pub fn health_events(&self) -> Vec<serde_json::Value> {
        let out = self.admin.run(&["events", &self.node]).unwrap();
        serde_json::from_str(&out).unwrap()
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
