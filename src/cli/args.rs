//! The command line: every subcommand and its flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgerec",
    version,
    about = "Crash-safe audio capture for headless recording boxes",
    after_help = "Exit codes: 0 ok, 1 failure, 3 bad config, 4 no such device, 5 device busy, \
6 unsupported format, 7 output not writable, 8 device failed, 9 no such job (render), 11 no audio captured (the device never delivered a frame), \
12 journal damaged (run `edgerec repair --rebuild DIR`), 13 already enrolled (enroll; --force replaces the token)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Record one local job (no controller): segments, the rendered recording and timeline.json.
    Record(RecordArgs),
    /// Render a finished local job again: codec, channel map, rate, bitrate.
    Render(super::render::RenderArgs),
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
    Enroll(super::box_setup::EnrollArgs),
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
    pub(crate) state_dir: Option<PathBuf>,
    /// The box's config file [default: /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// The controller's API base, e.g. https://controller.example/api/v1 [default: the
    /// config's [controller] url].
    #[arg(long)]
    pub(crate) controller: Option<String>,
    #[arg(long)]
    pub(crate) node_id: Option<String>,
    /// File holding the node token (mode 0600) [default: the config's, else
    /// /var/lib/edgerec/node.token].
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Allow plain http to a non-loopback controller (trusted networks only).
    #[arg(long)]
    pub(crate) allow_insecure: bool,
    /// Capture backend for claimed jobs instead of alsa (e.g. synth, for demos).
    #[arg(long)]
    pub(crate) backend_override: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct CaptureArgs {
    /// State directory: the journal and one directory per job [default: the config's
    /// [state] dir, else /var/lib/edgerec].
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// The box's config file [default: /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Exit once no job is running or runnable (one-shot recovery after a crash).
    #[arg(long)]
    pub(crate) exit_when_idle: bool,
}

#[derive(clap::Args)]
pub(crate) struct RecordArgs {
    /// Capture backend: alsa, cpal, synth or file.
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Device: ALSA PCM name, cpal device name, synth script or WAV path.
    #[arg(long)]
    pub(crate) device: Option<String>,
    /// Sample format: S16_LE, S24_3LE, S24_LE, S32_LE, FLOAT_LE.
    #[arg(long)]
    pub(crate) format: Option<String>,
    #[arg(long)]
    pub(crate) rate: Option<u32>,
    #[arg(long)]
    pub(crate) channels: Option<u16>,
    /// How long to record (e.g. 90s, 1h30m). Without it, until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Output directory: the journal and one directory per job.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// TOML config file; command-line flags override it [default:
    /// /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Segment length in seconds.
    #[arg(long)]
    pub(crate) segment_seconds: Option<u64>,
    /// fdatasync interval (e.g. 1s, 250ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) sync_interval: Option<Duration>,
    /// Wait for a device that is missing at the start (until --duration ends) instead of
    /// failing at once; the missing start is a `late_start` gap on the timeline.
    #[arg(long)]
    pub(crate) wait_for_device: bool,
    /// Leave the segments alone: no stitched recording.wav; render.json describes the
    /// WAV they make (`edgerec render` writes a file from them later).
    #[arg(long)]
    pub(crate) no_stitch: bool,
    #[command(flatten)]
    pub(crate) output: super::render::OutputArgs,
}
