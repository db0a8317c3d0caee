//! The `edgerec` command: parse, set up logging, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::args::{Cli, Command};
use cli::maintenance::{self, state_dir_or_configured};
use cli::{box_setup, record, render, roles};

fn main() -> ExitCode {
    edgerec::logging::init(log::LevelFilter::Info);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => record::run_record(args),
        Command::Render(args) => render::run(args),
        Command::Repair { dir, rebuild } => maintenance::run_repair(&dir, rebuild),
        Command::Devices => maintenance::run_devices(),
        Command::Capture(args) => roles::run_capture(args),
        Command::Sync(args) => roles::run_sync(args),
        Command::Agent { sync } => roles::run_agent(sync),
        Command::Enroll(args) => box_setup::run_enroll(args),
        Command::Demo { dir, duration } => roles::run_demo(&dir, duration),
        Command::Hotplug {
            action,
            devpath,
            state_dir,
        } => state_dir_or_configured(state_dir)
            .and_then(|d| maintenance::run_hotplug(action, devpath, &d)),
        Command::Doctor { sync, json } => return maintenance::run_doctor(&sync, json),
        Command::Status { state_dir, json } => {
            state_dir_or_configured(state_dir).and_then(|d| maintenance::run_status(&d, json))
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
