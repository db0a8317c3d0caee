//! Finalizing a captured job: render its segments (gaps filled per policy) into the
//! recording the job asks for (codec, channel map, rate: `render::job`), write
//! `timeline.json` beside it, and move the job to its terminal state.
//! Idempotent: re-running on a job that crashed mid-render renders again.

use std::path::{Path, PathBuf};

use crate::core::job::JobState;
use crate::core::timeline::{self, EventKind, GapFill, PlacedSegment, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal, SegmentRow, SegmentState};
use crate::render::chunks;
use crate::render::codec::CodecError;
use crate::render::delivery::StitchedView;
use crate::render::job::{OutputOptions, PEAKS_FILE, RECORDING_STEM, RenderSidecar};
use crate::render::pipeline::{self, RenderError, RenderRequest};
use crate::render::timeline_file::{TimelineFile, TimelineSegment};
use crate::render::view_file;
use crate::roles::group_end::own_end_frame;
use crate::segment::file::sync_parent_dir;
use crate::segment::repair::{repair_segment, segment_frames};
use crate::segment::writer::now_ms;
use deliverables::render_job;

mod deliverables;

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

impl FinalizeError {
    /// The disk (or the journal's share of it) is full: finalizing again once space
    /// returns will work, and nothing is lost meanwhile (the segments hold the audio).
    pub fn is_disk_full(&self) -> bool {
        use crate::segment::disk;
        match self {
            FinalizeError::Journal(e) => disk::is_journal_disk_full(e),
            FinalizeError::Io { source, .. }
            | FinalizeError::Render {
                source:
                    RenderError::Output { source, .. }
                    | RenderError::Segment(crate::render::stitch::StitchError::Output { source, .. })
                    | RenderError::Codec {
                        source: CodecError::Io(source),
                        ..
                    },
                ..
            } => disk::is_disk_full(source),
            FinalizeError::Render { .. } => false,
        }
    }
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
    /// A local job's WAV is left as its segments (`record --no-stitch`): delivered from
    /// them like a controller job's, never copied into `recording.wav`.
    pub no_stitch: bool,
    /// The capture has just ended here and the job is not yet `captured`: it becomes so in
    /// the commit that starts its rendering (one fsync where there were two).
    pub mark_captured: bool,
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
    // The segment files are checked before the journal's write lock is taken.
    let unreadable = unreadable_segments(source, &journal.segments(&source.id)?);
    // One commit (one fsync): `captured` when the capture just ended here, the
    // unreadable segments' gaps, `rendering` with the timeline's `ended` event.
    let (segments, events, placed, audio_end) = journal.atomically(|j| {
        if how.mark_captured {
            j.set_job_state(&job.id, JobState::Captured, None, now_ms())?;
        }
        for (seg, ev) in &unreadable {
            j.mark_segment_unreadable(seg, ev, now_ms())?;
        }
        let segments = j.segments(&source.id)?;
        let mut events = j.events(&source.id)?;
        let own_end = if source.id == job.id {
            own_end_frame(&events)
        } else {
            let own = j.events(&job.id)?;
            let end = own_end_frame(&own);
            events.extend(own);
            end
        };
        let placed = placed_segments(source, &segments);
        let end = timeline::timeline_end(&placed, &events).max(how.total_frames.unwrap_or(0));
        // No padding past the audio: gaps between segments are filled by the gap policy,
        // but a capture that ended early (a crash past the window, a trailing unreadable
        // segment) ends at its last captured frame; its trailing gap event says why. Only
        // a caller that knows the window was captured to its end (`total_frames`) pads.
        let audio_end = timeline::timeline_end(&placed, &[]).max(how.total_frames.unwrap_or(0));
        // A capture-group job that ended before the shared capture did ends at its own frame.
        let (end, audio_end) = match own_end {
            Some(own) => (end.min(own), audio_end.min(own)),
            None => (end, audio_end),
        };
        start_rendering(j, job, how, end, &mut events)?;
        Ok((segments, events, placed, audio_end))
    })?;
    let options = OutputOptions::from_command_json(&job.command_json);
    let out_channels = options
        .mix(source.spec.channels)
        .map_or(source.spec.channels, |m| m.out_channels());
    let out_spec = crate::core::format::StreamSpec {
        channels: out_channels,
        ..source.spec
    };
    // A WAV the agent uploads (or `--no-stitch`) streams from the segments: the audio is
    // written once. Only a person's `record` gets the stitched file.
    let stream = job.source == JobSource::Controller || how.no_stitch;
    let (recording, frames, render_failure) = render_recording(
        journal, job, source, &options, &placed, audio_end, fill, stream,
    )?;
    let timeline_path = job.dir.join(TIMELINE_FILE);
    // A streamed WAV has no file here, a chunked job's file lists its chunks: the
    // timeline names what the upload delivers.
    let rec_name = match &recording {
        Some(p) if p == &job.dir || p.ends_with(chunks::CHUNKS_FILE) => {
            crate::render::job::deliverable(&job.dir).map_or(String::new(), |d| d.file_name)
        }
        Some(p) => p
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        None => String::new(),
    };
    TimelineFile::new(
        &job.id,
        &rec_name,
        out_spec,
        source.started_at_ms,
        frames,
        timeline_segments(job, source, &segments),
        &events,
    )
    .write(&timeline_path)
    // One directory fsync for the files finalize renamed into the job directory
    // (render.json, timeline.json), before the state that acts on them is committed.
    .and_then(|()| sync_parent_dir(&timeline_path))
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
    journal.clear_progress(&job.id);
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

/// The segments that hold audio, placed on the timeline. An unreadable segment is a
/// `segment_unreadable` gap on the timeline, never audio.
fn placed_segments(source: &JobRow, segments: &[SegmentRow]) -> Vec<PlacedSegment<PathBuf>> {
    segments
        .iter()
        .filter(|s| s.state != SegmentState::Unreadable)
        .map(|s| PlacedSegment {
            file: source.dir.join(&s.path),
            first_frame: s.first_frame,
            frames: s.frames,
        })
        .collect()
}

/// The job enters `rendering`; its timeline gets its `ended` event at `end` if the
/// capture did not write one. Joins the caller's transaction.
fn start_rendering(
    journal: &Journal,
    job: &JobRow,
    how: &JobEnd,
    end: u64,
    events: &mut Vec<TimelineEvent>,
) -> Result<(), crate::journal::JournalError> {
    journal.set_job_state(&job.id, JobState::Rendering, None, now_ms())?;
    if !events.iter().any(|e| e.kind == EventKind::Ended) {
        let at = how.ended_at_ms.unwrap_or_else(now_ms);
        let ended = TimelineEvent::new(EventKind::Ended, end, at).with_detail(&how.cause);
        journal.add_event(&job.id, &ended)?;
        events.push(ended);
    }
    Ok(())
}

/// Renders the job's recording as its options say, up to `audio_end`; no file when no
/// audio was captured. Returns the file, its frame count and, when the job's own options
/// cannot be rendered, why.
#[allow(
    clippy::too_many_arguments,
    reason = "the steps of finalize_from, passed down"
)]
fn render_recording(
    journal: &Journal,
    job: &JobRow,
    source: &JobRow,
    options: &OutputOptions,
    placed: &[PlacedSegment<PathBuf>],
    audio_end: u64,
    fill: GapFill,
    stream: bool,
) -> Result<(Option<PathBuf>, u64, Option<String>), FinalizeError> {
    let audio_frames: u64 = placed.iter().map(|s| s.frames).sum();
    if audio_frames == 0 {
        return Ok((None, 0, None));
    }
    let mut plan = timeline::stitch_plan(placed, Some(audio_end), fill);
    if timeline::plan_frames(&plan) > audio_end {
        // A group job that ended before the shared capture: only its part.
        plan = chunks::slice_plan(&plan, 0, audio_end);
    }
    let frames = timeline::plan_frames(&plan);
    Ok(
        match render_job(journal, job, source, options, plan, stream)? {
            Ok(path) => (Some(path), frames, None),
            Err(reason) => (None, frames, Some(reason)),
        },
    )
}

/// The timeline file's segment list, every segment whatever its state.
fn timeline_segments(
    job: &JobRow,
    source: &JobRow,
    segments: &[SegmentRow],
) -> Vec<TimelineSegment> {
    segments
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
        .collect()
}

/// A segment whose file can no longer be read (damaged header, deleted) becomes a
/// `segment_unreadable` gap of the frames it held, rather than failing the render or
/// turning into unexplained silence: the segments to mark so, with their gap events.
/// The file is left as it is. One whose `fmt ` chunk now names another format than the
/// journal's has it rewritten to the journal's.
fn unreadable_segments(
    source: &JobRow,
    segments: &[SegmentRow],
) -> Vec<(SegmentRow, TimelineEvent)> {
    let mut found = Vec::new();
    for seg in segments
        .iter()
        .filter(|s| s.state != SegmentState::Unreadable)
    {
        let file = source.dir.join(&seg.path);
        let e = match segment_frames(&file) {
            Ok((spec, _)) if spec == seg.spec => continue,
            // A header damaged since the segment closed: the journal's format is the truth.
            Ok(_) => match repair_segment(&file, Some(seg.spec)) {
                Ok(_) => continue,
                Err(e) => e,
            },
            Err(e) => e,
        };
        log::error!("{}: {e}; its frames are a gap on the timeline", source.id);
        let ev = TimelineEvent::new(EventKind::SegmentUnreadable, seg.first_frame, now_ms())
            .with_gap(seg.frames)
            .with_detail(format!("segment {} cannot be read: {e}", seg.path));
        found.push((seg.clone(), ev));
    }
    found
}

/// The journal of an output directory.
pub fn journal_path(out: &Path) -> PathBuf {
    out.join("edgerec.db")
}

#[cfg(test)]
mod tests;
