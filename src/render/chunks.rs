//! Chunked recordings (`chunkSeconds`): the recording's plan cut into fixed-length spans,
//! each rendered into a file of its own (a playable file of the job's codec, its own
//! duration), and `chunks.json` listing them for the upload. The upload sends them in
//! order, one PUT each (two with an enhancement and `keepRaw`: the raw rendition, then the
//! enhanced primary; see `enhance::chunk`), and the journal's `uploads` table says which
//! the controller acknowledged, so a restart resumes at the first PUT not acknowledged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::enhance;
pub use super::enhance::chunk::{Asked, Part, RenderedChunk};
use super::pipeline::{self, RenderError, RenderReport, RenderRequest};
use crate::core::timeline::Piece;

/// The sidecar listing a job directory's chunks.
pub const CHUNKS_FILE: &str = "chunks.json";
/// Where the chunk files go in the job directory.
pub const CHUNK_DIR: &str = "chunks";

/// One rendered chunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkFile {
    /// The primary (the enhanced rendition when made, else the render), relative to the
    /// job directory.
    pub file: String,
    /// The name the upload carries: the delivered name with the chunk's index.
    pub file_name: String,
    /// The audio in this chunk (its own duration header; the renditions are as long).
    pub duration_seconds: f64,
    /// When `file` is the enhanced rendition: the loudness gain it applied, which the next
    /// chunk's gain ramps from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced_gain: Option<f32>,
    /// The untouched render, sent before the primary as `rendition=raw` (`keepRaw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_file: Option<String>,
    /// Why the enhancement the job asks for was not made: `file` is then the render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhancement_error: Option<String>,
}

/// `chunks.json`: the chunks, in order (index = position), and their one content type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunks {
    pub content_type: String,
    pub chunks: Vec<ChunkFile>,
    /// Every chunk of the recording is listed (the job's end wrote it); while the job
    /// captures, only the chunks rendered so far are.
    #[serde(default = "listed_at_the_end")]
    pub complete: bool,
}

/// A sidecar from before chunks were rendered during capture was written at the end.
fn listed_at_the_end() -> bool {
    true
}

impl Chunks {
    /// The chunks a job directory's render left, if it was chunked and the job's end
    /// listed them all. An unreadable sidecar reads as none (the whole recording is then
    /// the delivery).
    pub fn read(job_dir: &Path) -> Option<Chunks> {
        Chunks::read_so_far(job_dir).filter(|c| c.complete)
    }

    /// The chunks rendered so far, complete or not.
    pub fn read_so_far(job_dir: &Path) -> Option<Chunks> {
        let bytes = std::fs::read(job_dir.join(CHUNKS_FILE)).ok()?;
        serde_json::from_slice::<Chunks>(&bytes)
            .ok()
            .filter(|c| !c.chunks.is_empty())
    }

    pub fn write(&self, job_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        super::write_atomically(&job_dir.join(CHUNKS_FILE), &json)
    }
}

/// Frame spans `[start, end)` of `chunk_frames` each covering `total` frames; the last
/// is shorter when `total` is not a multiple. Empty for an empty recording.
pub fn spans(total: u64, chunk_frames: u64) -> Vec<(u64, u64)> {
    let step = chunk_frames.max(1);
    (0..total.div_ceil(step))
        .map(|k| (k * step, ((k + 1) * step).min(total)))
        .collect()
}

/// The part of `plan` that covers output frames `[from, to)`: pieces cut at the span's
/// edges, segments keeping their file with the skip moved on.
pub fn slice_plan<P: Clone>(plan: &[Piece<P>], from: u64, to: u64) -> Vec<Piece<P>> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for piece in plan {
        let len = match piece {
            Piece::Segment { frames, .. } | Piece::Silence { frames } => *frames,
        };
        let (start, end) = (at.max(from), (at + len).min(to));
        if start < end {
            let frames = end - start;
            out.push(match piece {
                Piece::Segment { file, skip, .. } => Piece::Segment {
                    file: file.clone(),
                    skip: skip + (start - at),
                    frames,
                },
                Piece::Silence { .. } => Piece::Silence { frames },
            });
        }
        at += len;
        if at >= to {
            break;
        }
    }
    out
}

/// `room.mp3`, chunk 3 -> `room-003.mp3`.
pub fn chunk_name(delivered: &str, index: usize) -> String {
    match delivered.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-{index:03}.{ext}"),
        None => format!("{delivered}-{index:03}"),
    }
}

/// The file of chunk `index` in the job directory, relative to it.
pub fn chunk_file(index: usize, extension: &str) -> String {
    format!("{CHUNK_DIR}/chunk-{index:04}.{extension}")
}

/// `request` cut to output frames `[from, to)` of its plan, its broadcast facts starting
/// at the part's own first frame.
pub fn part_request(request: &RenderRequest, (from, to): (u64, u64)) -> RenderRequest {
    let rate = u64::from(request.spec.rate).max(1);
    let mut part = request.clone();
    part.plan = slice_plan(&request.plan, from, to);
    part.facts.started_at_ms = request
        .facts
        .started_at_ms
        .map(|t| t + (from * 1000 / rate) as i64);
    part
}

/// `job_dir/chunks/`, made if missing.
pub fn chunk_dir(job_dir: &Path) -> Result<(), RenderError> {
    let dir = job_dir.join(CHUNK_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| RenderError::Output { path: dir, source })
}

/// Renders output frames `[from, to)` of `request`'s plan as chunk `index` (built under a
/// temporary name and renamed when complete).
pub fn render_chunk(
    request: &RenderRequest,
    index: usize,
    span: (u64, u64),
    delivered_name: &str,
    job_dir: &Path,
) -> Result<(ChunkFile, RenderReport), RenderError> {
    chunk_dir(job_dir)?;
    let part = part_request(request, span);
    let file = chunk_file(index, request.codec.extension);
    let report = pipeline::render(&part, &job_dir.join(&file), None, &mut |_, _| {})?;
    let chunk = ChunkFile {
        file,
        file_name: chunk_name(delivered_name, index),
        duration_seconds: report.duration_seconds,
        ..ChunkFile::default()
    };
    Ok((chunk, report))
}

/// Renders `request`'s plan in chunks of `chunk_seconds` of capture into
/// `job_dir/chunks/` (each with the renditions `asked`), and writes the complete
/// `chunks.json`. `done` are the chunks already rendered while the job captured (index =
/// position), kept as they are; `rendered` hears of each chunk rendered here.
pub fn render_chunks(
    request: &RenderRequest,
    asked: &Asked,
    chunk_seconds: u64,
    delivered_name: &str,
    job_dir: &Path,
    done: &[ChunkFile],
    rendered: &mut dyn FnMut(usize, &RenderedChunk) -> std::io::Result<()>,
) -> Result<Chunks, RenderError> {
    let rate = u64::from(request.spec.rate);
    let total = crate::core::timeline::plan_frames(&request.plan);
    let mut chunks = Vec::new();
    for (index, span) in spans(total, chunk_seconds * rate).into_iter().enumerate() {
        if let Some(kept) = done.get(index) {
            chunks.push(kept.clone());
            continue;
        }
        let part = Part {
            index,
            span,
            delivered_name,
            job_dir,
            before: chunks.last(),
        };
        let made = enhance::chunk::render(request, asked, &part)?;
        rendered(index, &made).map_err(|source| RenderError::Output {
            path: job_dir.join(&made.chunk.file),
            source,
        })?;
        chunks.push(made.chunk);
    }
    let chunks = Chunks {
        content_type: request.codec.content_type.to_string(),
        chunks,
        complete: true,
    };
    chunks
        .write(job_dir)
        .map_err(|source| RenderError::Output {
            path: job_dir.join(CHUNKS_FILE),
            source,
        })?;
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file: &str, skip: u64, frames: u64) -> Piece<String> {
        Piece::Segment {
            file: file.into(),
            skip,
            frames,
        }
    }

    #[test]
    fn spans_cover_the_recording_once() {
        assert_eq!(spans(25, 10), vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(spans(20, 10), vec![(0, 10), (10, 20)]);
        assert_eq!(spans(0, 10), Vec::<(u64, u64)>::new());
        assert_eq!(spans(3, 0), vec![(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn slices_cut_pieces_at_the_span_edges() {
        // a: 0..6, silence 6..10, b: 10..20
        let plan = vec![
            seg("a", 2, 6),
            Piece::Silence { frames: 4 },
            seg("b", 0, 10),
        ];
        assert_eq!(slice_plan(&plan, 0, 5), vec![seg("a", 2, 5)]);
        assert_eq!(
            slice_plan(&plan, 5, 12),
            vec![seg("a", 7, 1), Piece::Silence { frames: 4 }, seg("b", 0, 2)]
        );
        assert_eq!(slice_plan(&plan, 12, 30), vec![seg("b", 2, 8)]);
        // The slices of every span add back up to the plan's frames, in order.
        let total: u64 = spans(20, 7)
            .into_iter()
            .map(|(f, t)| crate::core::timeline::plan_frames(&slice_plan(&plan, f, t)))
            .sum();
        assert_eq!(total, 20);
    }

    #[test]
    fn chunk_names_keep_the_extension() {
        assert_eq!(chunk_name("room.mp3", 3), "room-003.mp3");
        assert_eq!(chunk_name("a.b.flac", 12), "a.b-012.flac");
        assert_eq!(chunk_name("rec", 0), "rec-000");
    }
}
