//! The cache-file reply and the channel-map assignments.

use crate::lenient::*;
use crate::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
