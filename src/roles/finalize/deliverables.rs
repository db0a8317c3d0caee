//! Rendering a finalized job's deliverables: a WAV that streams is only described (or,
//! for a person's `record`, written from the stitched view); anything else goes through
//! the render pipeline, with chunks and the enhanced rendition beside it.

use std::path::PathBuf;

use super::*;
use crate::roles::live_chunks;

/// Renders `job` as its options say into `recording.<ext>` (or its chunks) with
/// `render.json` beside it, and the waveform peaks for a person's job (the controller
/// draws its own preview, so on the agent path they would be 160 KB a minute of stereo
/// written to the flash for nobody). `Ok(Err(reason))`: the job's own options cannot be
/// rendered (a map naming a channel the capture lacks, a codec that cannot carry the
/// output): the job fails with that reason, and the segments stay for a render with
/// other options.
pub(super) fn render_job(
    journal: &Journal,
    job: &JobRow,
    source: &JobRow,
    options: &OutputOptions,
    plan: Vec<crate::core::timeline::Piece<PathBuf>>,
    stream: bool,
) -> Result<Result<PathBuf, String>, FinalizeError> {
    let facts = crate::render::job::job_facts(job, source.started_at_ms);
    let refuse = |reason: String| -> Result<Result<PathBuf, String>, FinalizeError> {
        write_sidecar(&RenderSidecar::failed(&reason), &job.dir)?;
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
    let delivered_name = options.delivered_name(request.codec);
    // A chunked job delivers its chunks: no whole-recording file is written.
    let rendered = match options.chunk_seconds {
        Some(seconds) => render_chunked(journal, job, &request, seconds, &delivered_name),
        None => {
            let file = format!("{RECORDING_STEM}.{}", request.codec.extension);
            let peaks = (job.source != JobSource::Controller).then(|| job.dir.join(PEAKS_FILE));
            pipeline::render(
                &request,
                &job.dir.join(&file),
                peaks.as_deref(),
                &mut |_, _| {},
            )
            .map(|report| (file, report))
        }
    };
    let (file, report) = match rendered {
        Ok(r) => r,
        Err(
            e @ (RenderError::Unsupported(_)
            | RenderError::Codec {
                source: CodecError::Unsupported(_),
                ..
            }),
        ) => return refuse(e.to_string()),
        Err(source) => {
            let path = job.dir.join(RECORDING_STEM);
            return Err(FinalizeError::Render { path, source });
        }
    };
    let out = job.dir.join(&file);
    if report.clipped > 0 {
        log::warn!(
            "{}: {} samples clipped in the render",
            job.id,
            report.clipped
        );
    }
    enhance(job, options, &request)?;
    let sidecar = RenderSidecar {
        file,
        file_name: delivered_name,
        report: Some(report),
        error: None,
        stream: None,
    };
    write_sidecar(&sidecar, &job.dir)?;
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

/// Saves the job's WAV as a view of its segments in place of writing it (`stream`):
/// `render.json` carries the view and its length. It is not read here: the upload hashes
/// the bytes as it sends them and checks them against the controller's checksum, so a
/// hash taken now would be a second read of the whole recording for nothing.
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
        let report = view_file::report(&view, req.codec, String::new(), view.len());
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
    write_sidecar(&sidecar, &job.dir)?;
    Ok(out)
}

/// `render.json`: what was rendered (or why not), for the sync role and `status`.
fn write_sidecar(sidecar: &RenderSidecar, dir: &std::path::Path) -> Result<(), FinalizeError> {
    sidecar.write(dir).map_err(|source| FinalizeError::Io {
        path: dir.join(crate::render::job::RENDER_FILE),
        source,
    })
}

/// A chunked job's render: only the chunks not rendered while it captured (normally the
/// last), then the complete `chunks.json`, which `render.json` names as the deliverable.
/// Its report sums the chunks (`sha256` is the list's: each chunk's own is journaled).
fn render_chunked(
    journal: &Journal,
    job: &JobRow,
    request: &RenderRequest,
    seconds: u64,
    delivered_name: &str,
) -> Result<(String, pipeline::RenderReport), RenderError> {
    let done = live_chunks::rendered_so_far(journal, job);
    let mut clipped = 0;
    let mut journaled = |index: usize, made: &chunks::RenderedChunk| {
        clipped += made.clipped();
        live_chunks::journal_chunk(journal, &job.id, index, made).map_err(std::io::Error::other)
    };
    let asked = crate::render::enhance::chunk::asked(&job.command_json);
    let listed = chunks::render_chunks(
        request,
        &asked,
        seconds,
        delivered_name,
        &job.dir,
        &done,
        &mut journaled,
    )?;
    let out_err = |source| RenderError::Output {
        path: job.dir.join(chunks::CHUNKS_FILE),
        source,
    };
    let (sha256, _) = pipeline::hash_file(&job.dir.join(chunks::CHUNKS_FILE)).map_err(out_err)?;
    let rate = pipeline::output_rate(request)?;
    let (bits, _) = (request.codec.layout)(request.bits, request.float, request.spec.format)?;
    let mut bytes = 0;
    for c in &listed.chunks {
        bytes += std::fs::metadata(job.dir.join(&c.file))
            .map_err(out_err)?
            .len();
    }
    let duration_seconds: f64 = listed.chunks.iter().map(|c| c.duration_seconds).sum();
    let report = pipeline::RenderReport {
        codec: request.codec.name.to_string(),
        content_type: listed.content_type.clone(),
        rate,
        channels: request.mix.out_channels(),
        bits,
        frames: (duration_seconds * f64::from(rate)).round() as u64,
        duration_seconds,
        bytes,
        sha256,
        clipped,
    };
    Ok((chunks::CHUNKS_FILE.to_string(), report))
}
