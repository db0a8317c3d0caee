//! A recording job as the controller sends it, read leniently field by field.

use crate::lenient::*;
use crate::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

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
    /// Gives a job that pins no `channelMap` the one the node's assignments resolved to:
    /// in the typed command and in the JSON the journal stores, so a restart renders the
    /// same map. A command that is not an object is left as it is.
    pub fn assign_channel_map(&mut self, map: ChannelMap) {
        if let Some(command) = self.raw.get_mut("command").and_then(Value::as_object_mut) {
            command.insert(
                "channelMap".into(),
                serde_json::to_value(&map).unwrap_or_default(),
            );
            self.command.channel_map = Some(map);
        }
    }

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
