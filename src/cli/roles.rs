//! The long-running roles: `sync`, `capture`, `agent` (both in one process) and `demo`.

use std::time::Duration;

use edgerec::config::{Overrides, RawConfig, RecordSettings};
use edgerec::controller::client::ClientConfig;
use edgerec::roles::record;
use edgerec::roles::sync::{self, SyncSettings};
use edgerec::roles::{agent, capture, demo};

use super::args::{CaptureArgs, SyncArgs};
use super::box_setup;
use super::exit::{self, Failure, config_failure, failure_code};
use super::record::print_finalized;
use super::shutdown::shutdown_flag;

pub(crate) fn client_config(c: &edgerec::config::ControllerSettings) -> ClientConfig {
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

pub(crate) fn run_sync(args: SyncArgs) -> Result<(), Failure> {
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

pub(crate) fn run_agent(args: SyncArgs) -> Result<(), Failure> {
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

pub(crate) fn run_demo(dir: &std::path::Path, duration: Duration) -> Result<(), Failure> {
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

pub(crate) fn run_capture(args: CaptureArgs) -> Result<(), Failure> {
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
