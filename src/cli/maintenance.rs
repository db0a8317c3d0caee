//! The operator's tools: `repair`, `doctor`, `status`, `devices` and udev's `hotplug`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgerec::capture::hotplug;
use edgerec::core::timeline::GapFill;
use edgerec::roles::repair;

use super::args::SyncArgs;
use super::box_setup;
use super::exit::{self, Failure, config_failure, failure_code};
use super::record::print_finalized;

/// The state directory given on the command line, else the one the box's config file
/// names (`[state] dir`), else the built-in default.
pub(crate) fn state_dir_or_configured(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let (raw, source) = edgerec::config::load_config(None).map_err(config_failure)?;
    let b = edgerec::config::BoxSettings::resolve(&raw, source, Default::default())
        .map_err(config_failure)?;
    Ok(b.state_dir)
}

pub(crate) fn run_hotplug(
    action: String,
    devpath: String,
    state_dir: &Path,
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

pub(crate) fn run_repair(dir: &Path, rebuild: bool) -> Result<(), Failure> {
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

pub(crate) fn run_doctor(args: &SyncArgs, json: bool) -> ExitCode {
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

pub(crate) fn run_status(state_dir: &Path, json: bool) -> Result<(), Failure> {
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

pub(crate) fn run_devices() -> Result<(), Failure> {
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
