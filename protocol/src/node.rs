//! The node calls: heartbeat, inventory, config, meter frames, health events.

use crate::lenient::*;
use crate::*;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

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
