//! The agent's side of the Rakkr recorder-node protocol (`PROTOCOL.md`): one serde type
//! per body the agent sends or reads, camelCase on the wire.
//!
//! Two rules shape this file:
//! - Replies are read leniently: unknown fields are ignored everywhere (no
//!   `deny_unknown_fields`), missing optional fields get their defaults, and a job is read
//!   field by field so that a job with a missing or absurd field can still be identified
//!   (by its id) and reported failed instead of crashing the agent.
//! - Requests are written strictly: `None`s are skipped, because some server bodies are
//!   strict (an unknown or `null` key in a health event is a 400).

pub mod format;

use crate::format::{SampleFormat, StreamSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// General
// ---------------------------------------------------------------------------------------

/// Every success body: `{"data": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

/// Every error body: `{"error": "...", "issues"?: [...]}` (`issues` are zod issues on a 400).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<Value>>,
}

impl ErrorBody {
    /// Reads an error reply: the JSON body when it is one, else the start of the text (a
    /// proxy's HTML page, say), so the log still says something useful.
    pub fn from_bytes(bytes: &[u8]) -> ErrorBody {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes)
            && !body.error.is_empty()
        {
            return body;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        let mut end = text.len().min(300);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ErrorBody {
            error: text[..end].to_string(),
            issues: None,
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error.is_empty() {
            f.write_str("(no error message)")?;
        } else {
            f.write_str(&self.error)?;
        }
        if let Some(issues) = &self.issues
            && !issues.is_empty()
        {
            write!(
                f,
                " ({} issues: {})",
                issues.len(),
                Value::from(issues.clone())
            )?;
        }
        Ok(())
    }
}

/// The audio backends the controller knows; anything else reads as `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioBackend {
    Alsa,
    Jack,
    Pipewire,
    #[serde(other)]
    Unknown,
}

// ---------------------------------------------------------------------------------------
// 1, 2 — node heartbeat and inventory
// ---------------------------------------------------------------------------------------

/// The only node status the agent reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Online,
}

/// `POST /nodes/{nodeId}/heartbeat` body. Sent every few seconds; the node shows offline
/// 120 s after the last one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeHeartbeat {
    /// 1 to 80 characters.
    pub agent_version: String,
    pub hostname: String,
    /// At most 16.
    pub ip_addresses: Vec<String>,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// An inventory snapshot; the full inventory goes through [`Inventory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default)]
    pub audio_backends: Vec<AudioBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
}

/// `POST /nodes/{nodeId}/inventory` body: only `interfaces` is read (at most 64).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub interfaces: Vec<Interface>,
}

/// One capture interface. The controller matches interfaces across inventories by
/// `systemRef`, else `systemName`: `system_ref` must be a stable identity (card id, USB
/// serial or path), never a card index, which changes on replug.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub alias: String,
    pub backend: AudioBackend,
    /// 0 to 256.
    pub channel_count: u16,
    pub channels: Vec<ChannelInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_path: Option<String>,
    /// At most 16.
    pub sample_rates: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    pub system_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_ref: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    pub alias: String,
    /// 1-based.
    pub index: u16,
}

// ---------------------------------------------------------------------------------------
// 3 — node config
// ---------------------------------------------------------------------------------------

/// `GET /nodes/{nodeId}/config` reply. Missing or `null` parts read as their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub recording_capacity: RecordingCapacity,
    #[serde(default, deserialize_with = "null_as_default")]
    pub recorder_cache_policies: Vec<CachePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_defaults: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_enhancement: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingCapacity {
    #[serde(default = "one", deserialize_with = "null_as_one")]
    pub max_concurrent_recordings: u32,
}

impl Default for RecordingCapacity {
    fn default() -> Self {
        RecordingCapacity {
            max_concurrent_recordings: 1,
        }
    }
}

/// A recorder-cache retention policy (also a job's `recorderCacheRetention`). The
/// thresholds are `null` when the policy does not use them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachePolicy {
    #[serde(default)]
    pub policy_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub delete_after_upload: bool,
    #[serde(default)]
    pub max_age_days: Option<f64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub min_free_disk_percent: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// 4 — meter frame
// ---------------------------------------------------------------------------------------

/// `POST /nodes/{nodeId}/meter-frame` body. `node_id` must be this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterFrame {
    /// ISO 8601.
    pub captured_at: String,
    pub interface_id: String,
    pub node_id: String,
    /// At most 512.
    pub levels: Vec<MeterLevel>,
}

/// One channel's level. dBFS values are clamped to the controller's -160..24 when
/// serialized, and a non-finite value (the `-inf` of digital silence, a NaN) is written
/// as -160: JSON has no infinities and `serde_json` would write `null`, which is a 400.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterLevel {
    /// 1-based.
    pub channel_index: u16,
    pub label: String,
    #[serde(serialize_with = "dbfs")]
    pub peak_dbfs: f64,
    #[serde(serialize_with = "dbfs")]
    pub rms_dbfs: f64,
    pub clipping: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Value>,
}

/// The controller's dBFS range.
pub const DBFS_RANGE: (f64, f64) = (-160.0, 24.0);

fn dbfs<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    let v = if v.is_nan() {
        DBFS_RANGE.0
    } else {
        v.clamp(DBFS_RANGE.0, DBFS_RANGE.1)
    };
    s.serialize_f64(v)
}

// ---------------------------------------------------------------------------------------
// 5 — health events
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// `POST /nodes/{nodeId}/health-events` body. The server's schema is strict (unknown keys
/// are a 400), so `None`s are never written. Not idempotent on the server: `id` survives
/// only as `details.localEventId`, and a resend creates a duplicate — journal the 201.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthEvent {
    /// E.g. `agent.capture.device_lost`; must not start with `controller.` or `watchdog.`.
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    #[serde(default)]
    pub details: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
}

/// Event type prefixes the server reserves for itself.
pub const RESERVED_EVENT_PREFIXES: [&str; 2] = ["controller.", "watchdog."];

impl HealthEvent {
    pub fn new(kind: impl Into<String>, severity: Severity) -> HealthEvent {
        HealthEvent {
            kind: kind.into(),
            severity,
            details: Map::new(),
            id: None,
            opened_at: None,
            recording_id: None,
            schedule_id: None,
        }
    }

    /// What the server would refuse with a 400, found before sending.
    pub fn check(&self) -> Result<(), String> {
        if self.kind.trim().is_empty() {
            return Err("health event type is empty".into());
        }
        if let Some(p) = RESERVED_EVENT_PREFIXES
            .iter()
            .find(|p| self.kind.starts_with(**p))
        {
            return Err(format!(
                "health event type {:?} uses the server's reserved prefix {p:?}",
                self.kind
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------

/// A job's controller status. Statuses this agent does not know read as `Unknown` (a newer
/// controller must not crash an older agent).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum JobStatus {
    Queued,
    Running,
    StopRequested,
    Completed,
    Failed,
    Cancelled,
    Unknown(String),
}

impl JobStatus {
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::StopRequested => "stop_requested",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Unknown(s) => s,
        }
    }

    /// Completed, failed or cancelled: nothing more to post for this job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl From<String> for JobStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "stop_requested" => JobStatus::StopRequested,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Unknown(s),
        }
    }
}

impl From<JobStatus> for String {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Unknown(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recording job as the controller sent it, read leniently: every field is an `Option`
/// that is `None` when the field is missing, `null`, or of the wrong type, so that a broken
/// job can still be identified and reported failed. [`Job::validate`] turns it into a
/// [`ValidJob`] or a [`JobRejection`] with the reason to send.
///
/// The JSON as received is kept ([`Job::raw`]) and is what a `Job` serializes to, so the
/// journal stores exactly what the controller sent, unknown fields included.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Job {
    pub id: Option<String>,
    pub node_id: Option<String>,
    pub recording_id: Option<String>,
    pub status: Option<JobStatus>,
    pub created_at: Option<String>,
    pub claimed_by: Option<String>,
    pub started_at: Option<String>,
    pub last_heartbeat_at: Option<String>,
    pub lease_expires_at: Option<String>,
    pub stop_requested_at: Option<String>,
    pub completed_at: Option<String>,
    pub failure_reason: Option<String>,
    /// All `None` when `command` is missing or not an object.
    pub command: JobCommand,
    raw: Value,
}

/// A job's `command`, read leniently (see [`Job`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCommand {
    /// `alsa_capture` is the only type there is.
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `alsa`, `jack` or `pipewire`.
    #[serde(default, deserialize_with = "lenient")]
    pub capture_backend: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub capture_device: Option<String>,
    /// An ALSA format name such as `S16_LE`.
    #[serde(default, deserialize_with = "lenient")]
    pub capture_format: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub capture_sample_rate: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub capture_channels: Option<u16>,
    /// 1-based device channels this job renders, in order.
    #[serde(default, deserialize_with = "lenient")]
    pub capture_channel_selection: Option<Vec<u16>>,
    /// Jobs sharing this id share one device and window: capture once, render each.
    #[serde(default, deserialize_with = "lenient")]
    pub capture_group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub capture_interface_id: Option<String>,
    /// A number: fractional seconds are allowed (`12.5`).
    #[serde(default, deserialize_with = "lenient")]
    pub duration_seconds: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub chunk_seconds: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub track_group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub track_index: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub track_total: Option<u32>,
    /// `mp3`, `flac` or `wav`.
    #[serde(default, deserialize_with = "lenient")]
    pub output_codec: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub output_bitrate_kbps: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub output_vbr: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub output_file_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub channel_map: Option<ChannelMap>,
    #[serde(default, deserialize_with = "lenient")]
    pub recorder_cache_retention: Option<CachePolicy>,
    /// Passed through to the renderer as is.
    #[serde(default, deserialize_with = "lenient")]
    pub enhancement: Option<Value>,
}

/// A job's resolved channel map (from a channel-map template assignment).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelMap {
    pub assignment_id: String,
    /// `mono`, `stereo`, `mono_to_stereo_mix` or `multichannel`.
    pub channel_mode: String,
    pub entries: Vec<ChannelMapEntry>,
    pub source_channels: u16,
    pub target_id: String,
    /// `node` or `interface`.
    pub target_type: String,
    pub template_id: String,
    pub template_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelMapEntry {
    pub included: bool,
    pub label: String,
    pub output_channel_index: Option<u16>,
    pub source_channel_index: u16,
}

impl Job {
    /// Reads a job from any JSON value; never fails. A non-object reads as a job with
    /// every field `None`.
    pub fn from_value(raw: Value) -> Job {
        let command = raw
            .get("command")
            .and_then(|c| JobCommand::deserialize(c).ok())
            .unwrap_or_default();
        Job {
            id: field(&raw, "id"),
            node_id: field(&raw, "nodeId"),
            recording_id: field(&raw, "recordingId"),
            status: field(&raw, "status"),
            created_at: field(&raw, "createdAt"),
            claimed_by: field(&raw, "claimedBy"),
            started_at: field(&raw, "startedAt"),
            last_heartbeat_at: field(&raw, "lastHeartbeatAt"),
            lease_expires_at: field(&raw, "leaseExpiresAt"),
            stop_requested_at: field(&raw, "stopRequestedAt"),
            completed_at: field(&raw, "completedAt"),
            failure_reason: field(&raw, "failureReason"),
            command,
            raw,
        }
    }

    /// The JSON exactly as the controller sent it.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Checks every field the agent needs (`PROTOCOL.md` "The job") and that none is
    /// absurd. On rejection, report the job failed with [`JobRejection::reason`] (when it
    /// has an id at all); never run it.
    pub fn validate(&self) -> Result<ValidJob, JobRejection> {
        let reject = |field: &'static str, problem: String| JobRejection {
            job_id: self.id.clone(),
            field,
            problem,
        };
        let id = self.text("id", &self.id, reject)?;
        let node_id = self.text("nodeId", &self.node_id, reject)?;
        let recording_id = self.text("recordingId", &self.recording_id, reject)?;
        let status = match &self.status {
            Some(s) => s.clone(),
            None => return Err(reject("status", self.absent("/status"))),
        };

        let c = &self.command;
        if let Some(kind) = &c.kind
            && kind != "alsa_capture"
        {
            return Err(reject("command.type", format!("unsupported type {kind:?}")));
        }
        let device = self.text("command.captureDevice", &c.capture_device, reject)?;
        let format = match &c.capture_format {
            None => {
                return Err(reject(
                    "command.captureFormat",
                    self.absent("/command/captureFormat"),
                ));
            }
            Some(f) => f
                .parse::<SampleFormat>()
                .map_err(|e| reject("command.captureFormat", e.to_string()))?,
        };
        let sample_rate = self.number(
            "command.captureSampleRate",
            "/command/captureSampleRate",
            c.capture_sample_rate.map(u64::from),
            SAMPLE_RATES,
            reject,
        )? as u32;
        let channels = self.number(
            "command.captureChannels",
            "/command/captureChannels",
            c.capture_channels.map(u64::from),
            CHANNELS,
            reject,
        )? as u16;
        let duration_seconds = match c.duration_seconds {
            None => {
                return Err(reject(
                    "command.durationSeconds",
                    self.absent("/command/durationSeconds"),
                ));
            }
            Some(d) if !d.is_finite() || d <= 0.0 || d > DURATION_SECONDS.1 as f64 => {
                return Err(reject(
                    "command.durationSeconds",
                    format!("{d} is outside (0, {}]", DURATION_SECONDS.1),
                ));
            }
            Some(d) => d,
        };
        let output_file_name = self.text("command.outputFileName", &c.output_file_name, reject)?;
        check_file_name(&output_file_name)
            .map_err(|p| reject("command.outputFileName", p.to_string()))?;

        let channel_selection = match (&c.capture_channel_selection, self.present_at(SELECTION)) {
            (None, false) => None,
            (None, true) => {
                return Err(reject(
                    "command.captureChannelSelection",
                    "is not a list of channel numbers".into(),
                ));
            }
            (Some(sel), _) => Some(
                check_selection(sel, channels)
                    .map_err(|p| reject("command.captureChannelSelection", p))?,
            ),
        };
        let output_codec = match &c.output_codec {
            None if self.present_at("/command/outputCodec") => {
                return Err(reject("command.outputCodec", "is not a string".into()));
            }
            None => None,
            Some(s) => Some(
                OutputCodec::parse(s)
                    .ok_or_else(|| reject("command.outputCodec", format!("unsupported {s:?}")))?,
            ),
        };
        let chunk_seconds = match c.chunk_seconds {
            Some(0) => return Err(reject("command.chunkSeconds", "is 0".into())),
            None if self.present_at("/command/chunkSeconds") => {
                return Err(reject(
                    "command.chunkSeconds",
                    "is not a positive integer".into(),
                ));
            }
            other => other,
        };

        Ok(ValidJob {
            id,
            node_id,
            recording_id,
            status,
            device,
            format,
            sample_rate,
            channels,
            channel_selection,
            duration: Duration::from_secs_f64(duration_seconds),
            chunk_seconds,
            output_codec,
            output_file_name,
            job: self.clone(),
        })
    }

    fn present_at(&self, pointer: &str) -> bool {
        self.raw.pointer(pointer).is_some_and(|v| !v.is_null())
    }

    /// "missing", or "invalid (got ...)" when something of the wrong type is there.
    fn absent(&self, pointer: &str) -> String {
        match self.raw.pointer(pointer) {
            None | Some(Value::Null) => "missing".into(),
            Some(v) => format!("invalid (got {})", short(v)),
        }
    }

    fn text(
        &self,
        name: &'static str,
        value: &Option<String>,
        reject: impl Fn(&'static str, String) -> JobRejection,
    ) -> Result<String, JobRejection> {
        let pointer = format!("/{}", name.replace('.', "/"));
        let Some(v) = value else {
            return Err(reject(name, self.absent(&pointer)));
        };
        if v.trim().is_empty() {
            return Err(reject(name, "is empty".into()));
        }
        if v.len() > MAX_TEXT {
            return Err(reject(name, format!("is longer than {MAX_TEXT} bytes")));
        }
        if v.chars().any(char::is_control) {
            return Err(reject(name, "contains control characters".into()));
        }
        Ok(v.clone())
    }

    fn number(
        &self,
        name: &'static str,
        pointer: &str,
        value: Option<u64>,
        range: (u64, u64),
        reject: impl Fn(&'static str, String) -> JobRejection,
    ) -> Result<u64, JobRejection> {
        let v = match value {
            Some(v) => v,
            None => {
                // A number too large for the field's type is out of range, not missing.
                return Err(match self.raw.pointer(pointer).and_then(Value::as_u64) {
                    Some(v) => reject(name, out_of_range(v, range)),
                    None => reject(name, self.absent(pointer)),
                });
            }
        };
        if v < range.0 || v > range.1 {
            return Err(reject(name, out_of_range(v, range)));
        }
        Ok(v)
    }
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Job::from_value)
    }
}

/// Limits on a job's numbers: (min, max), inclusive.
pub const SAMPLE_RATES: (u64, u64) = (8_000, 384_000);
pub const CHANNELS: (u64, u64) = (1, 64);
/// One second to seven days.
pub const DURATION_SECONDS: (u64, u64) = (1, 7 * 24 * 3600);
const MAX_TEXT: usize = 255;
const SELECTION: &str = "/command/captureChannelSelection";

fn out_of_range(v: u64, (lo, hi): (u64, u64)) -> String {
    format!("{v} is outside {lo}..={hi}")
}

fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.contains('/') || name.contains('\\') {
        return Err("contains a path separator");
    }
    if name.contains("..") {
        return Err("contains \"..\"");
    }
    if name == "." {
        return Err("is \".\"");
    }
    Ok(())
}

fn check_selection(sel: &[u16], channels: u16) -> Result<Vec<u16>, String> {
    if sel.is_empty() {
        return Err("is empty".into());
    }
    let mut seen = [false; CHANNELS.1 as usize + 1];
    for &ch in sel {
        if ch == 0 || ch > channels {
            return Err(format!(
                "channel {ch} is outside 1..={channels} (captureChannels)"
            ));
        }
        if std::mem::replace(&mut seen[ch as usize], true) {
            return Err(format!("channel {ch} is listed twice"));
        }
    }
    Ok(sel.to_vec())
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Why a job cannot be run. The agent reports the job failed with [`Self::reason`] in
/// `x-rakkr-reason` (when `job_id` is known) and goes on with its other work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("job {}: {field} {problem}", job_id.as_deref().unwrap_or("(no id)"))]
pub struct JobRejection {
    /// `None` when the job has no usable id: it can only be logged, not reported.
    pub job_id: Option<String>,
    /// The wire name of the offending field, e.g. `command.captureSampleRate`.
    pub field: &'static str,
    pub problem: String,
}

impl JobRejection {
    /// The reason to send when failing the job, e.g.
    /// `invalid_job: command.captureChannels 0 is outside 1..=64`.
    pub fn reason(&self) -> String {
        format!("invalid_job: {} {}", self.field, self.problem)
    }
}

/// The output codecs the agent renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputCodec {
    Mp3,
    Flac,
    Wav,
}

impl OutputCodec {
    pub fn parse(s: &str) -> Option<OutputCodec> {
        match s {
            "mp3" => Some(OutputCodec::Mp3),
            "flac" => Some(OutputCodec::Flac),
            "wav" => Some(OutputCodec::Wav),
            _ => None,
        }
    }

    /// The `Content-Type` of the cache-file upload.
    pub const fn mime_type(self) -> &'static str {
        match self {
            OutputCodec::Mp3 => "audio/mpeg",
            OutputCodec::Flac => "audio/flac",
            OutputCodec::Wav => "audio/wav",
        }
    }
}

/// A job that passed [`Job::validate`]: the required fields, typed and checked. The
/// optional fields stay in `job`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidJob {
    pub id: String,
    pub node_id: String,
    pub recording_id: String,
    pub status: JobStatus,
    pub device: String,
    pub format: SampleFormat,
    pub sample_rate: u32,
    pub channels: u16,
    /// 1-based, in range, no duplicates; `None` means every channel.
    pub channel_selection: Option<Vec<u16>>,
    pub duration: Duration,
    /// `Some(n)` with n > 0: upload in chunks of n seconds.
    pub chunk_seconds: Option<u64>,
    /// `None` when the job does not say.
    pub output_codec: Option<OutputCodec>,
    /// A bare file name: no separators, no `..`.
    pub output_file_name: String,
    pub job: Job,
}

impl ValidJob {
    /// The shape of the device stream this job captures.
    pub fn stream_spec(&self) -> StreamSpec {
        StreamSpec {
            format: self.format,
            rate: self.sample_rate,
            channels: self.channels,
        }
    }
}

// ---------------------------------------------------------------------------------------
// 11 — cache-file reply; 12 — channel-map assignments
// ---------------------------------------------------------------------------------------

/// The 201 reply of `PUT /recordings/{recordingId}/cache-file` (inside `data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheFileReply {
    pub file: CachedFile,
    #[serde(default)]
    pub recording: Value,
    #[serde(default, deserialize_with = "null_as_default")]
    pub upload_queue_items: Vec<Value>,
}

/// What the controller stored. Compare `checksum` with the agent's own before deleting
/// anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedFile {
    #[serde(default)]
    pub cache_path: String,
    /// `sha256:<hex>`.
    pub checksum: String,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub mime_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform_preview: Option<Value>,
}

impl CachedFile {
    /// The hex digest of `checksum`, lower-cased, if it is a `sha256:` one.
    pub fn sha256_hex(&self) -> Option<String> {
        self.checksum
            .strip_prefix("sha256:")
            .map(|h| h.trim().to_ascii_lowercase())
    }
}

/// One entry of `GET /nodes/{nodeId}/channel-map-assignments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelMapBundle {
    pub assignment: ChannelMapAssignment,
    pub template: ChannelMapTemplate,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelMapAssignment {
    pub assigned_at: String,
    pub id: String,
    pub target_id: String,
    pub target_type: String,
    pub template_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelMapTemplate {
    pub channel_mode: String,
    pub entries: Vec<ChannelMapEntry>,
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------

/// A field of the wrong type reads as `None` instead of failing the whole body.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(if v.is_null() {
        None
    } else {
        serde_json::from_value(v).ok()
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn null_as_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.unwrap_or(1))
}

fn one() -> u32 {
    1
}

fn field<T: DeserializeOwned>(obj: &Value, key: &str) -> Option<T> {
    obj.get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| T::deserialize(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_json() -> Value {
        json!({
            "id": "job_0b6c1f1e-6a5e-4c1e-9d7a-3f2f8f1f2a10",
            "nodeId": "node_1",
            "recordingId": "rec_1",
            "status": "running",
            "createdAt": "2026-11-23T01:00:00.000Z",
            "claimedBy": "node_1",
            "startedAt": "2026-11-23T01:00:01.000Z",
            "lastHeartbeatAt": "2026-11-23T01:00:01.000Z",
            "leaseExpiresAt": "2026-11-23T01:00:31.000Z",
            "scheduleId": "sched_9",
            "somethingNew": {"nested": [1, 2, 3]},
            "command": command_json()
        })
    }

    fn command_json() -> Value {
        let channel_map = json!({
            "assignmentId": "asg_1", "channelMode": "stereo", "sourceChannels": 8,
            "targetId": "node_1", "targetType": "node", "templateId": "tpl_1",
            "templateName": "Room A",
            "entries": [{"included": true, "label": "L", "outputChannelIndex": 1,
                         "sourceChannelIndex": 3, "gainDb": 0}]
        });
        let retention = json!({"policyId": "pol_1", "deleteAfterUpload": false,
            "maxAgeDays": 14, "maxBytes": null, "minFreeDiskPercent": 10.5});
        json!({
                "type": "alsa_capture",
                "captureBackend": "alsa",
                "captureDevice": "plughw:CARD=USB,DEV=0",
                "captureFormat": "S24_3LE",
                "captureSampleRate": 48000,
                "captureChannels": 8,
                "captureChannelSelection": [3, 4],
                "captureGroupId": "grp_1",
                "durationSeconds": 3600,
                "chunkSeconds": 600,
                "trackGroupId": "tg_1",
                "trackIndex": 2,
                "trackTotal": 4,
                "outputCodec": "flac",
                "outputFileName": "room-a-2026-11-23.flac",
                "channelMap": channel_map,
                "recorderCacheRetention": retention,
                "enhancement": {"denoise": true},
                "futureKnob": 42
        })
    }

    #[test]
    fn parses_a_real_looking_job_with_unknown_fields() {
        let job: Job = serde_json::from_value(job_json()).unwrap();
        assert_eq!(job.status, Some(JobStatus::Running));
        assert_eq!(job.command.capture_channel_selection, Some(vec![3, 4]));
        assert_eq!(job.command.channel_map.as_ref().unwrap().entries.len(), 1);
        let retention = job.command.recorder_cache_retention.as_ref().unwrap();
        assert_eq!(retention.max_age_days, Some(14.0));
        assert_eq!(retention.max_bytes, None);
        let valid = job.validate().unwrap();
        assert_eq!(valid.format, SampleFormat::S24Le3);
        assert_eq!(valid.duration, Duration::from_secs(3600));
        assert_eq!(valid.output_codec, Some(OutputCodec::Flac));
        assert_eq!(valid.stream_spec().bytes_per_frame(), 24);
        // The journal keeps exactly what was sent, unknown fields included.
        assert_eq!(serde_json::to_value(&job).unwrap(), job_json());
    }

    #[test]
    fn job_envelope_and_group() {
        let body = json!({"data": [job_json(), {"id": "job_2", "command": "garbage"}, 7]});
        let env: Envelope<Vec<Job>> = serde_json::from_value(body).unwrap();
        assert_eq!(env.data.len(), 3);
        assert!(env.data[0].validate().is_ok());
        let broken = env.data[1].validate().unwrap_err();
        assert_eq!(broken.job_id.as_deref(), Some("job_2"));
        assert_eq!(env.data[2].id, None);
    }

    #[test]
    fn unknown_status_is_kept() {
        let mut v = job_json();
        v["status"] = json!("paused_by_operator");
        let job = Job::from_value(v);
        assert_eq!(
            job.status,
            Some(JobStatus::Unknown("paused_by_operator".into()))
        );
        assert_eq!(job.status.as_ref().unwrap().as_str(), "paused_by_operator");
        assert_eq!(
            serde_json::to_value(JobStatus::StopRequested).unwrap(),
            json!("stop_requested")
        );
    }

    #[test]
    fn each_rejection_reason() {
        // (pointer to change, new value or None to remove, field, expected words)
        let cases: &[(&str, Option<Value>, &str, &str)] = &[
            ("/id", None, "id", "missing"),
            ("/id", Some(json!(17)), "id", "invalid (got 17)"),
            ("/id", Some(json!("  ")), "id", "is empty"),
            ("/nodeId", None, "nodeId", "missing"),
            ("/recordingId", Some(json!(null)), "recordingId", "missing"),
            ("/status", None, "status", "missing"),
            (
                "/command/type",
                Some(json!("video")),
                "command.type",
                "unsupported",
            ),
            (
                "/command/captureDevice",
                None,
                "command.captureDevice",
                "missing",
            ),
            (
                "/command/captureDevice",
                Some(json!("hw:0\n")),
                "command.captureDevice",
                "control",
            ),
            (
                "/command/captureFormat",
                None,
                "command.captureFormat",
                "missing",
            ),
            (
                "/command/captureFormat",
                Some(json!("S8")),
                "command.captureFormat",
                "unknown sample format",
            ),
            (
                "/command/captureSampleRate",
                None,
                "command.captureSampleRate",
                "missing",
            ),
            (
                "/command/captureSampleRate",
                Some(json!(4000)),
                "command.captureSampleRate",
                "4000 is outside 8000..=384000",
            ),
            (
                "/command/captureSampleRate",
                Some(json!(768000)),
                "command.captureSampleRate",
                "outside",
            ),
            (
                "/command/captureSampleRate",
                Some(json!(10_000_000_000u64)),
                "command.captureSampleRate",
                "outside",
            ),
            (
                "/command/captureSampleRate",
                Some(json!("48000")),
                "command.captureSampleRate",
                "invalid (got \"48000\")",
            ),
            (
                "/command/captureSampleRate",
                Some(json!(48000.5)),
                "command.captureSampleRate",
                "invalid",
            ),
            (
                "/command/captureChannels",
                Some(json!(0)),
                "command.captureChannels",
                "0 is outside 1..=64",
            ),
            (
                "/command/captureChannels",
                Some(json!(65)),
                "command.captureChannels",
                "outside",
            ),
            (
                "/command/captureChannels",
                Some(json!(-2)),
                "command.captureChannels",
                "invalid",
            ),
            (
                "/command/durationSeconds",
                None,
                "command.durationSeconds",
                "missing",
            ),
            (
                "/command/durationSeconds",
                Some(json!(0)),
                "command.durationSeconds",
                "0 is outside",
            ),
            (
                "/command/durationSeconds",
                Some(json!(7 * 24 * 3600 + 1)),
                "command.durationSeconds",
                "outside",
            ),
            (
                "/command/outputFileName",
                None,
                "command.outputFileName",
                "missing",
            ),
            (
                "/command/outputFileName",
                Some(json!("")),
                "command.outputFileName",
                "is empty",
            ),
            (
                "/command/outputFileName",
                Some(json!("../etc/passwd")),
                "command.outputFileName",
                "separator",
            ),
            (
                "/command/outputFileName",
                Some(json!("a\\b.wav")),
                "command.outputFileName",
                "separator",
            ),
            (
                "/command/outputFileName",
                Some(json!("..")),
                "command.outputFileName",
                "\"..\"",
            ),
            (
                "/command/outputFileName",
                Some(json!("x".repeat(300))),
                "command.outputFileName",
                "longer",
            ),
            (
                "/command/captureChannelSelection",
                Some(json!([])),
                "command.captureChannelSelection",
                "empty",
            ),
            (
                "/command/captureChannelSelection",
                Some(json!([0])),
                "command.captureChannelSelection",
                "channel 0 is outside 1..=8",
            ),
            (
                "/command/captureChannelSelection",
                Some(json!([9])),
                "command.captureChannelSelection",
                "channel 9 is outside",
            ),
            (
                "/command/captureChannelSelection",
                Some(json!([2, 3, 2])),
                "command.captureChannelSelection",
                "channel 2 is listed twice",
            ),
            (
                "/command/captureChannelSelection",
                Some(json!(["L"])),
                "command.captureChannelSelection",
                "not a list",
            ),
            (
                "/command/outputCodec",
                Some(json!("ogg")),
                "command.outputCodec",
                "unsupported \"ogg\"",
            ),
            (
                "/command/outputCodec",
                Some(json!(3)),
                "command.outputCodec",
                "not a string",
            ),
            (
                "/command/chunkSeconds",
                Some(json!(0)),
                "command.chunkSeconds",
                "is 0",
            ),
            (
                "/command/chunkSeconds",
                Some(json!(-5)),
                "command.chunkSeconds",
                "not a positive integer",
            ),
            ("/command", None, "command.captureDevice", "missing"),
            (
                "/command",
                Some(json!("alsa")),
                "command.captureDevice",
                "missing",
            ),
        ];
        for (pointer, value, field, words) in cases {
            let mut v = job_json();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            match value {
                Some(value) => obj.insert(key.to_string(), value.clone()),
                None => obj.remove(key),
            };
            let err = Job::from_value(v)
                .validate()
                .expect_err(&format!("{pointer} = {value:?} should be rejected"));
            assert_eq!(err.field, *field, "{pointer} = {value:?}: {err}");
            assert!(
                err.problem.contains(words),
                "{pointer} = {value:?}: {:?} lacks {words:?}",
                err.problem
            );
            assert!(err.reason().starts_with("invalid_job: "));
            assert!(!err.reason().contains('\n'));
        }
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let v = json!({
            "id": "job_1", "nodeId": "n", "recordingId": "r", "status": "queued",
            "command": {"captureDevice": "hw:CARD=X", "captureFormat": "S16_LE",
                        "captureSampleRate": 44100, "captureChannels": 2,
                        "durationSeconds": 60, "outputFileName": "a.wav"}
        });
        let valid = Job::from_value(v).validate().unwrap();
        assert_eq!(valid.channel_selection, None);
        assert_eq!(valid.output_codec, None);
        assert_eq!(valid.chunk_seconds, None);
    }

    #[test]
    fn health_event_skips_nones() {
        let mut ev = HealthEvent::new("agent.capture.device_lost", Severity::Critical);
        ev.details.insert("device".into(), json!("hw:CARD=USB"));
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"type": "agent.capture.device_lost", "severity": "critical",
                   "details": {"device": "hw:CARD=USB"}})
        );
        ev.id = Some("evt_1".into());
        ev.recording_id = Some("rec_1".into());
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["recordingId"], "rec_1");
        assert!(v.get("openedAt").is_none() && v.get("scheduleId").is_none());
        assert!(ev.check().is_ok());
        assert!(
            HealthEvent::new("watchdog.x", Severity::Info)
                .check()
                .is_err()
        );
        assert!(
            HealthEvent::new("controller.x", Severity::Info)
                .check()
                .is_err()
        );
    }

    #[test]
    fn heartbeat_is_camel_case_without_nones() {
        let hb = NodeHeartbeat {
            agent_version: "edgerec 0.1.0".into(),
            hostname: "box-1".into(),
            ip_addresses: vec!["10.0.0.5".into()],
            status: NodeStatus::Online,
            runtime: Some(Runtime {
                audio_backends: vec![AudioBackend::Alsa],
                uptime_seconds: Some(12),
                ..Runtime::default()
            }),
            interfaces: None,
        };
        let v = serde_json::to_value(&hb).unwrap();
        assert_eq!(
            v,
            json!({"agentVersion": "edgerec 0.1.0", "hostname": "box-1",
                   "ipAddresses": ["10.0.0.5"], "status": "online",
                   "runtime": {"audioBackends": ["alsa"], "uptimeSeconds": 12}})
        );
        let iface = Interface {
            alias: "USB".into(),
            backend: AudioBackend::Alsa,
            channel_count: 2,
            channels: vec![ChannelInfo {
                alias: "L".into(),
                index: 1,
            }],
            hardware_path: None,
            sample_rates: vec![48000],
            serial_number: None,
            system_name: "hw:CARD=USB".into(),
            system_ref: Some("usb-0000:01:00.0-1".into()),
        };
        let v = serde_json::to_value(Inventory {
            interfaces: vec![iface],
        })
        .unwrap();
        assert_eq!(v["interfaces"][0]["channelCount"], 2);
        assert_eq!(v["interfaces"][0]["systemRef"], "usb-0000:01:00.0-1");
        assert!(v["interfaces"][0].get("serialNumber").is_none());
    }

    #[test]
    fn node_config_defaults() {
        let c: NodeConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c.recording_capacity.max_concurrent_recordings, 1);
        assert!(c.recorder_cache_policies.is_empty());
        let c: NodeConfig = serde_json::from_value(json!({
            "recordingCapacity": {"maxConcurrentRecordings": null},
            "recorderCachePolicies": [{"policyId": "p", "deleteAfterUpload": true,
                "maxAgeDays": null, "maxBytes": 1000000, "minFreeDiskPercent": null, "x": 1}],
            "audioDefaults": {"sampleRate": 48000}
        }))
        .unwrap();
        assert_eq!(c.recording_capacity.max_concurrent_recordings, 1);
        assert_eq!(c.recorder_cache_policies[0].max_bytes, Some(1_000_000));
        assert!(c.recorder_cache_policies[0].delete_after_upload);
        let c: NodeConfig =
            serde_json::from_value(json!({"recordingCapacity": {"maxConcurrentRecordings": 4}}))
                .unwrap();
        assert_eq!(c.recording_capacity.max_concurrent_recordings, 4);
    }

    #[test]
    fn meter_levels_are_clamped() {
        let frame = MeterFrame {
            captured_at: "2026-11-23T01:00:00.000Z".into(),
            interface_id: "if_1".into(),
            node_id: "node_1".into(),
            levels: vec![MeterLevel {
                channel_index: 1,
                label: "L".into(),
                peak_dbfs: f64::NEG_INFINITY,
                rms_dbfs: f64::NAN,
                clipping: false,
                quality: None,
            }],
        };
        let v = serde_json::to_value(&frame).unwrap();
        assert_eq!(v["levels"][0]["peakDbfs"], -160.0);
        assert_eq!(v["levels"][0]["rmsDbfs"], -160.0);
        assert_eq!(v["capturedAt"], "2026-11-23T01:00:00.000Z");
    }

    #[test]
    fn cache_file_reply() {
        let v = json!({"data": {"file": {"cachePath": "cache/rec_1/a.flac",
            "checksum": "sha256:ABCDEF", "durationSeconds": 12.5, "fileName": "a.flac",
            "mimeType": "audio/flac", "size": 1234, "waveformPreview": [0, 1]},
            "recording": {"id": "rec_1"}, "uploadQueueItems": [], "chunk": {"index": 1}}});
        let env: Envelope<CacheFileReply> = serde_json::from_value(v).unwrap();
        assert_eq!(env.data.file.size, 1234);
        assert_eq!(env.data.file.sha256_hex().as_deref(), Some("abcdef"));
    }

    #[test]
    fn error_body_from_anything() {
        let e = ErrorBody::from_bytes(br#"{"error":"Invalid body","issues":[{"path":["x"]}]}"#);
        assert_eq!(e.error, "Invalid body");
        assert_eq!(e.issues.as_ref().unwrap().len(), 1);
        let e = ErrorBody::from_bytes(b"<html>Bad Gateway</html>");
        assert_eq!(e.error, "<html>Bad Gateway</html>");
        assert!(e.issues.is_none());
    }
}
