//! Configuration in two stages: [`RawConfig`] is the TOML as written (unknown keys are
//! rejected, naming the key and the file), [`RecordSettings`] is validated, defaults
//! applied, ready to run. Command-line flags override the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::timeline::GapFill;

mod appliance;
mod meter;
pub use appliance::*;
pub use meter::RawMeter;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config {path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("bad setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub capture: RawCapture,
    #[serde(default)]
    pub segments: RawSegments,
    #[serde(default)]
    pub output: RawOutput,
    #[serde(default)]
    pub controller: RawController,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub disk: RawDisk,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub meter: RawMeter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    pub backend: Option<String>,
    pub device: Option<String>,
    pub format: Option<String>,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    /// Device period, e.g. "100ms".
    pub period: Option<String>,
    /// Seconds of audio the ring between capture and writer holds.
    pub ring_seconds: Option<f64>,
    /// The ring's byte budget in MiB: `ring_seconds` is cut to fit it, so memory stays
    /// flat as channels grow.
    pub ring_max_mib: Option<u32>,
    /// Stall guard ("5s"): no frames this long means the device is gone.
    pub stall_guard: Option<String>,
    /// Longest backoff between reopen attempts ("2s").
    pub reopen_cap: Option<String>,
    /// A job whose device has delivered no frame this long after it started ("30s")
    /// fails then, freeing the node; unset, it waits out the job's window.
    pub no_audio_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegments {
    pub segment_seconds: Option<u64>,
    /// How often an open segment's header is rewritten ("30s"; repair trusts the file
    /// length, so this only says how stale the header of an open segment may be).
    pub flush_interval: Option<String>,
    /// How often segment data is fdatasync'ed ("1s").
    pub sync_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub dir: Option<PathBuf>,
    /// "silence" (output time = wall time) or "splice".
    pub gap_fill: Option<String>,
}

impl RawConfig {
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // file:line first, as editors and operators read it; then toml's own words.
            let line = e.span().map_or(1, |span| {
                let upto = &text.as_bytes()[..span.start.min(text.len())];
                upto.iter().filter(|&&b| b == b'\n').count() + 1
            });
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
            }
        })
    }
}

/// Most channels a capture takes (MADI/Dante interfaces bring 64-128; the controller's
/// inventory allows 256).
pub const MAX_CHANNELS: u16 = 256;
/// The device period: about what arecord negotiates, so a capture wakes ~10 times a
/// second; lower it (down to 1 ms) for low-latency uses.
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(100);
/// The ring's default byte budget: 10 s of stereo, 1.4 s of 128 ch x 96 kHz x S32.
pub const DEFAULT_RING_MAX_MIB: u32 = 64;

/// Everything `record` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSettings {
    pub backend: String,
    pub device: String,
    pub spec: StreamSpec,
    pub period: Duration,
    pub ring_seconds: f64,
    /// The ring's byte budget (caps `ring_seconds`).
    pub ring_max_bytes: usize,
    pub segment_seconds: u64,
    pub flush_interval: Duration,
    pub sync_interval: Duration,
    pub out: PathBuf,
    pub gap_fill: GapFill,
    pub duration: Option<Duration>,
    /// No frames for this long while the stream runs means the device is gone.
    pub stall_guard: Duration,
    /// Longest wait between reopen attempts of a lost device.
    pub reopen_cap: Duration,
    /// Fail a job that has had no frame this long; `None` waits out its window.
    pub no_audio_timeout: Option<Duration>,
    /// `record`: a device that is not there at the start is waited for (until the job's
    /// window ends) instead of failing at once.
    pub wait_for_device: bool,
    /// Where the level detectors open (`[meter]`).
    pub meter: crate::core::meter::Thresholds,
    /// `record --no-stitch`: a WAV stays as its segments (no `recording.wav`).
    pub no_stitch: bool,
}

/// Values given on the command line; each overrides the config file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub backend: Option<String>,
    pub device: Option<String>,
    pub format: Option<String>,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub out: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub segment_seconds: Option<u64>,
    pub sync_interval: Option<Duration>,
    pub wait_for_device: bool,
}

fn duration_setting(
    key: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| ConfigError::Invalid {
            key,
            message: format!("{s:?}: {e}"),
        }),
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl RecordSettings {
    pub fn resolve(raw: RawConfig, cli: Overrides) -> Result<RecordSettings, ConfigError> {
        let backend = cli
            .backend
            .or(raw.capture.backend)
            .unwrap_or_else(|| "alsa".into());
        if crate::capture::backend(&backend).is_none() {
            return Err(invalid(
                "capture.backend",
                format!(
                    "{backend:?} is not one of {}",
                    crate::capture::backend_names().join(", ")
                ),
            ));
        }
        let device = cli
            .device
            .or(raw.capture.device)
            .unwrap_or_else(|| match backend.as_str() {
                "synth" => "sine:440".into(),
                _ => "default".into(),
            });
        let format_name = cli
            .format
            .or(raw.capture.format)
            .unwrap_or_else(|| "S16_LE".into());
        let format: SampleFormat =
            format_name
                .parse()
                .map_err(|e: crate::core::format::UnknownFormat| {
                    invalid("capture.format", e.to_string())
                })?;
        let rate = cli.rate.or(raw.capture.rate).unwrap_or(48_000);
        if !(8_000..=384_000).contains(&rate) {
            return Err(invalid(
                "capture.rate",
                format!("{rate} Hz is outside 8000..=384000"),
            ));
        }
        let channels = cli.channels.or(raw.capture.channels).unwrap_or(2);
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(invalid(
                "capture.channels",
                format!("{channels} is outside 1..={MAX_CHANNELS}"),
            ));
        }
        let period = duration_setting(
            "capture.period",
            raw.capture.period.as_deref(),
            DEFAULT_PERIOD,
        )?;
        if period < Duration::from_millis(1) || period > Duration::from_millis(500) {
            return Err(invalid("capture.period", "must be between 1ms and 500ms"));
        }
        let ring_seconds = raw.capture.ring_seconds.unwrap_or(10.0);
        if !(0.5..=120.0).contains(&ring_seconds) {
            return Err(invalid(
                "capture.ring_seconds",
                format!("{ring_seconds} is outside 0.5..=120"),
            ));
        }
        let ring_max_mib = raw.capture.ring_max_mib.unwrap_or(DEFAULT_RING_MAX_MIB);
        if !(1..=4096).contains(&ring_max_mib) {
            return Err(invalid(
                "capture.ring_max_mib",
                format!("{ring_max_mib} is outside 1..=4096"),
            ));
        }
        let segment_seconds = cli
            .segment_seconds
            .or(raw.segments.segment_seconds)
            .unwrap_or(300);
        if !(1..=86_400).contains(&segment_seconds) {
            return Err(invalid(
                "segments.segment_seconds",
                format!("{segment_seconds} is outside 1..=86400"),
            ));
        }
        let flush_interval = duration_setting(
            "segments.flush_interval",
            raw.segments.flush_interval.as_deref(),
            Duration::from_secs(30),
        )?;
        let sync_interval = match cli.sync_interval {
            Some(d) => d,
            None => duration_setting(
                "segments.sync_interval",
                raw.segments.sync_interval.as_deref(),
                Duration::from_secs(1),
            )?,
        };
        for (key, d) in [
            ("segments.flush_interval", flush_interval),
            ("segments.sync_interval", sync_interval),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return Err(invalid(key, "must be between 10ms and 1h"));
            }
        }
        let stall_guard = duration_setting(
            "capture.stall_guard",
            raw.capture.stall_guard.as_deref(),
            Duration::from_secs(5),
        )?;
        if stall_guard < Duration::from_millis(200) || stall_guard > Duration::from_secs(600) {
            return Err(invalid(
                "capture.stall_guard",
                "must be between 200ms and 10m",
            ));
        }
        let reopen_cap = duration_setting(
            "capture.reopen_cap",
            raw.capture.reopen_cap.as_deref(),
            Duration::from_secs(2),
        )?;
        if reopen_cap < Duration::from_millis(50) || reopen_cap > Duration::from_secs(300) {
            return Err(invalid("capture.reopen_cap", "must be between 50ms and 5m"));
        }
        let no_audio_timeout = match raw.capture.no_audio_timeout.as_deref() {
            None => None,
            text => Some(duration_setting(
                "capture.no_audio_timeout",
                text,
                Duration::ZERO,
            )?),
        };
        if no_audio_timeout.is_some_and(|d| d < Duration::from_millis(100)) {
            return Err(invalid(
                "capture.no_audio_timeout",
                "must be at least 100ms",
            ));
        }
        let out = cli
            .out
            .or(raw.output.dir)
            .unwrap_or_else(|| PathBuf::from("recordings"));
        let gap_fill = match raw.output.gap_fill.as_deref() {
            None | Some("silence") => GapFill::Silence,
            Some("splice") => GapFill::Splice,
            Some(other) => {
                return Err(invalid(
                    "output.gap_fill",
                    format!("{other:?} is not silence or splice"),
                ));
            }
        };
        if let Some(d) = cli.duration
            && d.is_zero()
        {
            return Err(invalid("duration", "must be positive"));
        }
        let meter = meter::resolve(&raw.meter)?;
        Ok(RecordSettings {
            backend,
            device,
            spec: StreamSpec {
                format,
                rate,
                channels,
            },
            period,
            ring_seconds,
            ring_max_bytes: ring_max_mib as usize * 1024 * 1024,
            segment_seconds,
            flush_interval,
            sync_interval,
            out,
            gap_fill,
            duration: cli.duration,
            stall_guard,
            reopen_cap,
            no_audio_timeout,
            wait_for_device: cli.wait_for_device,
            meter,
            no_stitch: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str, cli: Overrides) -> Result<RecordSettings, ConfigError> {
        RecordSettings::resolve(RawConfig::parse(toml, Path::new("test.toml"))?, cli)
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = resolve(
            "[capture]\nbackend = \"synth\"\nrat = 48000\n",
            Overrides::default(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rat") && msg.contains("test.toml"), "{msg}");
        let err = resolve("[captur]\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("captur"), "{err}");
    }

    #[test]
    fn defaults_and_overrides() {
        let s = resolve(
            "[capture]\nbackend = \"synth\"\nrate = 44100\n[segments]\nsync_interval = \"250ms\"\n",
            Overrides {
                rate: Some(96_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            s.spec,
            StreamSpec {
                format: SampleFormat::S16Le,
                rate: 96_000,
                channels: 2
            }
        );
        assert_eq!(s.sync_interval, Duration::from_millis(250));
        assert_eq!(s.segment_seconds, 300);
        assert_eq!(s.device, "sine:440");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("[capture]\nbackend = \"oss\"\n", "capture.backend"),
            ("[capture]\nformat = \"S8\"\n", "capture.format"),
            ("[capture]\nrate = 12\n", "capture.rate"),
            ("[capture]\nchannels = 0\n", "capture.channels"),
            (
                "[segments]\nsync_interval = \"often\"\n",
                "segments.sync_interval",
            ),
            (
                "[segments]\nsegment_seconds = 0\n",
                "segments.segment_seconds",
            ),
            ("[output]\ngap_fill = \"zeros\"\n", "output.gap_fill"),
        ];
        for (toml, key) in cases {
            let err = resolve(toml, Overrides::default()).unwrap_err().to_string();
            assert!(err.contains(key), "{toml:?}: {err}");
        }
    }
}
