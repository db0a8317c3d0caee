//! A chunk's renditions (`chunkSeconds` with `enhancement`): the enhanced one is the
//! primary, the untouched render goes beside it when `keepRaw`, and an enhancement that
//! cannot be made leaves the render as the primary with the reason: a chunk is never lost
//! to its enhancement.
//!
//! Continuity across chunks, with nothing carried in memory: each chunk's chain runs from
//! [`PRE_ROLL_SECONDS`] before it (the denoiser, filters, gate and resamplers settle on
//! audio the previous chunk holds, and that output is dropped) to [`POST_ROLL_MS`] past it
//! where that is captured (the resamplers' and RNNoise's look-ahead hear the real next
//! samples, not padding). A chunk rendered while capturing, at the job's end or again
//! after a restart is made the same way, which state kept in a thread could not give.
//!
//! Loudness is normalised per chunk, as Rakkr processes each chunk: measured on the chunk
//! itself, then applied (two bounded reads of one chunk, and each chunk stands on its own
//! at the target). A running gain would need every earlier chunk measured again after a
//! restart. The gain ramps from the previous chunk's (kept in `chunks.json`) over
//! [`super::GAIN_RAMP_MS`], so a boundary has no step.

use std::path::Path;

use super::{Enhancement, Window};
use crate::core::timeline::plan_frames;
use crate::render::chunks::{self, ChunkFile};
use crate::render::pipeline::{RenderError, RenderReport, RenderRequest};

/// Audio before a chunk that its chain hears first.
pub const PRE_ROLL_SECONDS: u64 = 1;
/// Audio after a chunk that its chain hears, when captured.
pub const POST_ROLL_MS: u64 = 500;

/// What a chunked job asks of each chunk: no enhancement, one, or why its options cannot
/// be used (each chunk then goes as rendered; the job's end says why, once, in
/// `enhanced.json`).
pub type Asked = Result<Option<Enhancement>, String>;

/// The enhancement a job's command JSON asks for, for its chunks.
pub fn asked(command_json: &str) -> Asked {
    Enhancement::from_command_json(command_json).map_err(|e| e.to_string())
}

/// Which chunk to render.
pub struct Part<'a> {
    pub index: usize,
    /// Output frames `[from, to)` of the request's plan.
    pub span: (u64, u64),
    pub delivered_name: &'a str,
    pub job_dir: &'a Path,
    /// The chunk before it, if rendered (its gain).
    pub before: Option<&'a ChunkFile>,
}

/// A chunk and the reports of its files, for the journal.
#[derive(Clone, Debug)]
pub struct RenderedChunk {
    pub chunk: ChunkFile,
    /// Of `chunk.file`.
    pub primary: RenderReport,
    /// Of `chunk.raw_file`.
    pub raw: Option<RenderReport>,
}

impl RenderedChunk {
    pub fn clipped(&self) -> u64 {
        self.primary.clipped + self.raw.as_ref().map_or(0, |r| r.clipped)
    }
}

/// The file of chunk `index`'s enhanced rendition, relative to the job directory.
pub fn enhanced_file(index: usize, extension: &str) -> String {
    format!("{}/enhanced-{index:04}.{extension}", chunks::CHUNK_DIR)
}

/// Renders chunk `part` of `request` with the renditions `asked`.
pub fn render(
    request: &RenderRequest,
    asked: &Asked,
    part: &Part,
) -> Result<RenderedChunk, RenderError> {
    let enhancement = match asked {
        Ok(None) | Err(_) => return plain(request, part, None),
        Ok(Some(e)) => e,
    };
    let (file, primary, gain) = match enhanced(request, enhancement, part) {
        Ok(done) => done,
        Err(e) => {
            let why = format!("enhanced rendition of chunk {}: {e}", part.index);
            log::warn!("{why}; the chunk goes as rendered");
            return plain(request, part, Some(why));
        }
    };
    let (raw_file, raw) = match enhancement.keep_raw {
        true => {
            let (c, r) = render_raw(request, part)?;
            (Some(c.file), Some(r))
        }
        false => (None, None),
    };
    let chunk = ChunkFile {
        file,
        file_name: chunks::chunk_name(part.delivered_name, part.index),
        duration_seconds: primary.duration_seconds,
        enhanced_gain: Some(gain),
        raw_file,
        enhancement_error: None,
    };
    Ok(RenderedChunk {
        chunk,
        primary,
        raw,
    })
}

/// The chunk as rendered, the primary; `why` the enhancement of this chunk failed.
fn plain(
    request: &RenderRequest,
    part: &Part,
    why: Option<String>,
) -> Result<RenderedChunk, RenderError> {
    let (mut chunk, primary) = render_raw(request, part)?;
    chunk.enhancement_error = why;
    Ok(RenderedChunk {
        chunk,
        primary,
        raw: None,
    })
}

fn render_raw(
    request: &RenderRequest,
    part: &Part,
) -> Result<(ChunkFile, RenderReport), RenderError> {
    chunks::render_chunk(
        request,
        part.index,
        part.span,
        part.delivered_name,
        part.job_dir,
    )
}

/// The enhanced file of `part`: (file, report, loudness gain).
fn enhanced(
    request: &RenderRequest,
    enhancement: &Enhancement,
    part: &Part,
) -> Result<(String, RenderReport, f32), RenderError> {
    chunks::chunk_dir(part.job_dir)?;
    let (from, to) = part.span;
    let (fed_span, pre) = fed_span(request, part.span);
    let fed = chunks::part_request(request, fed_span);
    let kept = chunks::part_request(request, (from, to));
    let window = Window {
        fed: &fed,
        pre,
        gain_from: part.before.and_then(|c| c.enhanced_gain),
    };
    let file = enhanced_file(part.index, request.codec.extension);
    let out = part.job_dir.join(&file);
    let (report, gain) = super::render_window(&kept, &window, enhancement, &out)?;
    Ok((file, report, gain))
}

/// The frames the chain hears for `(from, to)`, and how many of them come before it: a
/// whole pre-roll or none (so the output rate's frames to drop are exact), and the
/// post-roll as far as the plan goes.
fn fed_span(request: &RenderRequest, (from, to): (u64, u64)) -> ((u64, u64), u64) {
    let rate = u64::from(request.spec.rate);
    let pre = match PRE_ROLL_SECONDS * rate {
        p if p <= from => p,
        _ => 0,
    };
    let end = (to + POST_ROLL_MS * rate / 1000).min(plan_frames(&request.plan));
    ((from - pre, end.max(to)), pre)
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
