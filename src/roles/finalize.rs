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
use crate::segment::repair::{repair_segment, segment_frames};
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
    mark_unreadable_segments(journal, source, &segments)?;
    let segments = journal.segments(&source.id)?;
    let mut events = journal.events(&source.id)?;
    let own_end = if source.id == job.id {
        own_end_frame(&events)
    } else {
        let own = journal.events(&job.id)?;
        let end = own_end_frame(&own);
        events.extend(own);
        end
    };
    let placed = placed_segments(source, &segments);
    let options = OutputOptions::from_command_json(&job.command_json);
    let out_channels = options
        .mix(source.spec.channels)
        .map_or(source.spec.channels, |m| m.out_channels());
    let out_spec = crate::core::format::StreamSpec {
        channels: out_channels,
        ..source.spec
    };
    let end = timeline::timeline_end(&placed, &events).max(how.total_frames.unwrap_or(0));
    // No padding past the audio: gaps between segments are filled by the gap policy, but
    // a capture that ended early (a crash past the window, a trailing unreadable segment)
    // ends at its last captured frame; its trailing gap event says why. Only a caller
    // that knows the window was captured to its end (`total_frames`) pads to it.
    let audio_end = timeline::timeline_end(&placed, &[]).max(how.total_frames.unwrap_or(0));
    // A capture-group job that ended before the shared capture did ends at its own frame.
    let (end, audio_end) = match own_end {
        Some(own) => (end.min(own), audio_end.min(own)),
        None => (end, audio_end),
    };
    start_rendering(journal, job, how, end, &mut events)?;
    // A WAV the agent uploads (or `--no-stitch`) streams from the segments: the audio is
    // written once. Only a person's `record` gets the stitched file.
    let stream = job.source == JobSource::Controller || how.no_stitch;
    let (recording, frames, render_failure) =
        render_recording(job, source, &options, &placed, audio_end, fill, stream)?;
    let timeline_path = job.dir.join(TIMELINE_FILE);
    // A streamed WAV has no file here: the timeline names what the upload delivers.
    let rec_name = match &recording {
        Some(p) if p == &job.dir => {
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
/// capture did not write one.
fn start_rendering(
    journal: &mut Journal,
    job: &JobRow,
    how: &JobEnd,
    end: u64,
    events: &mut Vec<TimelineEvent>,
) -> Result<(), FinalizeError> {
    if !events.iter().any(|e| e.kind == EventKind::Ended) {
        let at = how.ended_at_ms.unwrap_or_else(now_ms);
        let ended = TimelineEvent::new(EventKind::Ended, end, at).with_detail(&how.cause);
        journal.transition(&job.id, JobState::Rendering, None, Some(&ended), now_ms())?;
        events.push(ended);
    } else {
        journal.set_job_state(&job.id, JobState::Rendering, None, now_ms())?;
    }
    Ok(())
}

/// Renders the job's recording as its options say, up to `audio_end`; no file when no
/// audio was captured. Returns the file, its frame count and, when the job's own options
/// cannot be rendered, why.
fn render_recording(
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
    Ok(match render_job(job, source, options, plan, stream)? {
        Ok(path) => (Some(path), frames, None),
        Err(reason) => (None, frames, Some(reason)),
    })
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
/// turning into unexplained silence. The file is left as it is. One whose `fmt ` chunk
/// now names another format than the journal's has it rewritten to the journal's.
fn mark_unreadable_segments(
    journal: &Journal,
    source: &JobRow,
    segments: &[crate::journal::SegmentRow],
) -> Result<(), FinalizeError> {
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
        journal.mark_segment_unreadable(seg, &ev, now_ms())?;
    }
    Ok(())
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
    stream: bool,
) -> Result<Result<PathBuf, String>, FinalizeError> {
    let facts = crate::render::job::job_facts(job, source.started_at_ms);
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
    // A chunked job uploads its chunk files, rendered below; only a whole WAV streams,
    // or (a person's `record`) is written as its view: the segments' bytes copied once.
    if options.chunk_seconds.is_none()
        && let Some(channels) = streamable(&request)
    {
        enhance(job, options, &request)?;
        return stream_job(job, options, &request, channels.as_deref(), stream).map(Ok);
    }
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
    let delivered_name = options.delivered_name(request.codec);
    if let Some(seconds) = options.chunk_seconds {
        chunks::render_chunks(&request, seconds, &delivered_name, &job.dir).map_err(|source| {
            FinalizeError::Render {
                path: job.dir.join(chunks::CHUNK_DIR),
                source,
            }
        })?;
    }
    enhance(job, options, &request)?;
    let sidecar = RenderSidecar {
        file,
        file_name: delivered_name,
        report: Some(report),
        error: None,
        stream: None,
    };
    sidecar
        .write(&job.dir)
        .map_err(|source| FinalizeError::Io {
            path: job.dir.join(crate::render::job::RENDER_FILE),
            source,
        })?;
    Ok(Ok(out))
}

/// The enhanced rendition, when the job asks for one (before `render.json`, which says the
/// render is done). One that cannot be made leaves the raw render as the primary.
fn enhance(
    job: &JobRow,
    options: &OutputOptions,
    request: &RenderRequest,
) -> Result<(), FinalizeError> {
    use crate::render::enhance::job::{ENHANCED_FILE, render_for_job};
    match render_for_job(&job.dir, &job.command_json, options, request) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            log::warn!("{}: {why}; the raw render is the primary", job.id);
            Ok(())
        }
        Err(source) => Err(FinalizeError::Io {
            path: job.dir.join(ENHANCED_FILE),
            source,
        }),
    }
}

/// The channels to keep when `req` is a WAV of the segments' own samples (no mix, rate
/// or width change): `Some(None)` all of them. Anything else goes through the pipeline.
fn streamable(req: &RenderRequest) -> Option<Option<Vec<u16>>> {
    let layout = (req.codec.layout)(req.bits, req.float, req.spec.format).ok()?;
    let packed = crate::render::stitch::Packing::for_input(req.spec.format).output_format();
    let same = req.codec.name == "wav"
        && req.mix.is_selection()
        && req.rate.is_none_or(|r| r == req.spec.rate)
        && layout == (packed.valid_bits(), packed.is_float());
    if !same {
        return None;
    }
    if req.mix.is_identity() {
        return Some(None);
    }
    let sel = req.mix.outputs.iter().map(|o| u16::try_from(o[0].0).ok());
    Some(Some(sel.collect::<Option<Vec<_>>>()?))
}

/// Saves the job's WAV as a view of its segments, hashed in one read pass, in place of
/// writing it (`stream`): `render.json` carries the view, its length and its SHA-256.
/// Otherwise writes the view as `recording.wav` with its peaks, in the same one pass.
fn stream_job(
    job: &JobRow,
    options: &OutputOptions,
    req: &RenderRequest,
    channels: Option<&[u16]>,
    stream: bool,
) -> Result<PathBuf, FinalizeError> {
    let io_err = |source| FinalizeError::Io {
        path: job.dir.clone(),
        source,
    };
    let view = StitchedView::new(&req.plan, &job.dir, req.spec, channels, &req.facts)
        .map_err(|e| io_err(std::io::Error::other(e)))?;
    let (file, report, out) = if stream {
        let (sha256, bytes) = view.hash(&job.dir).map_err(io_err)?;
        let report = view_file::report(&view, req.codec, sha256, bytes);
        (String::new(), report, job.dir.clone())
    } else {
        let file = format!("{RECORDING_STEM}.{}", req.codec.extension);
        let out = job.dir.join(&file);
        let report = view_file::write(&view, req.codec, &job.dir, &out, &job.dir.join(PEAKS_FILE))
            .map_err(|source| FinalizeError::Render {
                path: out.clone(),
                source,
            })?;
        (file, report, out)
    };
    let sidecar = RenderSidecar {
        file,
        file_name: options.delivered_name(req.codec),
        report: Some(report),
        error: None,
        stream: stream.then_some(view),
    };
    sidecar
        .write(&job.dir)
        .map_err(|source| FinalizeError::Io {
            path: job.dir.join(crate::render::job::RENDER_FILE),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::journal::{NewJob, NewSegment};
    use crate::segment::file::SegmentFile;

    const SPEC: StreamSpec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 8_000,
        channels: 1,
    };

    /// A captured local job of three closed 100-frame segments of non-zero audio.
    fn captured_job(out: &Path) -> (Journal, JobRow) {
        captured_job_from(out, JobSource::Local)
    }

    fn captured_job_from(out: &Path, source: JobSource) -> (Journal, JobRow) {
        std::fs::create_dir_all(out).unwrap();
        let journal = Journal::open(&journal_path(out)).unwrap();
        let dir = out.join("job_a");
        std::fs::create_dir_all(&dir).unwrap();
        journal
            .create_job(&NewJob {
                id: "job_a".into(),
                source,
                controller_job_id: None,
                recording_id: None,
                command_json: "{}".into(),
                backend: "synth".into(),
                device: "noise".into(),
                spec: SPEC,
                duration_frames: Some(1_000),
                dir: dir.clone(),
                state: JobState::Captured,
                created_at_ms: 1,
            })
            .unwrap();
        for seq in 1..=3u32 {
            let name = format!("{seq:06}.wav");
            let mut seg = SegmentFile::create(&dir.join(&name), SPEC).unwrap();
            seg.write_frames(&[0x11; 200]).unwrap();
            seg.close().unwrap();
            let first_frame = (seq as u64 - 1) * 100;
            let id = journal
                .insert_segment(&NewSegment {
                    job_id: "job_a".into(),
                    seq,
                    path: name,
                    first_frame,
                    spec: SPEC,
                    opened_at_ms: 1,
                })
                .unwrap();
            journal
                .close_segment(id, 100, crate::journal::SegmentState::Closed, 2)
                .unwrap();
        }
        let job = journal.job("job_a").unwrap().unwrap();
        (journal, job)
    }

    fn samples(path: &Path) -> Vec<i16> {
        let mut r = hound::WavReader::open(path).unwrap();
        r.samples::<i16>().map(Result::unwrap).collect()
    }

    #[test]
    fn unreadable_segment_is_a_gap_of_its_own_kind_not_a_failed_render() {
        let out = tempfile::tempdir().unwrap();
        let (mut journal, job) = captured_job(out.path());
        let broken = job.dir.join("000002.wav");
        let mut bytes = std::fs::read(&broken).unwrap();
        bytes[..4].copy_from_slice(b"JUNK");
        std::fs::write(&broken, &bytes).unwrap();
        let done = finalize(
            &mut journal,
            &job,
            &JobEnd::new("duration_reached"),
            GapFill::Silence,
        )
        .unwrap();
        assert_eq!(done.state, JobState::Delivered);
        let gap: Vec<_> = done
            .events
            .iter()
            .filter(|e| e.kind == EventKind::SegmentUnreadable)
            .collect();
        assert_eq!(gap.len(), 1, "{:?}", done.events);
        assert_eq!((gap[0].frame, gap[0].gap_frames), (100, Some(100)));
        let s = samples(done.recording.as_ref().unwrap());
        assert_eq!(s.len(), 300);
        assert!(s[..100].iter().chain(&s[200..]).all(|&x| x == 0x1111));
        assert!(
            s[100..200].iter().all(|&x| x == 0),
            "the gap policy fills it"
        );
        assert_eq!(
            std::fs::read(&broken).unwrap(),
            bytes,
            "the file is kept as it was"
        );
    }

    #[test]
    fn capture_that_ended_early_is_not_padded_to_the_window() {
        let out = tempfile::tempdir().unwrap();
        let (mut journal, job) = captured_job(out.path());
        // The window (1000 frames) ran on past the last frame on disk (300).
        let crash = TimelineEvent::new(EventKind::CrashRecovered, 300, 5).with_gap(700);
        journal.add_event(&job.id, &crash).unwrap();
        let done = finalize(
            &mut journal,
            &job,
            &JobEnd::new("crashed"),
            GapFill::Silence,
        )
        .unwrap();
        assert_eq!(done.frames, 300);
        assert_eq!(samples(done.recording.as_ref().unwrap()).len(), 300);
        let ended = done
            .events
            .iter()
            .find(|e| e.kind == EventKind::Ended)
            .unwrap();
        assert_eq!(ended.frame, 1_000, "the timeline still spans the window");
        // A window captured to its end is rendered to it (a trailing gap the caller knows).
        let (mut journal, job) = captured_job(&out.path().join("b"));
        let how = JobEnd {
            total_frames: Some(400),
            ..JobEnd::new("duration_reached")
        };
        let done = finalize(&mut journal, &job, &how, GapFill::Silence).unwrap();
        assert_eq!(done.frames, 400);
    }

    #[test]
    fn an_uploaded_wav_is_streamed_from_the_segments_and_never_copied() {
        let out = tempfile::tempdir().unwrap();
        let (mut journal, job) = captured_job_from(out.path(), JobSource::Controller);
        let done = finalize(
            &mut journal,
            &job,
            &JobEnd::new("duration_reached"),
            GapFill::Silence,
        )
        .unwrap();
        assert_eq!(done.state, JobState::Cached);
        assert_eq!(done.recording.as_deref(), Some(job.dir.as_path()));
        assert!(!job.dir.join(RECORDING_FILE).exists(), "no second copy");
        let d = crate::render::job::deliverable(&job.dir).unwrap();
        assert_eq!(d.file_name, "recording.wav");
        let (sha, len) = d.hash().unwrap();
        // The bytes the upload sends are the ones hashed, and a WAV of the 300 frames.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut d.body().open_at(0).unwrap(), &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len);
        let digest =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes));
        assert_eq!(
            sha,
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let r = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(r.duration(), 300);
        // The timeline names what is delivered.
        let tl: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&done.timeline).unwrap()).unwrap();
        assert_eq!(tl["recording"], "recording.wav");
        // Finalizing again (a crash mid-upload, a restart) gives the same bytes.
        let again = finalize(&mut journal, &job, &JobEnd::new("x"), GapFill::Silence);
        assert!(again.is_ok());
        let d2 = crate::render::job::deliverable(&job.dir).unwrap();
        assert_eq!(d2.hash().unwrap(), (sha, len));
    }

    #[test]
    fn no_stitch_leaves_a_local_job_as_its_segments() {
        let out = tempfile::tempdir().unwrap();
        let (mut journal, job) = captured_job(out.path());
        let how = JobEnd {
            no_stitch: true,
            ..JobEnd::new("duration_reached")
        };
        let done = finalize(&mut journal, &job, &how, GapFill::Silence).unwrap();
        assert_eq!(done.state, JobState::Delivered);
        assert!(!job.dir.join(RECORDING_FILE).exists());
        assert!(
            crate::render::job::deliverable(&job.dir)
                .unwrap()
                .stream
                .is_some()
        );
        // `record` without it keeps the person's file.
        let (mut journal, job) = captured_job(&out.path().join("b"));
        finalize(&mut journal, &job, &JobEnd::new("d"), GapFill::Silence).unwrap();
        assert_eq!(samples(&job.dir.join(RECORDING_FILE)).len(), 300);
    }
}
