//! Job validation: what the agent needs of a job, and the rejection it reports.

use crate::format::{SampleFormat, StreamSpec};
use crate::*;
use serde_json::Value;
use std::time::Duration;

impl Job {
    /// Checks every field the agent needs (`PROTOCOL.md` "The job") and that none is
    /// absurd. On rejection, report the job failed with [`JobRejection::reason`] (when it
    /// has an id at all); never run it.
    pub fn validate(&self) -> Result<ValidJob, JobRejection> {
        let reject = |field: &'static str, problem: String| JobRejection {
            job_id: self.id.clone().filter(|id| reportable_id(id)),
            field,
            problem,
        };
        let checked = |field: &'static str, value: &Option<String>| {
            let v = self.text(field, value, reject)?;
            check_id(&v).map_err(|p| reject(field, p.to_string()))?;
            Ok(v)
        };
        let id = checked("id", &self.id)?;
        let node_id = checked("nodeId", &self.node_id)?;
        let recording_id = checked("recordingId", &self.recording_id)?;
        if self.present_at("/command/captureGroupId") {
            checked("command.captureGroupId", &self.command.capture_group_id)?;
        }
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
            // Shorter than a millisecond rounds to no frames at all.
            Some(d) if !d.is_finite() || d < 0.001 || d > DURATION_SECONDS.1 as f64 => {
                let shown = if d.abs() < 1e9 {
                    d.to_string()
                } else {
                    format!("{d:e}")
                };
                return Err(reject(
                    "command.durationSeconds",
                    format!("{shown} is outside [0.001, {}]", DURATION_SECONDS.1),
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
        self.raw().pointer(pointer).is_some_and(|v| !v.is_null())
    }

    /// "missing", or "invalid (got ...)" when something of the wrong type is there.
    fn absent(&self, pointer: &str) -> String {
        match self.raw().pointer(pointer) {
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
                return Err(match self.raw().pointer(pointer).and_then(Value::as_u64) {
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

/// Longest controller id (job, recording, node, group) the agent accepts.
pub const MAX_ID: usize = 128;
/// Longest extension of an output file name (`flac`).
const MAX_EXTENSION: usize = 8;

/// A controller id (`job_…`, `rec_…`, `node_…`) is data: 1..=[`MAX_ID`] bytes of
/// `[A-Za-z0-9_-]`, so it can never be read as a path, a flag or a control sequence.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > MAX_ID {
        return Err("is longer than 128 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("has characters outside [A-Za-z0-9_-]");
    }
    Ok(())
}

/// Whether a job id that fails [`check_id`] can still be named in a `/failed` report: it
/// goes into the URL percent-encoded, so anything printable and bounded will do except a
/// dot-only segment (`..` would climb the URL path).
fn reportable_id(id: &str) -> bool {
    !id.trim().is_empty()
        && id.len() <= MAX_TEXT
        && !id.chars().any(char::is_control)
        && !id.bytes().all(|b| b == b'.')
}

/// A bare file name with a short alphanumeric extension: no separators, no `..`, no
/// leading dot (control characters and length are checked as text).
fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.contains('/') || name.contains('\\') {
        return Err("contains a path separator");
    }
    if name.contains("..") {
        return Err("contains \"..\"");
    }
    if name.starts_with('.') {
        return Err("starts with \".\"");
    }
    match name.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=MAX_EXTENSION).contains(&ext.len())
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(())
        }
        _ => Err("has no extension of 1-8 letters or digits"),
    }
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
