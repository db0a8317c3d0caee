//! The controller's records as the API and `Admin` show them: jobs, recordings and the
//! operator's job spec. They serialize to the wire shapes of PROTOCOL.md (camelCase, ISO
//! 8601 UTC timestamps with milliseconds, absent optional fields omitted).

use crate::time;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch; serializes as `2026-11-23T01:00:00.000Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&time::iso_ms(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time::iso_ms(self.0))
    }
}

/// Declares a string enum with its wire names, `Display`, `FromStr` and `Serialize`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// A recording job's status. `queued -> running -> completed | failed | cancelled`;
    /// `queued` and `running` may become `stop_requested`, which ends `cancelled` (or
    /// `completed`, when the stopped recording is uploaded first: see `StoppedUpload`).
    JobStatus {
        Queued = "queued",
        Running = "running",
        StopRequested = "stop_requested",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

wire_enum! {
    /// A recording's status (Rakkr's recording lifecycle, reduced to what this controller
    /// does: no cloud upload, so never `uploaded` unless a future version adds it).
    RecordingStatus {
        Queued = "queued",
        Recording = "recording",
        Completed = "completed",
        Failed = "failed",
        Cached = "cached",
        Uploaded = "uploaded",
        Partial = "partial",
    }
}

/// A recording job, as `GET /recording-jobs/{id}` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub id: String,
    pub node_id: String,
    pub recording_id: String,
    pub status: JobStatus,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_requested_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The capture command (`type: "alsa_capture"`, `captureDevice`, ...).
    pub command: Map<String, Value>,
}

impl JobSummary {
    /// The wire JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A recording: what the controller holds of a job's audio.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSummary {
    pub id: String,
    pub node_id: String,
    pub status: RecordingStatus,
    /// A primary file (or, for a chunked recording, its final chunk) has been stored.
    pub cached: bool,
    /// The primary file, relative to the server's `--store` directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_cache_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced_cache_path: Option<String>,
    /// `sha256:<hex>` of the primary file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Bytes of the primary file (of all primary chunks, for a chunked recording).
    #[serde(rename = "sizeBytes", skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// For a chunked recording: the number of chunks, known from the final one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_total: Option<u32>,
    /// How many primary chunks are stored (0 for a whole-file recording).
    pub chunk_count: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an operator asks for when adding a job (`edgerec-controller job add`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewJobSpec {
    pub node_id: String,
    pub capture_device: String,
    /// E.g. `S16_LE`.
    pub capture_format: String,
    pub capture_sample_rate: u32,
    pub capture_channels: u16,
    /// 1-based device channels to keep, in output order.
    pub capture_channel_selection: Option<Vec<u16>>,
    /// Jobs of one node sharing this id are claimed together and captured once.
    pub capture_group_id: Option<String>,
    pub duration_seconds: f64,
    /// `wav`, `flac` or `mp3`.
    pub output_codec: String,
    /// Defaults to `<recordingId>.<codec>`.
    pub output_file_name: Option<String>,
    /// Merged into the command last (so it may override the fields above): e.g.
    /// `chunkSeconds`, `trackGroupId`, `trackIndex`, `trackTotal`, `captureBackend`.
    pub extra_command: Map<String, Value>,
}

impl NewJobSpec {
    /// A job with the common defaults: S16_LE, 48 kHz, 2 channels, WAV.
    pub fn new(node_id: &str, capture_device: &str, duration_seconds: f64) -> NewJobSpec {
        NewJobSpec {
            node_id: node_id.to_string(),
            capture_device: capture_device.to_string(),
            capture_format: "S16_LE".to_string(),
            capture_sample_rate: 48_000,
            capture_channels: 2,
            capture_channel_selection: None,
            capture_group_id: None,
            duration_seconds,
            output_codec: "wav".to_string(),
            output_file_name: None,
            extra_command: Map::new(),
        }
    }

    /// The job's `command` object, or what is wrong with the spec.
    pub(crate) fn command(&self, recording_id: &str) -> Result<Map<String, Value>, String> {
        let nonempty = |what: &str, v: &str| {
            if v.trim().is_empty() {
                Err(format!("{what} is empty"))
            } else {
                Ok(())
            }
        };
        nonempty("capture device", &self.capture_device)?;
        nonempty("capture format", &self.capture_format)?;
        if !(1..=384_000).contains(&self.capture_sample_rate) {
            return Err(format!(
                "sample rate {} is outside 1..=384000",
                self.capture_sample_rate
            ));
        }
        if !(1..=256).contains(&self.capture_channels) {
            return Err(format!(
                "channel count {} is outside 1..=256",
                self.capture_channels
            ));
        }
        if let Some(sel) = &self.capture_channel_selection {
            if sel.is_empty() {
                return Err("channel selection is empty".into());
            }
            for (i, c) in sel.iter().enumerate() {
                if *c < 1 || *c > self.capture_channels {
                    return Err(format!(
                        "selected channel {c} is outside 1..={}",
                        self.capture_channels
                    ));
                }
                if sel[..i].contains(c) {
                    return Err(format!("channel {c} is selected twice"));
                }
            }
        }
        if !(self.duration_seconds.is_finite() && self.duration_seconds > 0.0) {
            return Err(format!(
                "duration {} s is not a positive number",
                self.duration_seconds
            ));
        }
        if !matches!(self.output_codec.as_str(), "wav" | "flac" | "mp3") {
            return Err(format!(
                "output codec {:?} is not wav, flac or mp3",
                self.output_codec
            ));
        }
        let file_name = match &self.output_file_name {
            Some(name) => name.clone(),
            None => format!("{recording_id}.{}", self.output_codec),
        };
        nonempty("output file name", &file_name)?;
        if file_name.contains(['/', '\\']) || file_name == ".." || file_name == "." {
            return Err(format!(
                "output file name {file_name:?} is not a plain name"
            ));
        }
        if let Some(g) = &self.capture_group_id {
            nonempty("capture group id", g)?;
        }
        let mut c = Map::new();
        c.insert("type".into(), "alsa_capture".into());
        c.insert("captureDevice".into(), self.capture_device.clone().into());
        c.insert("captureFormat".into(), self.capture_format.clone().into());
        c.insert("captureSampleRate".into(), self.capture_sample_rate.into());
        c.insert("captureChannels".into(), self.capture_channels.into());
        if let Some(sel) = &self.capture_channel_selection {
            c.insert("captureChannelSelection".into(), sel.clone().into());
        }
        if let Some(g) = &self.capture_group_id {
            c.insert("captureGroupId".into(), g.clone().into());
        }
        c.insert("durationSeconds".into(), self.duration_seconds.into());
        c.insert("outputCodec".into(), self.output_codec.clone().into());
        c.insert("outputFileName".into(), file_name.into());
        for (k, v) in &self.extra_command {
            c.insert(k.clone(), v.clone());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_wire_shape() {
        let job = JobSummary {
            id: "job_1".into(),
            node_id: "node_1".into(),
            recording_id: "rec_1".into(),
            status: JobStatus::StopRequested,
            created_at: Timestamp(0),
            claimed_by: Some("node_1".into()),
            started_at: None,
            last_heartbeat_at: None,
            lease_expires_at: Some(Timestamp(30_000)),
            stop_requested_at: None,
            completed_at: None,
            failure_reason: None,
            command: Map::new(),
        };
        assert_eq!(
            job.to_json(),
            json!({"id": "job_1", "nodeId": "node_1", "recordingId": "rec_1",
                   "status": "stop_requested", "createdAt": "1970-01-01T00:00:00.000Z",
                   "claimedBy": "node_1", "leaseExpiresAt": "1970-01-01T00:00:30.000Z",
                   "command": {}})
        );
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), *s);
        }
    }

    #[test]
    fn spec_to_command() {
        let mut spec = NewJobSpec::new("node_1", "hw:CARD=USB", 30.0);
        spec.capture_channel_selection = Some(vec![2]);
        spec.extra_command.insert("chunkSeconds".into(), json!(10));
        let c = spec.command("rec_1").unwrap();
        assert_eq!(c["outputFileName"], "rec_1.wav");
        assert_eq!(c["captureChannelSelection"], json!([2]));
        assert_eq!(c["chunkSeconds"], 10);
        assert_eq!(c["type"], "alsa_capture");
        for (change, words) in [
            (
                (|s: &mut NewJobSpec| s.capture_channel_selection = Some(vec![3]))
                    as fn(&mut NewJobSpec),
                "outside",
            ),
            (|s| s.duration_seconds = 0.0, "positive"),
            (|s| s.output_codec = "ogg".into(), "codec"),
            (|s| s.output_file_name = Some("../x".into()), "plain"),
            (|s| s.capture_device = " ".into(), "empty"),
        ] {
            let mut spec = NewJobSpec::new("node_1", "hw:0", 1.0);
            change(&mut spec);
            let err = spec.command("rec_1").unwrap_err();
            assert!(err.contains(words), "{err}");
        }
    }
}
