//! Finalizing a captured job: render its segments (gaps filled per policy) into the
//! recording the job asks for (codec, channel map, rate: `render::job`), write
//! `timeline.json` beside it, and move the job to its terminal state.
//! Idempotent: re-running on a job that crashed mid-render renders again.

use std::path::{Path, PathBuf};

use crate::core::job::JobState;
use crate::core::timeline::{self, EventKind, GapFill, PlacedSegment, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal};
use crate::render::codec::{CodecError, Facts};
use crate::render::job::{OutputOptions, PEAKS_FILE, RECORDING_STEM, RenderSidecar};
use crate::render::pipeline::{self, RenderError};
use crate::render::timeline_file::{TimelineFile, TimelineSegment};
use crate::segment::writer::now_ms;

/// The rendered recording's file name inside the job directory when it is WAV (the
/// default); other codecs are `recording.<ext>` (see [`crate::render::job`]).
pub const RECORDING_FILE: &str = "recording.wav";
pub const TIMELINE_FILE: &str = "timeline.json";

/// A finished job as the operator sees it.
#[derive(Debug)]
pub struct Finalized {
    pub job_id: String,
    pub state: JobState,
    pub end_cause: String,
    pub recording: Option<PathBuf>,
    pub timeline: PathBuf,
    pub frames: u64,
    pub rate: u32,
    pub events: Vec<TimelineEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("rendering {path}: {source}")]
    Render { path: PathBuf, source: RenderError },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Finalizes `job` (already `captured`, or any non-terminal state after a crash).
/// `end_cause` goes on the `ended` event and the job row. A job with no audio at all ends
/// `failed`; anything with audio is rendered and ends `delivered` (locally).
/// How a job's capture ended, as finalize needs to know it.
#[derive(Clone, Debug, Default)]
pub struct JobEnd {
    pub cause: String,
    /// Wall time of the timeline's end when measured (else now).
    pub ended_at_ms: Option<i64>,
    /// The timeline's length when the job's window defines it (a device that never came
    /// back still leaves a recording as long as the booking).
    pub total_frames: Option<u64>,
    /// Capture failed (device mismatch, device failure): the job ends `failed`, and the
    /// audio recorded before the failure is still rendered and kept.
    pub capture_failed: bool,
}

impl JobEnd {
    pub fn new(cause: impl Into<String>) -> Self {
        JobEnd {
            cause: cause.into(),
            ..Default::default()
        }
    }
}

pub fn finalize(
    journal: &mut Journal,
    job: &JobRow,
    how: &JobEnd,
    fill: GapFill,
) -> Result<Finalized, FinalizeError> {
    finalize_from(journal, job, job, how, fill)
}

/// Finalizes `job` from the capture of `source`: the same job, or the leader of its
/// capture group (one capture at the group's channel span; each job renders its subset).
pub fn finalize_from(
    journal: &mut Journal,
    job: &JobRow,
    source: &JobRow,
    how: &JobEnd,
    fill: GapFill,
) -> Result<Finalized, FinalizeError> {
    let end_cause = how.cause.as_str();
    let segments = journal.segments(&source.id)?;
    let mut events = journal.events(&source.id)?;
    if source.id != job.id {
        events.extend(journal.events(&job.id)?);
    }
    let placed: Vec<PlacedSegment<PathBuf>> = segments
        .iter()
        .map(|s| PlacedSegment {
            file: source.dir.join(&s.path),
            first_frame: s.first_frame,
            frames: s.frames,
        })
        .collect();
    let options = OutputOptions::from_command_json(&job.command_json);
    let out_channels = options
        .mix(source.spec.channels)
        .map_or(source.spec.channels, |m| m.out_channels());
    let out_spec = crate::core::format::StreamSpec {
        channels: out_channels,
        ..source.spec
    };
    let end = timeline::timeline_end(&placed, &events).max(how.total_frames.unwrap_or(0));
    if !events.iter().any(|e| e.kind == EventKind::Ended) {
        let at = how.ended_at_ms.unwrap_or_else(now_ms);
        let ended = TimelineEvent::new(EventKind::Ended, end, at).with_detail(end_cause);
        journal.transition(&job.id, JobState::Rendering, None, Some(&ended), now_ms())?;
        events.push(ended);
    } else {
        journal.set_job_state(&job.id, JobState::Rendering, None, now_ms())?;
    }
    let timeline_path = job.dir.join(TIMELINE_FILE);
    let audio_frames: u64 = segments.iter().map(|s| s.frames).sum();
    let mut render_failure = None;
    let (recording, frames) = if audio_frames == 0 {
        (None, 0)
    } else {
        let plan = timeline::stitch_plan(&placed, Some(end), fill);
        let frames = timeline::plan_frames(&plan);
        match render_job(job, source, &options, plan)? {
            Ok(path) => (Some(path), frames),
            Err(reason) => {
                render_failure = Some(reason);
                (None, frames)
            }
        }
    };
    let seg_rows = segments
        .iter()
        .map(|s| TimelineSegment {
            // A group member's segments live in its leader's directory.
            file: if source.id == job.id {
                s.path.clone()
            } else {
                format!("../{}/{}", source.id, s.path)
            },
            first_frame: s.first_frame,
            frames: s.frames,
            state: s.state.name().to_string(),
        })
        .collect();
    let rec_name = recording
        .as_ref()
        .and_then(|p| p.file_name())
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    TimelineFile::new(
        &job.id,
        &rec_name,
        out_spec,
        source.started_at_ms,
        frames,
        seg_rows,
        &events,
    )
    .write(&timeline_path)
    .map_err(|source| FinalizeError::Io {
        path: timeline_path.clone(),
        source,
    })?;
    // A local job's destination is its directory: it is delivered now. A controller's job
    // is handed to the sync role as `cached`, audio or not: it decides the job's end
    // (upload, report) through the job machine.
    let state = match (&recording, how.capture_failed, job.source) {
        (_, _, JobSource::Controller) => JobState::Cached,
        (Some(_), false, JobSource::Local) => JobState::Delivered,
        _ => JobState::Failed,
    };
    let cause = if recording.is_some() {
        end_cause.to_string()
    } else if let Some(reason) = &render_failure {
        format!("render_failed: {reason} ({end_cause})")
    } else {
        format!("no audio captured ({end_cause})")
    };
    journal.set_job_state(&job.id, state, Some(&cause), now_ms())?;
    Ok(Finalized {
        job_id: job.id.clone(),
        state,
        end_cause: cause,
        recording,
        timeline: timeline_path,
        frames,
        rate: job.spec.rate,
        events,
    })
}

/// The journal of an output directory.
pub fn journal_path(out: &Path) -> PathBuf {
    out.join("edgerec.db")
}

/// Renders `job` as its options say into `recording.<ext>` with `render.json` and the
/// peaks beside it. `Ok(Err(reason))`: the job's own options cannot be rendered (a map
/// naming a channel the capture lacks, a codec that cannot carry the output): the job
/// fails with that reason, and the segments stay for a render with other options.
fn render_job(
    job: &JobRow,
    source: &JobRow,
    options: &OutputOptions,
    plan: Vec<crate::core::timeline::Piece<PathBuf>>,
) -> Result<Result<PathBuf, String>, FinalizeError> {
    let facts = Facts {
        job_id: job
            .controller_job_id
            .clone()
            .unwrap_or_else(|| job.id.clone()),
        recording_id: job.recording_id.clone().unwrap_or_default(),
        started_at_ms: source.started_at_ms,
    };
    let refuse = |reason: String| -> Result<Result<PathBuf, String>, FinalizeError> {
        RenderSidecar::failed(&reason)
            .write(&job.dir)
            .map_err(|source| FinalizeError::Io {
                path: job.dir.join(crate::render::job::RENDER_FILE),
                source,
            })?;
        Ok(Err(reason))
    };
    let request = match options.request(plan, source.spec, facts) {
        Ok(r) => r,
        Err(e) => return refuse(e.to_string()),
    };
    let file = format!("{RECORDING_STEM}.{}", request.codec.extension);
    let out = job.dir.join(&file);
    let peaks = job.dir.join(PEAKS_FILE);
    let report = match pipeline::render(&request, &out, Some(&peaks), &mut |_, _| {}) {
        Ok(r) => r,
        Err(
            e @ (RenderError::Unsupported(_)
            | RenderError::Codec {
                source: CodecError::Unsupported(_),
                ..
            }),
        ) => return refuse(e.to_string()),
        Err(source) => return Err(FinalizeError::Render { path: out, source }),
    };
    if report.clipped > 0 {
        log::warn!(
            "{}: {} samples clipped in the render",
            job.id,
            report.clipped
        );
    }
    let sidecar = RenderSidecar {
        file,
        file_name: options.delivered_name(request.codec),
        report: Some(report),
        error: None,
    };
    sidecar
        .write(&job.dir)
        .map_err(|source| FinalizeError::Io {
            path: job.dir.join(crate::render::job::RENDER_FILE),
            source,
        })?;
    Ok(Ok(out))
}
