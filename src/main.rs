//! The `edgerec` command: parse, set up logging, dispatch, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edgerec::capture::hotplug;
use edgerec::capture::{OpenError, StopFlag};
use edgerec::config::{ConfigError, Overrides, RawConfig, RecordSettings};
use edgerec::controller::client::ClientConfig;
use edgerec::core::timeline::GapFill;
use edgerec::roles::finalize::Finalized;
use edgerec::roles::record::{self, RecordError};
use edgerec::roles::sync::{self, SyncSettings};
use edgerec::roles::{agent, capture, demo, repair};

mod box_setup;

/// Exit codes, one per kind of failure an operator must handle differently.
pub(crate) mod exit {
    pub const FAILURE: u8 = 1;
    pub const BAD_CONFIG: u8 = 3;
    pub const NO_SUCH_DEVICE: u8 = 4;
    pub const DEVICE_BUSY: u8 = 5;
    pub const UNSUPPORTED_FORMAT: u8 = 6;
    pub const UNWRITABLE_OUTPUT: u8 = 7;
    pub const DEVICE_FAILED: u8 = 8;
    /// `render`: no finished job where the operator pointed.
    pub const NOT_FOUND: u8 = 9;
    /// `record`: the job's window ended without a single frame from the device.
    pub const NO_AUDIO: u8 = 11;
    /// The journal is damaged (`PRAGMA quick_check` failed): nothing was finalized; run
    /// `edgerec repair --rebuild DIR`.
    pub const JOURNAL_DAMAGED: u8 = 12;
    /// `enroll` over a token that still works (or cannot be checked): nothing changed.
    pub const ALREADY_ENROLLED: u8 = 13;
}

/// Any error whose cause chain holds a damaged journal gets its own exit code.
fn journal_damaged(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.downcast_ref::<edgerec::journal::JournalError>()
            .is_some_and(|j| j.is_damaged())
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `code`, unless the error comes from a damaged journal.
fn failure_code(e: &(dyn std::error::Error + 'static), code: u8) -> u8 {
    if journal_damaged(e) {
        exit::JOURNAL_DAMAGED
    } else {
        code
    }
}

mod render_cli;

#[derive(Parser)]
#[command(
    name = "edgerec",
    version,
    about = "Crash-safe audio capture for headless recording boxes",
    after_help = "Exit codes: 0 ok, 1 failure, 3 bad config, 4 no such device, 5 device busy, \
6 unsupported format, 7 output not writable, 8 device failed, 9 no such job (render), 11 no audio captured (the device never delivered a frame), \
12 journal damaged (run `edgerec repair --rebuild DIR`), 13 already enrolled (enroll; --force replaces the token)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record one local job (no controller): segments, the rendered recording and timeline.json.
    Record(RecordArgs),
    /// Render a finished local job again: codec, channel map, rate, bitrate.
    Render(render_cli::RenderArgs),
    /// Repair segments and finalize jobs left behind by a crash in an output directory.
    /// Works on that directory alone (it may have been moved or copied). Exits 11 when the
    /// journal is damaged.
    Repair {
        /// The output directory (holds edgerec.db).
        dir: PathBuf,
        /// Rebuild the journal from the segment files on disk (the damaged journal is kept
        /// beside it as edgerec.db.damaged-<ms>), then repair and finalize.
        #[arg(long)]
        rebuild: bool,
    },
    /// List capture devices with their stable identities.
    Devices,
    /// The capture role: run the jobs in the journal; resume or finalize what a crash left.
    Capture(CaptureArgs),
    /// The sync role: claim jobs, heartbeat, relay stop/cancel, upload, deliver the outbox.
    Sync(SyncArgs),
    /// Both roles in one process (the simple install).
    Agent {
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Run the whole product on loopback: controller, a 20 s job with a device drop-out,
    /// the agent; print the delivered recording.
    Demo {
        /// Where the demo keeps its controller, agent state and recordings.
        #[arg(long, default_value = "/tmp/edgerec-demo")]
        dir: PathBuf,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Wake capture processes waiting for a device (run by the udev rule).
    Hotplug {
        /// udev's ACTION (add, remove, change).
        #[arg(long)]
        action: String,
        /// udev's DEVPATH.
        #[arg(long)]
        devpath: String,
        /// The capture role's state directory (default: the config's `[state] dir`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Enroll this box with its controller (day 0); see `edgerec enroll --help` for
    /// exactly what it sends.
    Enroll(box_setup::EnrollArgs),
    /// The checks a field engineer runs by hand, one line each (PASS/WARN/FAIL and what
    /// to do): config, device, spool, journal, roles, outbox, controller, clock,
    /// real-time priority, installed units. Exits 0 all pass, 1 a warning, 2 a failure.
    Doctor {
        #[command(flatten)]
        sync: SyncArgs,
        /// Print the results as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// One screen about the box from the journal (read-only; works without the daemons).
    Status {
        /// The state directory (default: the config's `[state] dir`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Print the same as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct SyncArgs {
    /// State directory [default: the config's [state] dir, else /var/lib/edgerec].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The box's config file [default: /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The controller's API base, e.g. https://controller.example/api/v1 [default: the
    /// config's [controller] url].
    #[arg(long)]
    controller: Option<String>,
    #[arg(long)]
    node_id: Option<String>,
    /// File holding the node token (mode 0600) [default: the config's, else
    /// /var/lib/edgerec/node.token].
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Allow plain http to a non-loopback controller (trusted networks only).
    #[arg(long)]
    allow_insecure: bool,
    /// Capture backend for claimed jobs instead of alsa (e.g. synth, for demos).
    #[arg(long)]
    backend_override: Option<String>,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// State directory: the journal and one directory per job [default: the config's
    /// [state] dir, else /var/lib/edgerec].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The box's config file [default: /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Exit once no job is running or runnable (one-shot recovery after a crash).
    #[arg(long)]
    exit_when_idle: bool,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Capture backend: alsa, cpal, synth or file.
    #[arg(long)]
    backend: Option<String>,
    /// Device: ALSA PCM name, cpal device name, synth script or WAV path.
    #[arg(long)]
    device: Option<String>,
    /// Sample format: S16_LE, S24_3LE, S24_LE, S32_LE, FLOAT_LE.
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long)]
    channels: Option<u16>,
    /// How long to record (e.g. 90s, 1h30m). Without it, until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Output directory: the journal and one directory per job.
    #[arg(long)]
    out: Option<PathBuf>,
    /// TOML config file; command-line flags override it [default:
    /// /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Segment length in seconds.
    #[arg(long)]
    segment_seconds: Option<u64>,
    /// fdatasync interval (e.g. 1s, 250ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    sync_interval: Option<Duration>,
    /// Wait for a device that is missing at the start (until --duration ends) instead of
    /// failing at once; the missing start is a `late_start` gap on the timeline.
    #[arg(long)]
    wait_for_device: bool,
    /// Leave the segments alone: no stitched recording.wav; render.json describes the
    /// WAV they make (`edgerec render` writes a file from them later).
    #[arg(long)]
    no_stitch: bool,
    #[command(flatten)]
    output: render_cli::OutputArgs,
}

fn main() -> ExitCode {
    edgerec::logging::init(log::LevelFilter::Info);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => run_record(args),
        Command::Render(args) => render_cli::run(args),
        Command::Repair { dir, rebuild } => run_repair(&dir, rebuild),
        Command::Devices => run_devices(),
        Command::Capture(args) => run_capture(args),
        Command::Sync(args) => run_sync(args),
        Command::Agent { sync } => run_agent(sync),
        Command::Enroll(args) => box_setup::run_enroll(args),
        Command::Demo { dir, duration } => run_demo(&dir, duration),
        Command::Hotplug {
            action,
            devpath,
            state_dir,
        } => state_dir_or_configured(state_dir).and_then(|d| run_hotplug(action, devpath, &d)),
        Command::Doctor { sync, json } => return run_doctor(&sync, json),
        Command::Status { state_dir, json } => {
            state_dir_or_configured(state_dir).and_then(|d| run_status(&d, json))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("edgerec: error: {message}");
            ExitCode::from(code)
        }
    }
}

pub(crate) type Failure = (u8, String);

fn config_failure(e: ConfigError) -> Failure {
    (exit::BAD_CONFIG, e.to_string())
}

fn run_record(args: RecordArgs) -> Result<(), Failure> {
    let (raw, _) = edgerec::config::load_config(args.config.as_deref()).map_err(config_failure)?;
    let settings = RecordSettings::resolve(
        raw,
        Overrides {
            backend: args.backend,
            device: args.device,
            format: args.format,
            rate: args.rate,
            channels: args.channels,
            out: args.out,
            duration: args.duration,
            segment_seconds: args.segment_seconds,
            sync_interval: args.sync_interval,
            wait_for_device: args.wait_for_device,
        },
    )
    .map_err(config_failure)?;
    let settings = RecordSettings {
        no_stitch: args.no_stitch,
        ..settings
    };
    let shutdown = shutdown_flag();
    let output = args.output.options()?;
    let done = record::record_with(&settings, &output, &shutdown).map_err(record_failure)?;
    print_finalized(&done);
    if done.recording.is_none() {
        let code = if done.end_cause.contains("format_refused") {
            exit::UNSUPPORTED_FORMAT
        } else {
            exit::NO_AUDIO
        };
        return Err((
            code,
            format!(
                "{}: {}; check the device (edgerec devices) and its cable",
                done.job_id, done.end_cause
            ),
        ));
    }
    Ok(())
}

fn record_failure(e: RecordError) -> Failure {
    let code = match &e {
        RecordError::Device(OpenError::NoSuchDevice { .. }) => exit::NO_SUCH_DEVICE,
        RecordError::Device(OpenError::Busy { .. }) => exit::DEVICE_BUSY,
        RecordError::Device(OpenError::Unsupported { .. }) => exit::UNSUPPORTED_FORMAT,
        RecordError::Device(OpenError::Failed { .. }) => exit::DEVICE_FAILED,
        RecordError::Unwritable { .. } => exit::UNWRITABLE_OUTPUT,
        _ => failure_code(&e, exit::FAILURE),
    };
    (code, e.to_string())
}

/// How long a role may take to stop after SIGTERM before the watchdog ends the process:
/// the roles give their threads 4 s, the watchdog ends the process by 4.5 s, so SIGTERM
/// finishes inside the 5 s every unit file and test expects, in every state.
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

/// Installs SIGINT/SIGTERM handlers that set the returned flag; a second signal exits.
/// A signal thread (signal-hook's self-pipe, parked in `read`) runs the flag's wake-ups;
/// a watchdog thread parks until the flag is set, then ends the process if the roles
/// have not stopped by the deadline (after logging that they were stuck): SIGTERM
/// finishes on time in every state. Neither thread wakes before a signal.
pub(crate) fn shutdown_flag() -> StopFlag {
    let shutdown = StopFlag::new();
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    for signal in signals {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.as_atomic());
        let _ = signal_hook::flag::register(signal, shutdown.as_atomic());
    }
    match signal_hook::iterator::Signals::new(signals) {
        Ok(mut pending) => {
            let flag = shutdown.clone();
            let _ = std::thread::Builder::new()
                .name("edgerec-signals".into())
                .spawn(move || {
                    if pending.forever().next().is_some() {
                        flag.stop();
                    }
                });
        }
        Err(e) => {
            log::warn!("signal thread unavailable ({e}): stops are seen at the next deadline")
        }
    }
    let watched = shutdown.clone();
    let _ = std::thread::Builder::new().name("edgerec-watchdog".into()).spawn(move || {
        while !watched.wait_timeout(Duration::from_secs(3600)) {}
        std::thread::sleep(SHUTDOWN_DEADLINE);
        log::error!("shutdown: still running {SHUTDOWN_DEADLINE:?} after the signal; exiting (open segments are repaired at the next start)");
        std::process::exit(exit::FAILURE as i32);
    });
    shutdown
}

fn client_config(c: &edgerec::config::ControllerSettings) -> ClientConfig {
    let mut cfg = ClientConfig::new(c.url.clone(), c.node_id.clone(), c.token_file.clone());
    cfg.allow_insecure = c.allow_insecure;
    // Ordinary calls end well inside the shutdown deadline; uploads keep their own bound.
    cfg.call_timeout = Duration::from_secs(10);
    cfg.read_timeout = Duration::from_secs(10);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

fn sync_settings(
    args: &SyncArgs,
    b: &edgerec::config::BoxSettings,
    c: &edgerec::config::ControllerSettings,
) -> SyncSettings {
    let mut settings = SyncSettings::new(b.state_dir.clone(), client_config(c));
    settings.backend_override = args.backend_override.clone();
    settings.node_heartbeat_every = b.sync.heartbeat_every;
    settings.job_poll_every = b.sync.job_poll_every;
    settings.claim_every = b.sync.claim_every;
    settings.config_every = b.sync.config_every;
    settings.disk = b.disk;
    settings.metrics_textfile = b.metrics_textfile.clone();
    settings
}

fn sync_failure(e: sync::SyncError) -> Failure {
    match e {
        sync::SyncError::Client(e) => (exit::BAD_CONFIG, e.to_string()),
        other => (failure_code(&other, exit::FAILURE), other.to_string()),
    }
}

fn run_sync(args: SyncArgs) -> Result<(), Failure> {
    let (_, b) = box_setup::settings(args.config.as_deref(), box_setup::sync_overrides(&args))?;
    let shutdown = shutdown_flag();
    let Some(c) = &b.controller else {
        return box_setup::idle_unconfigured("sync", &shutdown);
    };
    sync::run(sync_settings(&args, &b, c), &shutdown).map_err(sync_failure)
}

fn capture_role_settings(
    raw: RawConfig,
    b: &edgerec::config::BoxSettings,
) -> Result<capture::CaptureRoleSettings, Failure> {
    let state_dir = b.state_dir.clone();
    // The job carries device and format; the config carries how to run it.
    let settings = RecordSettings::resolve(
        raw,
        Overrides {
            backend: Some("synth".into()),
            ..Default::default()
        },
    )
    .map_err(config_failure)?;
    let mut role = capture::CaptureRoleSettings::new(state_dir.clone());
    role.run = record::run_settings(&RecordSettings {
        out: state_dir.clone(),
        ..settings.clone()
    });
    role.run.spool = Some(edgerec::segment::spool::SpoolSettings {
        dir: state_dir,
        marks: b.disk,
        retention: b.retention,
    });
    role.gap_fill = settings.gap_fill;
    Ok(role)
}

fn run_agent(args: SyncArgs) -> Result<(), Failure> {
    let (raw, b) = box_setup::settings(args.config.as_deref(), box_setup::sync_overrides(&args))?;
    let role = capture_role_settings(raw, &b)?;
    let shutdown = shutdown_flag();
    let Some(c) = &b.controller else {
        // No controller: the capture half still runs (local and left-over jobs).
        return capture::run(&role, &shutdown)
            .map(|_| ())
            .map_err(|e| (exit::FAILURE, e.to_string()));
    };
    agent::run(role, sync_settings(&args, &b, c), &shutdown).map_err(|e| match e {
        agent::AgentError::Sync(e) => sync_failure(e),
        other => (failure_code(&other, exit::FAILURE), other.to_string()),
    })
}

fn run_demo(dir: &std::path::Path, duration: Duration) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| (exit::FAILURE, e.to_string()))?;
    let controller = edgerec::roles::reference_controller::program_next_to(&exe);
    let report = demo::run(dir, duration.as_secs_f64(), &controller)
        .map_err(|e| (exit::FAILURE, e.to_string()))?;
    println!(
        "controller: {} (reference, loopback)",
        report.controller_url
    );
    println!("job:        {} ({})", report.job_id, report.job_status);
    match &report.delivered {
        Some(path) => println!("delivered:  {}", path.display()),
        None => println!("delivered:  nothing"),
    }
    if let Some(d) = report.duration_seconds {
        println!("duration:   {d:.3} s");
    }
    if let Some(c) = &report.checksum {
        println!("checksum:   {c} (computed by the controller)");
    }
    if let Some(tl) = &report.timeline {
        let rate = tl["sample_rate"].as_f64().unwrap_or(48_000.0);
        println!("timeline:");
        for e in tl["events"].as_array().into_iter().flatten() {
            let at = e["frame"].as_f64().unwrap_or(0.0) / rate;
            let gap = e["gap_frames"]
                .as_f64()
                .map_or(String::new(), |g| format!(" gap {:.3} s", g / rate));
            println!(
                "  {at:>8.3} s  {:<16}{gap}  {}",
                e["kind"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            );
        }
    }
    if report.job_status != "completed" {
        return Err((
            exit::FAILURE,
            format!("the job ended {}", report.job_status),
        ));
    }
    Ok(())
}

fn run_capture(args: CaptureArgs) -> Result<(), Failure> {
    let overrides = edgerec::config::BoxOverrides {
        state_dir: args.state_dir.clone(),
        ..Default::default()
    };
    let (raw, b) = box_setup::settings(args.config.as_deref(), overrides)?;
    let mut role = capture_role_settings(raw, &b)?;
    role.exit_when_idle = args.exit_when_idle;
    let summary = capture::run(&role, &shutdown_flag())
        .map_err(|e| (failure_code(&e, exit::FAILURE), e.to_string()))?;
    for job in &summary.finalized {
        print_finalized(job);
    }
    Ok(())
}

/// The state directory given on the command line, else the one the box's config file
/// names (`[state] dir`), else the built-in default.
fn state_dir_or_configured(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let (raw, source) = edgerec::config::load_config(None).map_err(config_failure)?;
    let b = edgerec::config::BoxSettings::resolve(&raw, source, Default::default())
        .map_err(config_failure)?;
    Ok(b.state_dir)
}

fn run_hotplug(
    action: String,
    devpath: String,
    state_dir: &std::path::Path,
) -> Result<(), Failure> {
    let event = hotplug::HotplugEvent { action, devpath };
    let woken =
        hotplug::notify(state_dir, &event).map_err(|e| (exit::FAILURE, format!("hotplug: {e}")))?;
    log::debug!(
        "hotplug {} {}: woke {woken} capture process(es)",
        event.action,
        event.devpath
    );
    Ok(())
}

fn run_repair(dir: &std::path::Path, rebuild: bool) -> Result<(), Failure> {
    let result = if rebuild {
        edgerec::roles::rebuild::rebuild_dir(dir, GapFill::Silence)
    } else {
        repair::repair_dir(dir, GapFill::Silence)
    };
    let summary = result.map_err(|e| (failure_code(&e, exit::FAILURE), e.to_string()))?;
    println!(
        "repair: {} segments repaired, {} jobs finalized, {} unreadable, {} live (skipped), \
         {} unknown segments, {} jobs adopted from segment files",
        summary.segments_repaired,
        summary.finalized.len(),
        summary.unreadable.len(),
        summary.live.len(),
        summary.unknown.len(),
        summary.adopted.len()
    );
    for path in &summary.unreadable {
        println!("unreadable (kept on disk): {}", path.display());
    }
    for path in &summary.unknown {
        println!("unknown to the journal (kept on disk): {}", path.display());
    }
    if !summary.unknown.is_empty() && !rebuild {
        println!(
            "to put unknown segments back on their jobs' timelines: edgerec repair --rebuild {}",
            dir.display()
        );
    }
    for (job, path) in &summary.elsewhere {
        println!(
            "left alone: {job} (its directory {} is outside {})",
            path.display(),
            dir.display()
        );
    }
    for job in &summary.finalized {
        print_finalized(job);
    }
    Ok(())
}

fn run_doctor(args: &SyncArgs, json: bool) -> ExitCode {
    use edgerec::roles::doctor;
    let input = doctor::DoctorInput {
        config: args.config.clone(),
        overrides: box_setup::sync_overrides(args),
    };
    let checks = doctor::run(&input);
    if json {
        println!("{}", doctor::to_json(&checks));
    } else {
        print!("{}", doctor::render(&checks));
    }
    ExitCode::from(doctor::exit_code(&checks))
}

fn run_status(state_dir: &std::path::Path, json: bool) -> Result<(), Failure> {
    use edgerec::roles::status;
    let now = edgerec::segment::writer::now_ms();
    let s = status::gather(state_dir, now).map_err(|e| (exit::FAILURE, e.to_string()))?;
    if json {
        let text = status::to_json(&s).map_err(|e| (exit::FAILURE, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", status::render(&s, now));
    }
    Ok(())
}

fn run_devices() -> Result<(), Failure> {
    let devices = edgerec::capture::devices::list();
    if devices.is_empty() {
        println!("no capture devices found");
    }
    for d in devices {
        println!(
            "{:<5} {:<40} identity={} {}",
            d.backend, d.name, d.identity, d.description
        );
    }
    Ok(())
}

fn seconds(frames: u64, rate: u32) -> f64 {
    frames as f64 / rate.max(1) as f64
}

/// What an operator at a serial console wants to know: where, how long, what happened.
fn print_finalized(job: &Finalized) {
    println!(
        "job:       {} ({}, {})",
        job.job_id, job.state, job.end_cause
    );
    match &job.recording {
        Some(dir) if dir.is_dir() => println!(
            "recording: the segments in {} ({:.3} s, {} frames; `edgerec render` writes a file)",
            dir.display(),
            seconds(job.frames, job.rate),
            job.frames
        ),
        Some(path) => println!(
            "recording: {} ({:.3} s, {} frames)",
            path.display(),
            seconds(job.frames, job.rate),
            job.frames
        ),
        None => println!("recording: none (no audio captured)"),
    }
    println!("timeline:  {}", job.timeline.display());
    for e in &job.events {
        let gap = e.gap_frames.map_or(String::new(), |g| {
            format!(" gap {:.3} s", seconds(g, job.rate))
        });
        println!(
            "  {:>10.3} s  {:<16}{gap}  {}",
            seconds(e.frame, job.rate),
            e.kind.name(),
            e.detail
        );
    }
}
