//! A job's render: its output options (from the controller's command, or `edgerec
//! record`/`render` flags under the same wire names), the deliverable's names, and the
//! `render.json` sidecar that tells the upload what is in the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::channel_map::{self, ChannelMode, MapError, Mix};
use super::codec::{self, Codec, Facts};
use super::delivery::{StitchedBody, StitchedView};
use super::pipeline::{RenderReport, RenderRequest};
use crate::controller::client::{FileBody, UploadBody};
use crate::controller::protocol::{ChannelMap, ChannelMapEntry, JobCommand};
use crate::core::format::StreamSpec;
use crate::core::timeline::Piece;

/// The sidecar beside the rendered file.
pub const RENDER_FILE: &str = "render.json";
/// The stem of the rendered file in the job directory (`recording.<ext>`).
pub const RECORDING_STEM: &str = "recording";
pub const PEAKS_FILE: &str = "peaks.json";

/// What to render, as the job (or the command line) says it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_codec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bitrate_kbps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_vbr: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bits: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_channel_selection: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_map: Option<ChannelMap>,
    /// Render (and upload) in chunks of this many seconds of capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobRenderError {
    #[error("{0}")]
    Map(#[from] MapError),
    #[error("unsupported outputCodec {0:?} (expected one of wav, flac, mp3)")]
    UnknownCodec(String),
}

impl OutputOptions {
    /// Reads the options from a job's command JSON (`{"command": {...}}` or the command
    /// itself). Each field is read on its own: a malformed one is as if absent.
    pub fn from_command_json(json: &str) -> OutputOptions {
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let c = v.get("command").unwrap_or(&v);
        let cmd = JobCommand::deserialize(c).unwrap_or_default();
        let num = |k: &str| c.get(k).and_then(serde_json::Value::as_u64);
        OutputOptions {
            output_codec: cmd.output_codec,
            output_bitrate_kbps: cmd.output_bitrate_kbps,
            output_vbr: cmd.output_vbr,
            output_sample_rate: num("outputSampleRate").and_then(|n| u32::try_from(n).ok()),
            output_bits: num("outputBits").and_then(|n| u16::try_from(n).ok()),
            output_file_name: cmd.output_file_name.filter(|n| !n.is_empty()),
            capture_channel_selection: cmd.capture_channel_selection.filter(|s| !s.is_empty()),
            channel_map: cmd.channel_map,
            chunk_seconds: cmd.chunk_seconds.filter(|&n| n > 0),
        }
    }

    /// The codec: `outputCodec`, else what the file name's extension says, else WAV.
    pub fn codec(&self) -> Result<&'static Codec, JobRenderError> {
        match &self.output_codec {
            Some(name) => {
                codec::codec(name).ok_or_else(|| JobRenderError::UnknownCodec(name.clone()))
            }
            None => Ok(self
                .output_file_name
                .as_deref()
                .and_then(codec::codec_for_file_name)
                .unwrap_or(&codec::CODECS[0])),
        }
    }

    /// The name the upload carries: the job's, with the codec's extension (an extension
    /// that names another codec is replaced), else `recording.<ext>`.
    pub fn delivered_name(&self, codec: &Codec) -> String {
        let Some(name) = self.output_file_name.as_deref() else {
            return format!("{RECORDING_STEM}.{}", codec.extension);
        };
        match name.rsplit_once('.') {
            Some((_, ext)) if ext.eq_ignore_ascii_case(codec.extension) => name.to_string(),
            Some((stem, ext))
                if codec::CODECS
                    .iter()
                    .any(|c| c.extension.eq_ignore_ascii_case(ext)) =>
            {
                format!("{stem}.{}", codec.extension)
            }
            _ => format!("{name}.{}", codec.extension),
        }
    }

    /// A map from command-line words: `mode` (mono, stereo, ...) over `selection` (1-based
    /// device channels, in order; all of them when empty).
    pub fn set_channels(&mut self, mode: Option<&str>, selection: &[u16]) -> Result<(), MapError> {
        if !selection.is_empty() {
            self.capture_channel_selection = Some(selection.to_vec());
        }
        let Some(mode) = mode else { return Ok(()) };
        ChannelMode::parse(mode).ok_or_else(|| MapError::UnknownMode(mode.to_string()))?;
        self.channel_map = Some(ChannelMap {
            channel_mode: mode.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// The mix for a capture of `channels` channels. A map given without entries (from
    /// the command line) covers every selected channel, in order.
    pub fn mix(&self, channels: u16) -> Result<Mix, MapError> {
        let selection = self.capture_channel_selection.as_deref();
        let mut map = self.channel_map.clone();
        if let Some(m) = map.as_mut().filter(|m| m.entries.is_empty()) {
            let n = selection.map_or(channels as usize, <[u16]>::len) as u16;
            m.entries = (1..=n)
                .map(|i| ChannelMapEntry {
                    included: true,
                    label: String::new(),
                    output_channel_index: Some(i),
                    source_channel_index: i,
                })
                .collect();
        }
        channel_map::resolve(channels, selection, map.as_ref())
    }

    /// The pipeline request for `plan` (segments of `spec`).
    pub fn request(
        &self,
        plan: Vec<Piece<PathBuf>>,
        spec: StreamSpec,
        facts: Facts,
    ) -> Result<RenderRequest, JobRenderError> {
        let codec = self.codec()?;
        Ok(RenderRequest {
            plan,
            spec,
            mix: self.mix(spec.channels)?,
            codec,
            bits: self.output_bits.filter(|&b| b != 0),
            float: false,
            rate: self.output_sample_rate,
            bitrate_kbps: self.output_bitrate_kbps,
            vbr: self.output_vbr.unwrap_or(false),
            facts,
        })
    }
}

/// `render.json`: the rendered file and what the upload says about it, or why the job's
/// options could not be rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderSidecar {
    /// The file in the job directory.
    pub file: String,
    /// The name the upload carries.
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<RenderReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A WAV delivered from the segments (no `file`): the view to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StitchedView>,
}

impl RenderSidecar {
    pub fn failed(reason: &str) -> RenderSidecar {
        RenderSidecar {
            file: String::new(),
            file_name: String::new(),
            report: None,
            error: Some(reason.to_string()),
            stream: None,
        }
    }

    /// Replaces `render.json` (temp file, fsync, rename); the caller fsyncs `job_dir`
    /// before acting on it (finalize does, once for all its files).
    pub fn write(&self, job_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        super::replace_file(&job_dir.join(RENDER_FILE), &json)
    }
}

/// What the upload sends: the file, its name, its type and the audio actually in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deliverable {
    /// The rendered file, or the job directory when the WAV streams from its segments.
    pub path: PathBuf,
    pub file_name: String,
    pub content_type: String,
    pub duration_seconds: f64,
    /// The stitched view and its SHA-256 (empty: not taken before the upload), for a WAV
    /// delivered from the segments.
    pub stream: Option<(StitchedView, String)>,
}

impl Deliverable {
    /// The bytes to upload.
    pub fn body(&self) -> Box<dyn UploadBody> {
        match &self.stream {
            Some((view, sha256)) => Box::new(StitchedBody {
                dir: self.path.clone(),
                view: view.clone(),
                sha256: sha256.clone(),
            }),
            None => Box::new(FileBody(self.path.clone())),
        }
    }

    /// SHA-256 and length of what [`Deliverable::body`] sends: a file is hashed; a
    /// stream's length is its view's, and its SHA-256 is what its sidecar says (empty
    /// since finalize stopped reading the recording: the upload hashes what it sends).
    pub fn hash(&self) -> std::io::Result<(String, u64)> {
        match &self.stream {
            Some((view, sha256)) => Ok((sha256.clone(), view.len())),
            None => super::pipeline::hash_file(&self.path),
        }
    }
}

/// What a job directory's render left.
#[derive(Clone, Debug, PartialEq)]
pub enum RenderOutcome {
    Ready(Deliverable),
    /// The job's options could not be rendered; the reason names the problem.
    Refused(String),
    /// Nothing rendered (no audio, or not rendered yet).
    Missing,
}

/// The render outcome of a job directory, from its `render.json`.
pub fn render_outcome(job_dir: &Path) -> RenderOutcome {
    let side = std::fs::read(job_dir.join(RENDER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<RenderSidecar>(&b).ok());
    match side {
        Some(RenderSidecar {
            error: Some(reason),
            ..
        }) => RenderOutcome::Refused(reason),
        _ => deliverable(job_dir).map_or(RenderOutcome::Missing, RenderOutcome::Ready),
    }
}

/// The deliverable of a rendered job directory, from its `render.json`. A directory
/// rendered before renders had sidecars holds a stitched `recording.wav`: that, as WAV.
pub fn deliverable(job_dir: &Path) -> Option<Deliverable> {
    if let Some(side) = std::fs::read(job_dir.join(RENDER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<RenderSidecar>(&b).ok())
    {
        let report = side.report?;
        if let Some(view) = side.stream {
            return Some(Deliverable {
                path: job_dir.to_path_buf(),
                file_name: side.file_name,
                content_type: report.content_type,
                duration_seconds: report.duration_seconds,
                stream: Some((view, report.sha256)),
            });
        }
        let path = job_dir.join(&side.file);
        return path.exists().then_some(Deliverable {
            path,
            file_name: side.file_name,
            content_type: report.content_type,
            duration_seconds: report.duration_seconds,
            stream: None,
        });
    }
    let path = job_dir.join(format!("{RECORDING_STEM}.wav"));
    let reader = hound::WavReader::open(&path).ok()?;
    let duration_seconds =
        f64::from(reader.duration()) / f64::from(reader.spec().sample_rate.max(1));
    Some(Deliverable {
        path,
        file_name: format!("{RECORDING_STEM}.wav"),
        content_type: "audio/wav".into(),
        duration_seconds,
        stream: None,
    })
}

/// The broadcast facts of `job`'s recording: the controller's ids when it has them, and
/// the wall time of the capture's frame 0 (`started_at_ms`, the source's for a group member).
pub fn job_facts(job: &crate::journal::JobRow, started_at_ms: Option<i64>) -> Facts {
    Facts {
        job_id: job
            .controller_job_id
            .clone()
            .unwrap_or_else(|| job.id.clone()),
        recording_id: job.recording_id.clone().unwrap_or_default(),
        started_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_a_controller_command() {
        let json = r#"{"command": {"outputCodec": "mp3", "outputBitrateKbps": 190, "outputVbr": true,
            "outputFileName": "room.mp3", "captureChannelSelection": [3, 1], "outputSampleRate": 44100,
            "channelMap": {"channelMode": "stereo", "entries": [{"sourceChannelIndex": 1, "included": true}]}}}"#;
        let o = OutputOptions::from_command_json(json);
        assert_eq!(o.codec().unwrap().name, "mp3");
        assert_eq!(
            (o.output_bitrate_kbps, o.output_vbr, o.output_sample_rate),
            (Some(190), Some(true), Some(44_100))
        );
        assert_eq!(o.capture_channel_selection, Some(vec![3, 1]));
        assert_eq!(o.channel_map.as_ref().unwrap().entries.len(), 1);
        // Garbage reads as nothing, never as an error.
        let o = OutputOptions::from_command_json(r#"{"outputCodec": 5, "outputBits": "x"}"#);
        assert_eq!(o, OutputOptions::default());
        assert_eq!(
            OutputOptions::from_command_json("not json"),
            OutputOptions::default()
        );
    }

    #[test]
    fn codec_and_name_always_agree() {
        // (codec, file name, expected codec, expected delivered name)
        let cases = [
            (None, None, "wav", "recording.wav"),
            (None, Some("a.flac"), "flac", "a.flac"),
            (Some("mp3"), Some("a.wav"), "mp3", "a.mp3"),
            (Some("flac"), Some("a.FLAC"), "flac", "a.FLAC"),
            (Some("mp3"), Some("room-a.2026"), "mp3", "room-a.2026.mp3"),
            (Some("wav"), None, "wav", "recording.wav"),
        ];
        for (c, name, want_codec, want_name) in cases {
            let o = OutputOptions {
                output_codec: c.map(str::to_string),
                output_file_name: name.map(str::to_string),
                ..Default::default()
            };
            let codec = o.codec().unwrap();
            assert_eq!(codec.name, want_codec, "{c:?} {name:?}");
            assert_eq!(o.delivered_name(codec), want_name, "{c:?} {name:?}");
        }
        let o = OutputOptions {
            output_codec: Some("ogg".into()),
            ..Default::default()
        };
        assert!(o.codec().is_err());
    }

    #[test]
    fn command_line_maps() {
        let mut o = OutputOptions::default();
        o.set_channels(Some("mono"), &[2, 4]).unwrap();
        assert_eq!(o.mix(4).unwrap().outputs, vec![vec![(1, 0.5), (3, 0.5)]]);
        let mut o = OutputOptions::default();
        o.set_channels(None, &[3, 1]).unwrap();
        assert_eq!(
            o.mix(4).unwrap().outputs,
            vec![vec![(2, 1.0)], vec![(0, 1.0)]]
        );
        assert!(o.mix(2).unwrap_err().to_string().contains("channel 3"));
        assert!(
            OutputOptions::default()
                .set_channels(Some("5.1"), &[])
                .is_err()
        );
    }
}
