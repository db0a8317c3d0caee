//! The reference controller as the separate program it is (`edgerec-controller`, built by
//! the same workspace), for the demo and the integration tests: they run it the way they
//! would run any controller, and this crate links none of its code.
//!
//! Every wait is bounded: the `serving` line within [`START_TIMEOUT`], an operator command
//! within [`COMMAND_TIMEOUT`], and a stop within [`STOP_TIMEOUT`] of SIGTERM (then SIGKILL).

use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long `serve` may take to print where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an operator command (`node add`, `job show`, ...) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The program's file name, looked for next to the running executable.
pub const PROGRAM: &str = "edgerec-controller";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot run {program:?}: {source} (build the workspace: cargo build --workspace)")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("edgerec-controller {what}: {detail}")]
    Failed { what: String, detail: String },
    #[error("edgerec-controller {what}: no answer within {within:?}")]
    Timeout { what: String, within: Duration },
}

/// `edgerec-controller` next to `exe` (the running program, or a test's
/// `CARGO_BIN_EXE_edgerec`); `EDGEREC_CONTROLLER` overrides it.
pub fn program_next_to(exe: &Path) -> PathBuf {
    match std::env::var_os("EDGEREC_CONTROLLER") {
        Some(p) => PathBuf::from(p),
        None => exe.with_file_name(PROGRAM),
    }
}

/// A job as `edgerec-controller job show` prints it (the fields the callers read).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub recording_id: String,
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// ISO 8601, when claimed.
    #[serde(default)]
    pub started_at: Option<String>,
}

impl JobView {
    /// When the job was claimed, if it was (and the controller's stamp parses).
    pub fn started(&self) -> Option<std::time::SystemTime> {
        let t: jiff::Timestamp = self.started_at.as_deref()?.parse().ok()?;
        std::time::SystemTime::try_from(t).ok()
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// A recording as `job show` prints it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    #[serde(default)]
    pub cached: bool,
    #[serde(default)]
    pub cache_path: Option<String>,
    /// The supplementary raw rendition, when one was stored.
    #[serde(default)]
    pub raw_cache_path: Option<String>,
    /// The enhanced rendition, when the primary was one.
    #[serde(default)]
    pub enhanced_cache_path: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
}

#[derive(Deserialize)]
struct Shown {
    job: JobView,
    recording: Option<RecordingView>,
}

/// Operator commands on one controller database.
#[derive(Clone, Debug)]
pub struct Operator {
    pub program: PathBuf,
    pub db: PathBuf,
}

impl Operator {
    /// Runs `edgerec-controller <args> --db <db>`; its stdout on success.
    pub fn run(&self, args: &[&str]) -> Result<String, ControllerError> {
        let what = args.join(" ");
        let child = Command::new(&self.program)
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ControllerError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let out = wait_output(child, COMMAND_TIMEOUT, &what)?;
        if !out.status.success() {
            return Err(ControllerError::Failed {
                what,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Registers a node: its id and token.
    pub fn add_node(&self, name: &str) -> Result<(String, String), ControllerError> {
        let out = self.run(&["node", "add", name])?;
        let field = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        match (field("node:"), field("token:")) {
            (Some(id), Some(token)) => Ok((id, token)),
            _ => Err(ControllerError::Failed {
                what: "node add".into(),
                detail: format!("unexpected output {out:?}"),
            }),
        }
    }

    /// Queues a job (`job add` with `args` after the node); its id.
    pub fn add_job(&self, node: &str, args: &[&str]) -> Result<String, ControllerError> {
        let mut all = vec!["job", "add", "--node", node];
        all.extend_from_slice(args);
        Ok(self.run(&all)?.trim().to_string())
    }

    /// A job and its recording.
    pub fn show(&self, job: &str) -> Result<(JobView, Option<RecordingView>), ControllerError> {
        let out = self.run(&["job", "show", job])?;
        let shown: Shown = serde_json::from_str(&out).map_err(|e| ControllerError::Failed {
            what: format!("job show {job}"),
            detail: format!("{e}: {out:?}"),
        })?;
        Ok((shown.job, shown.recording))
    }
}

/// `edgerec-controller serve`, running.
#[derive(Debug)]
pub struct ServeProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/api/v1`.
    pub base_url: String,
    pub addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `serve --listen <listen> --db <db> --store <store> <extra>` and waits for
    /// its `serving <url>` line.
    pub fn start(
        op: &Operator,
        listen: SocketAddr,
        store: &Path,
        extra: &[&str],
    ) -> Result<ServeProcess, ControllerError> {
        let mut child = Command::new(&op.program)
            .arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--db")
            .arg(&op.db)
            .arg("--store")
            .arg(store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| ControllerError::Spawn {
                program: op.program.clone(),
                source,
            })?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix("serving ") {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                }
            }
        });
        let mut server = ServeProcess {
            child: Some(child),
            base_url: String::new(),
            addr: listen,
        };
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                server.stop();
                return Err(ControllerError::Timeout {
                    what: "serve".into(),
                    within: START_TIMEOUT,
                });
            }
        };
        let host = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .and_then(|h| h.parse().ok());
        let Some(addr) = host else {
            server.stop();
            return Err(ControllerError::Failed {
                what: "serve".into(),
                detail: format!("unexpected url {url:?}"),
            });
        };
        server.addr = addr;
        server.base_url = url;
        Ok(server)
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if let Err(e) = wait_output(child, STOP_TIMEOUT, "serve") {
            log::warn!("{e}; killed");
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for `child` to exit (collecting its piped output) for at most `within`, then
/// kills it.
fn wait_output(child: Child, within: Duration, what: &str) -> Result<Output, ControllerError> {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(ControllerError::Failed {
            what: what.into(),
            detail: e.to_string(),
        }),
        Err(_) => {
            // SAFETY: our own child, not yet reaped (the waiting thread still holds it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(2));
            Err(ControllerError::Timeout {
                what: what.into(),
                within,
            })
        }
    }
}
