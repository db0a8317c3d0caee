//! `edgerec record`, and how a finalized job is printed for an operator at a console.

use edgerec::capture::OpenError;
use edgerec::config::{Overrides, RecordSettings};
use edgerec::roles::finalize::Finalized;
use edgerec::roles::record::{self, RecordError};

use super::args::RecordArgs;
use super::exit::{self, Failure, config_failure, failure_code};
use super::shutdown::shutdown_flag;

pub(crate) fn run_record(args: RecordArgs) -> Result<(), Failure> {
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

fn seconds(frames: u64, rate: u32) -> f64 {
    frames as f64 / rate.max(1) as f64
}

/// What an operator at a serial console wants to know: where, how long, what happened.
pub(crate) fn print_finalized(job: &Finalized) {
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
