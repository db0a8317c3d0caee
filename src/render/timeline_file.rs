//! `timeline.json`: the recording's quality record, shipped beside it.

use serde::Serialize;
use std::path::Path;

use crate::core::format::StreamSpec;
use crate::core::timeline::TimelineEvent;

#[derive(Debug, Serialize)]
pub struct TimelineFile {
    pub job: String,
    pub recording: String,
    pub format: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Wall time of timeline frame 0 (RFC 3339, ms).
    pub started_at: Option<String>,
    pub frames: u64,
    pub duration_seconds: f64,
    pub segments: Vec<TimelineSegment>,
    pub events: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize)]
pub struct TimelineSegment {
    pub file: String,
    pub first_frame: u64,
    pub frames: u64,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub kind: String,
    pub frame: u64,
    pub at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_frames: Option<u64>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

impl TimelineFile {
    pub fn new(
        job: &str,
        recording: &str,
        spec: StreamSpec,
        started_at_ms: Option<i64>,
        frames: u64,
        segments: Vec<TimelineSegment>,
        events: &[TimelineEvent],
    ) -> Self {
        TimelineFile {
            job: job.to_string(),
            recording: recording.to_string(),
            format: spec.format.name().to_string(),
            sample_rate: spec.rate,
            channels: spec.channels,
            started_at: started_at_ms.map(format_ms),
            frames,
            duration_seconds: frames as f64 / spec.rate as f64,
            segments,
            events: events
                .iter()
                .map(|e| TimelineEntry {
                    kind: e.kind.name().to_string(),
                    frame: e.frame,
                    at: format_ms(e.at_ms),
                    detail: e.detail.clone(),
                    gap_frames: e.gap_frames,
                })
                .collect(),
        }
    }

    /// Replaces the file (temp file, fsync, rename); the caller fsyncs its directory
    /// before acting on it (finalize does, once for all its files).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::render::replace_file(path, &json)
    }
}
