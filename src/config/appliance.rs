//! The box's settings beside the capture ones: where the state lives, the controller, the
//! log level, the spool's disk marks and retention, the sync role's periods. One file,
//! `/etc/edgerec/edgerec.toml`, serves every role; flags override it. A missing file at
//! the default path is not an error: built-in defaults, and [`BoxSettings::not_configured`]
//! says what that leaves out.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, RawConfig};
use crate::core::disk_budget::BudgetMarks;

/// Where the box's config file is when no `--config` is given.
pub const DEFAULT_CONFIG: &str = "/etc/edgerec/edgerec.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/edgerec";
/// `edgerec enroll` writes the node token here unless the config says otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/var/lib/edgerec/node.token";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// The controller's API base, e.g. "https://controller.example/api/v1".
    pub url: Option<String>,
    pub node_id: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Plain http to a non-loopback controller (trusted networks only).
    pub allow_insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// error, warn, info, debug or trace.
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    /// Free space below which writing pauses ("512MiB").
    pub reserve_below: Option<String>,
    /// Free space above which a paused writer resumes.
    pub resume_above: Option<String>,
    /// Free space below which delivered recordings are reclaimed.
    pub reclaim_below: Option<String>,
    /// Delivered recordings younger than this are never reclaimed ("7days").
    pub retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub heartbeat_every: Option<String>,
    pub job_poll_every: Option<String>,
    pub claim_every: Option<String>,
    pub config_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// The Prometheus textfile the sync role keeps current; "" turns it off.
    pub textfile: Option<PathBuf>,
}

/// Where node_exporter's textfile collector looks on Debian (prometheus-node-exporter):
/// the metrics file goes there when the directory exists and the config names none.
pub const NODE_EXPORTER_TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// How the controller is reached; all three of url, node id and token file are needed.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    pub url: String,
    pub node_id: String,
    pub token_file: PathBuf,
    pub allow_insecure: bool,
}

/// The sync role's periods.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncPeriods {
    pub heartbeat_every: Duration,
    pub job_poll_every: Duration,
    pub claim_every: Duration,
    pub config_every: Duration,
}

/// The box settings, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxSettings {
    /// The file they came from; `None` when the default file is absent.
    pub source: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// `None` until url and node id are known (flags or file).
    pub controller: Option<ControllerSettings>,
    pub token_file: PathBuf,
    pub disk: BudgetMarks,
    pub retention: Duration,
    pub sync: SyncPeriods,
    /// The metrics textfile, if one is kept.
    pub metrics_textfile: Option<PathBuf>,
}

/// Box values given on the command line; each overrides the file.
#[derive(Clone, Debug, Default)]
pub struct BoxOverrides {
    pub state_dir: Option<PathBuf>,
    pub controller: Option<String>,
    pub node_id: Option<String>,
    pub token_file: Option<PathBuf>,
    pub allow_insecure: bool,
}

/// The file to read: an explicit `--config` must exist; the default path may be absent.
pub fn load_config(explicit: Option<&Path>) -> Result<(RawConfig, Option<PathBuf>), ConfigError> {
    match explicit {
        Some(path) => Ok((RawConfig::load(path)?, Some(path.to_path_buf()))),
        None => {
            let path = Path::new(DEFAULT_CONFIG);
            match RawConfig::load(path) {
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok((RawConfig::default(), None))
                }
                other => other.map(|raw| (raw, Some(path.to_path_buf()))),
            }
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn bytes(key: &'static str, value: Option<&str>) -> Result<Option<u64>, ConfigError> {
    value
        .map(|s| {
            s.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| invalid(key, format!("{s:?}: {e}")))
        })
        .transpose()
}

fn period(
    key: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = super::duration_setting(key, value, default)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(24 * 3600) {
        return Err(invalid(key, "must be between 100ms and 24h"));
    }
    Ok(d)
}

/// The configured textfile ("" is off), else node_exporter's directory when present.
fn metrics_textfile(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.to_path_buf()),
        None => {
            let dir = Path::new(NODE_EXPORTER_TEXTFILE_DIR);
            dir.is_dir().then(|| dir.join("edgerec.prom"))
        }
    }
}

impl BoxSettings {
    pub fn resolve(
        raw: &RawConfig,
        source: Option<PathBuf>,
        cli: BoxOverrides,
    ) -> Result<BoxSettings, ConfigError> {
        let log_level = match raw.log.level.as_deref() {
            None => log::LevelFilter::Info,
            Some(s) => s.parse().map_err(|_| {
                invalid(
                    "log.level",
                    format!("{s:?} is not error, warn, info, debug or trace"),
                )
            })?,
        };
        let token_file = cli
            .token_file
            .or(raw.controller.token_file.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
        let url = cli.controller.or(raw.controller.url.clone());
        let node_id = cli.node_id.or(raw.controller.node_id.clone());
        if node_id.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("controller.node_id", "is empty"));
        }
        // One without the other is a half-done setup: say which is missing.
        match (&url, &node_id) {
            (Some(_), None) => {
                return Err(invalid(
                    "controller.node_id",
                    "is needed with controller.url (or --node-id with --controller)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "controller.url",
                    "is needed with controller.node_id (or --controller with --node-id)",
                ));
            }
            _ => {}
        }
        let controller = match (url, node_id) {
            (Some(url), Some(node_id)) => Some(ControllerSettings {
                url,
                node_id,
                token_file: token_file.clone(),
                allow_insecure: cli.allow_insecure
                    || raw.controller.allow_insecure.unwrap_or(false),
            }),
            _ => None,
        };
        let d = &raw.disk;
        let disk = BudgetMarks {
            reserve_below: bytes("disk.reserve_below", d.reserve_below.as_deref())?,
            resume_above: bytes("disk.resume_above", d.resume_above.as_deref())?,
            reclaim_below: bytes("disk.reclaim_below", d.reclaim_below.as_deref())?,
        };
        let retention = super::duration_setting(
            "disk.retention",
            d.retention.as_deref(),
            Duration::from_secs(7 * 24 * 3600),
        )?;
        let s = &raw.sync;
        let sync = SyncPeriods {
            heartbeat_every: period(
                "sync.heartbeat_every",
                s.heartbeat_every.as_deref(),
                Duration::from_secs(5),
            )?,
            job_poll_every: period(
                "sync.job_poll_every",
                s.job_poll_every.as_deref(),
                Duration::from_secs(2),
            )?,
            claim_every: period(
                "sync.claim_every",
                s.claim_every.as_deref(),
                Duration::from_secs(5),
            )?,
            config_every: period(
                "sync.config_every",
                s.config_every.as_deref(),
                Duration::from_secs(60),
            )?,
        };
        Ok(BoxSettings {
            source,
            state_dir: cli
                .state_dir
                .or(raw.state.dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            log_level,
            controller,
            token_file,
            disk,
            retention,
            sync,
            metrics_textfile: metrics_textfile(raw.metrics.textfile.as_deref()),
        })
    }

    /// One line for the log: which file, and what is left unconfigured.
    pub fn not_configured(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.controller.is_none() {
            missing.push("no controller ([controller] url and node_id, or `edgerec enroll`): capture runs local jobs only, nothing is synced");
        }
        let file = match &self.source {
            Some(p) => format!("config {}", p.display()),
            None => format!("no config file at {DEFAULT_CONFIG}: built-in defaults"),
        };
        (self.source.is_none() || !missing.is_empty()).then(|| {
            format!(
                "{file}; {}",
                if missing.is_empty() {
                    "all set".into()
                } else {
                    missing.join("; ")
                }
            )
        })
    }
}
