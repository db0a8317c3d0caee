//! `edgerec-controller`: the reference controller's server and operator commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edgerec_controller::{
    Admin, AdminError, JobSummary, NewJobSpec, Server, ServerConfig, StoppedUpload,
};

/// Exit codes, one per kind of failure an operator must handle differently (the same
/// numbers `edgerec controller` used before it became this program).
mod exit {
    pub const FAILURE: u8 = 1;
    pub const BAD_CONFIG: u8 = 3;
    /// No such node or job.
    pub const NOT_FOUND: u8 = 9;
    /// The job is in a state that refuses the operation.
    pub const REFUSED: u8 = 10;
}

type Failure = (u8, String);

#[derive(Parser)]
#[command(
    name = "edgerec-controller",
    version,
    about = "The reference controller for edgerec nodes (the Rakkr recorder-node API)"
)]
struct Cli {
    #[command(subcommand)]
    command: ControllerCommand,
}

fn main() -> ExitCode {
    let level = std::env::var("EDGEREC_LOG").unwrap_or_else(|_| "info".into());
    env_logger::Builder::new()
        .parse_filters(&level)
        .format_target(false)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("edgerec-controller: error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit::FAILURE, format!("cannot wait for signals: {e}")))?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
    .map_err(|e| (exit::FAILURE, format!("cannot wait for signals: {e}")))
}

#[derive(Subcommand)]
enum ControllerCommand {
    /// Serve the recorder-node API (and nothing else) on --listen.
    Serve(ServeArgs),
    /// Nodes (recording boxes).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Recording jobs.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Health events a node reported.
    Events {
        #[arg(long)]
        db: PathBuf,
        node: String,
    },
    /// A node's kept live-listen chunks: each written to --out as <seq>.wav, listed as JSON.
    Listen {
        #[arg(long)]
        db: PathBuf,
        node: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Register a node; prints its id and its token (shown once).
    Add {
        #[arg(long)]
        db: PathBuf,
        name: String,
    },
    List {
        #[arg(long)]
        db: PathBuf,
    },
    /// A node as the heartbeat reply shows it (its last heartbeat, its interfaces), JSON.
    Show {
        #[arg(long)]
        db: PathBuf,
        node: String,
    },
    /// Issue a single-use bootstrap token for `edgerec enroll` on the box (printed once).
    BootstrapToken {
        #[arg(long)]
        db: PathBuf,
        node: String,
        /// How long the token may be used (at most 24h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Assign a channel-map template to the node or one of its interfaces; prints the
    /// assignment id.
    AssignMap {
        #[arg(long)]
        db: PathBuf,
        node: String,
        /// `interface` or `node`.
        #[arg(long)]
        target_type: String,
        /// The interface id jobs name (`captureInterfaceId`, or the device); the node's
        /// id for `node`.
        #[arg(long)]
        target_id: String,
        /// The template: `{"name", "channelMode", "entries": [...]}`.
        #[arg(long)]
        template_json: String,
    },
    /// Set the node config's monitorEnhancement: enhanced live-listen chunks requested
    /// (`--off` leaves it out of the config).
    SetMonitorEnhancement {
        #[arg(long)]
        db: PathBuf,
        node: String,
        /// rnnoise or deepfilternet3 (Rakkr's names; the agent denoises with RNNoise).
        #[arg(long, default_value = "rnnoise")]
        engine: String,
        /// Send `requested: false` instead of true.
        #[arg(long)]
        not_requested: bool,
        #[arg(long)]
        off: bool,
    },
    /// Set the node config's recorderCachePolicies (a JSON list).
    SetCachePolicies {
        #[arg(long)]
        db: PathBuf,
        node: String,
        policies_json: String,
    },
    /// How many jobs the node may record at once.
    SetCapacity {
        #[arg(long)]
        db: PathBuf,
        node: String,
        capacity: u32,
    },
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum JobCommand {
    /// Queue a recording job for a node.
    Add {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(long)]
        device: String,
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "S16_LE")]
        format: String,
        #[arg(long, default_value_t = 48_000)]
        rate: u32,
        #[arg(long, default_value_t = 2)]
        channels: u16,
        /// 1-based channels to keep, e.g. 1,2.
        #[arg(long, value_delimiter = ',')]
        select: Option<Vec<u16>>,
        /// Capture group: jobs sharing it are claimed together.
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        file_name: Option<String>,
        /// Output codec: wav, flac or mp3.
        #[arg(long, default_value = "wav")]
        codec: String,
        /// `outputBitrateKbps` (MP3: CBR rate, or the VBR preset nearest it).
        #[arg(long)]
        bitrate: Option<u32>,
        /// `outputVbr`.
        #[arg(long)]
        vbr: bool,
        /// More command fields as a JSON object (`channelMap`, `chunkSeconds`, ...).
        #[arg(long)]
        command_json: Option<String>,
        /// Ask for the enhanced rendition with Rakkr's default chain (RNNoise, 80 Hz
        /// high-pass, -16 LUFS), uploaded as rendition=enhanced.
        #[arg(long)]
        enhance: bool,
        /// The enhancement object as Rakkr's recording profile holds it, e.g.
        /// '{"highpass": {"hz": 120}, "gate": {"enabled": true, "thresholdDb": -45}}'
        /// (implies --enhance; absent fields take Rakkr's defaults).
        #[arg(long)]
        enhancement: Option<String>,
        /// keepRaw false: upload the enhanced rendition only (default: the raw one too).
        #[arg(long)]
        no_keep_raw: bool,
    },
    /// Ask the node to stop a job (it uploads what it captured).
    Stop {
        #[arg(long)]
        db: PathBuf,
        job: String,
    },
    Cancel {
        #[arg(long)]
        db: PathBuf,
        job: String,
    },
    Fail {
        #[arg(long)]
        db: PathBuf,
        job: String,
        #[arg(long, default_value = "operator_failed")]
        reason: String,
    },
    List {
        #[arg(long)]
        db: PathBuf,
    },
    /// A job and its recording.
    Show {
        #[arg(long)]
        db: PathBuf,
        job: String,
    },
}

fn admin(db: &Path) -> Result<Admin, Failure> {
    if !db.exists() {
        return Err((
            exit::BAD_CONFIG,
            format!("no controller database at {}", db.display()),
        ));
    }
    Admin::open(db).map_err(admin_failure)
}

fn admin_failure(e: AdminError) -> Failure {
    let code = match e {
        AdminError::NoSuchNode(_) | AdminError::NoSuchJob(_) => exit::NOT_FOUND,
        AdminError::WrongState { .. } | AdminError::Invalid(_) => exit::REFUSED,
        _ => exit::FAILURE,
    };
    (code, e.to_string())
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `serve`'s flags.
#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    store: PathBuf,
    /// Job lease length.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// What a partial uploaded for a stopped job does: completes (Rakkr) or keeps-stop-requested.
    #[arg(long, default_value = "completes")]
    stopped_upload: String,
    /// How often leases are expired (besides before each job call).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_runner_interval: Duration,
    /// Keep connections alive between requests (HTTP/1.1's default, as most servers do);
    /// without it each connection carries one request (what the test proxy expects).
    #[arg(long)]
    keep_alive: bool,
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut cfg = ServerConfig::new(args.listen, args.db, args.store);
    cfg.lease = args.lease;
    cfg.lease_runner_interval = args.lease_runner_interval;
    cfg.keep_alive = args.keep_alive;
    cfg.stopped_upload = match args.stopped_upload.as_str() {
        "completes" => StoppedUpload::Completes,
        "keeps-stop-requested" => StoppedUpload::KeepsStopRequested,
        other => {
            return Err((
                exit::BAD_CONFIG,
                format!("--stopped-upload {other:?}: completes or keeps-stop-requested"),
            ));
        }
    };
    let server = Server::start(cfg).map_err(|e| (exit::BAD_CONFIG, e.to_string()))?;
    // Tests and the demo read this line for the port.
    println!("serving {}", server.base_url());
    let waited = wait_for_signal();
    server.shutdown();
    waited
}

fn run(command: ControllerCommand) -> Result<(), Failure> {
    match command {
        ControllerCommand::Serve(args) => serve(args),
        ControllerCommand::Node { command } => match command {
            NodeCommand::Add { db, name } => {
                let (id, token) = Admin::open(&db)
                    .map_err(admin_failure)?
                    .add_node(&name)
                    .map_err(admin_failure)?;
                println!(
                    "node:  {id}\ntoken: {token}\n(store the token in a file readable only by edgerec: chmod 600)"
                );
                Ok(())
            }
            NodeCommand::List { db } => {
                for node in admin(&db)?.list_nodes().map_err(admin_failure)? {
                    println!("{node:?}");
                }
                Ok(())
            }
            NodeCommand::Show { db, node } => {
                let found = admin(&db)?.node(&node).map_err(admin_failure)?;
                print_json(&found.ok_or((exit::NOT_FOUND, format!("no node {node}")))?);
                Ok(())
            }
            NodeCommand::BootstrapToken { db, node, ttl } => {
                let token = admin(&db)?
                    .bootstrap_token(&node, ttl)
                    .map_err(admin_failure)?;
                println!("{token}");
                Ok(())
            }
            NodeCommand::AssignMap {
                db,
                node,
                target_type,
                target_id,
                template_json,
            } => {
                let template = serde_json::from_str(&template_json)
                    .map_err(|e| (exit::BAD_CONFIG, format!("--template-json: {e}")))?;
                let id = admin(&db)?
                    .assign_channel_map(&node, &target_type, &target_id, &template)
                    .map_err(admin_failure)?;
                println!("{id}");
                Ok(())
            }
            NodeCommand::SetMonitorEnhancement {
                db,
                node,
                engine,
                not_requested,
                off,
            } => {
                let monitor = serde_json::json!({"engine": engine, "requested": !not_requested});
                admin(&db)?
                    .set_monitor_enhancement(&node, (!off).then_some(&monitor))
                    .map_err(admin_failure)
            }
            NodeCommand::SetCachePolicies {
                db,
                node,
                policies_json,
            } => {
                let policies = serde_json::from_str(&policies_json)
                    .map_err(|e| (exit::BAD_CONFIG, format!("policies: {e}")))?;
                admin(&db)?
                    .set_cache_policies(&node, &policies)
                    .map_err(admin_failure)
            }
            NodeCommand::SetCapacity { db, node, capacity } => admin(&db)?
                .set_max_concurrent_recordings(&node, capacity)
                .map_err(admin_failure),
        },
        ControllerCommand::Job { command } => match command {
            JobCommand::Add {
                db,
                node,
                device,
                duration,
                format,
                rate,
                channels,
                select,
                group,
                file_name,
                codec,
                bitrate,
                vbr,
                command_json,
                enhance,
                enhancement,
                no_keep_raw,
            } => {
                let mut spec = NewJobSpec::new(&node, &device, duration.as_secs_f64());
                spec.capture_format = format;
                spec.capture_sample_rate = rate;
                spec.capture_channels = channels;
                spec.capture_channel_selection = select;
                spec.capture_group_id = group;
                spec.output_file_name = file_name;
                spec.output_codec = codec;
                if let Some(kbps) = bitrate {
                    spec.extra_command
                        .insert("outputBitrateKbps".into(), kbps.into());
                }
                if vbr {
                    spec.extra_command.insert("outputVbr".into(), true.into());
                }
                if let Some(text) = command_json {
                    match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(serde_json::Value::Object(fields)) => spec.extra_command.extend(fields),
                        _ => {
                            return Err((
                                exit::BAD_CONFIG,
                                format!("--command-json {text:?} is not a JSON object"),
                            ));
                        }
                    }
                }
                if let Some(e) = enhancement_object(enhance, enhancement.as_deref(), no_keep_raw)? {
                    spec.extra_command.insert("enhancement".into(), e);
                }
                let job = admin(&db)?.add_job(&spec).map_err(admin_failure)?;
                println!("{}", job.id);
                Ok(())
            }
            JobCommand::Stop { db, job } => print_job(admin(&db)?.stop_job(&job)),
            JobCommand::Cancel { db, job } => print_job(admin(&db)?.cancel_job(&job)),
            JobCommand::Fail { db, job, reason } => print_job(admin(&db)?.fail_job(&job, &reason)),
            JobCommand::List { db } => {
                for job in admin(&db)?.list_jobs().map_err(admin_failure)? {
                    println!(
                        "{:<42} {:<15} {}",
                        job.id,
                        job.status.to_string(),
                        job.recording_id
                    );
                }
                Ok(())
            }
            JobCommand::Show { db, job } => {
                let admin = admin(&db)?;
                let found = admin
                    .job(&job)
                    .map_err(admin_failure)?
                    .ok_or((exit::NOT_FOUND, format!("no job {job}")))?;
                print_json(&finished_json(&admin, &found)?);
                Ok(())
            }
        },
        ControllerCommand::Events { db, node } => {
            print_json(&admin(&db)?.health_events(&node).map_err(admin_failure)?);
            Ok(())
        }
        ControllerCommand::Listen { db, node, out } => write_listen_chunks(&db, &node, &out),
    }
}

/// The job's `enhancement` from `job add`'s flags; `None` when none asks for one.
fn enhancement_object(
    enhance: bool,
    object: Option<&str>,
    no_keep_raw: bool,
) -> Result<Option<serde_json::Value>, (u8, String)> {
    let mut e = match object {
        None if !enhance => return Ok(None),
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => {
                return Err((
                    exit::BAD_CONFIG,
                    format!("--enhancement {text:?} is not a JSON object"),
                ));
            }
        },
    };
    if no_keep_raw {
        e.insert("keepRaw".into(), false.into());
    }
    e.entry("keepRaw").or_insert(true.into());
    Ok(Some(serde_json::Value::Object(e)))
}

fn write_listen_chunks(
    db: &std::path::Path,
    node: &str,
    out: &std::path::Path,
) -> Result<(), Failure> {
    let chunks = admin(db)?.listen_chunks(node).map_err(admin_failure)?;
    std::fs::create_dir_all(out).map_err(|e| (exit::FAILURE, format!("{}: {e}", out.display())))?;
    let mut listed = Vec::new();
    for c in chunks {
        let path = out.join(format!("{}.wav", c.seq));
        std::fs::write(&path, &c.wav)
            .map_err(|e| (exit::FAILURE, format!("{}: {e}", path.display())))?;
        listed.push(serde_json::json!({
            "seq": c.seq, "rendition": c.rendition, "capturedAt": c.captured_at,
            "durationMs": c.duration_ms, "receivedAt": c.received_at,
            "size": c.wav.len(), "path": path,
        }));
    }
    print_json(&listed);
    Ok(())
}

fn print_job(result: Result<JobSummary, AdminError>) -> Result<(), Failure> {
    let job = result.map_err(admin_failure)?;
    println!("{} {}", job.id, job.status);
    Ok(())
}

fn finished_json(admin: &Admin, job: &JobSummary) -> Result<serde_json::Value, Failure> {
    let recording = admin.recording(&job.recording_id).map_err(admin_failure)?;
    Ok(serde_json::json!({ "job": job, "recording": recording }))
}
