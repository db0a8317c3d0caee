//! What one cache-file PUT sends: the whole rendered recording, or, for a chunked job, the
//! first chunk the controller has not acknowledged (the journal's `uploads` table), so a
//! restart resumes at chunk granularity. Name, type and duration come from the render's
//! sidecars, so they agree with the bytes.
//!
//! A job with an enhanced rendition sends the raw render first (`rendition=raw`, when
//! `keepRaw`), then the enhanced one (`rendition=enhanced`), the primary that completes the
//! job: after it the controller has decided, so nothing is left to send. (Rakkr also takes
//! a raw PUT for a completed job, but a failed or cancelled one refuses it.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::output_file_name;
use crate::controller::client::Rendition;
use crate::core::job_machine::RenderedFile;
use crate::journal::JobRow;
use crate::render::chunks::Chunks;
use crate::render::enhance::job::enhanced_deliverable;

/// One PUT's body and headers.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sending {
    /// The bytes: a file of known length.
    pub path: PathBuf,
    pub file_name: String,
    pub mime_type: String,
    pub duration_seconds: f64,
    /// `(index, total)` for a chunk; the final one carries `chunkTotal`. The total is
    /// unknown (`None`) for a chunk sent while the job captures: never the final one.
    pub chunk: Option<(u32, Option<u32>)>,
    pub rendition: Option<Rendition>,
    /// A chunk sent as rendered because its enhancement could not be made: why.
    pub enhancement_error: Option<String>,
}

pub(super) use crate::journal::RAW_ROW;

impl Sending {
    /// The chunk index (0 for a whole recording).
    pub fn chunk_index(&self) -> u32 {
        self.chunk.map_or(0, |(i, _)| i)
    }

    /// The `uploads` row this PUT acknowledges.
    pub fn upload_row(&self) -> u32 {
        match self.rendition {
            Some(Rendition::Raw) => RAW_ROW + self.chunk_index(),
            _ => self.chunk_index(),
        }
    }

    /// A chunk before the last, or the supplementary raw rendition: its acknowledgement
    /// does not complete the job.
    pub fn is_partial(&self) -> bool {
        self.rendition == Some(Rendition::Raw)
            || self
                .chunk
                .is_some_and(|(i, total)| total.is_none_or(|t| i + 1 < t))
    }

    /// A chunk sent while the job captures: its own outbox row, done once acknowledged.
    pub fn is_live(&self) -> bool {
        self.chunk.is_some_and(|(_, total)| total.is_none())
    }

    pub fn chunk_total(&self) -> Option<u32> {
        if self.rendition == Some(Rendition::Raw) {
            return None;
        }
        self.chunk
            .and_then(|(i, total)| total.filter(|&t| i + 1 == t))
    }
}

/// An upload row's body for one chunk rendered while the job captures (the job's own
/// upload row holds its [`RenderedFile`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct LiveChunk {
    pub chunk: u32,
}

impl LiveChunk {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Option<LiveChunk> {
        serde_json::from_str(body).ok()
    }

    /// What its PUT sends: the chunk as `chunks.json` lists it so far, no `chunkTotal`;
    /// its raw rendition first, until `acked` has it.
    pub fn sending(&self, job: &JobRow, acked: &HashSet<u32>) -> Option<Sending> {
        let listed = Chunks::read_so_far(&job.dir)?;
        chunk_sending(job, &listed, self.chunk, None, acked)
    }
}

/// Chunk `index` of `listed` (`total` with the final one): its raw rendition while it has
/// one `acked` lacks, else the primary (enhanced, or as rendered).
fn chunk_sending(
    job: &JobRow,
    listed: &Chunks,
    index: u32,
    total: Option<u32>,
    acked: &HashSet<u32>,
) -> Option<Sending> {
    let part = listed.chunks.get(index as usize)?;
    let raw = part
        .raw_file
        .as_ref()
        .filter(|_| !acked.contains(&(RAW_ROW + index)));
    let (file, rendition) = match (raw, part.enhanced_gain) {
        (Some(raw), _) => (raw, Some(Rendition::Raw)),
        (None, Some(_)) => (&part.file, Some(Rendition::Enhanced)),
        (None, None) => (&part.file, None),
    };
    Some(Sending {
        path: job.dir.join(file),
        file_name: part.file_name.clone(),
        mime_type: listed.content_type.clone(),
        duration_seconds: part.duration_seconds,
        chunk: Some((index, total)),
        rendition,
        enhancement_error: part.enhancement_error.clone(),
    })
}

/// What to send next for `job`, whose render is `file`; `acked` are the `uploads` rows the
/// controller acknowledged. A chunk's raw rendition goes before its primary, so the final
/// primary chunk, which completes the job, goes last. When every chunk is acknowledged,
/// the last is sent again (a repeated PUT is idempotent) so the job machine hears the
/// final answer.
pub(super) fn next_sending(job: &JobRow, file: &RenderedFile, acked: &HashSet<u32>) -> Sending {
    if let Some(chunks) = Chunks::read(&job.dir) {
        let total = chunks.chunks.len() as u32;
        let index = (0..total)
            .find(|&i| !acked.contains(&i))
            .unwrap_or(total - 1);
        if let Some(sending) = chunk_sending(job, &chunks, index, Some(total), acked) {
            return sending;
        }
    }
    let Some((enhanced, keep_raw)) = enhanced_deliverable(&job.dir) else {
        return whole(job, file);
    };
    if keep_raw && !acked.contains(&RAW_ROW) {
        return Sending {
            rendition: Some(Rendition::Raw),
            ..whole(job, file)
        };
    }
    Sending {
        path: enhanced.path,
        file_name: enhanced.file_name,
        mime_type: enhanced.content_type,
        duration_seconds: enhanced.duration_seconds,
        chunk: None,
        rendition: Some(Rendition::Enhanced),
        enhancement_error: None,
    }
}

/// The whole rendered recording, as the render's sidecar describes it.
fn whole(job: &JobRow, file: &RenderedFile) -> Sending {
    let delivered = crate::render::job::deliverable(&job.dir);
    Sending {
        path: file.path.clone(),
        file_name: delivered
            .as_ref()
            .map_or_else(|| output_file_name(job), |d| d.file_name.clone()),
        mime_type: delivered
            .as_ref()
            .map_or_else(|| "audio/wav".to_string(), |d| d.content_type.clone()),
        duration_seconds: delivered.as_ref().map_or(0.0, |d| d.duration_seconds),
        chunk: None,
        rendition: None,
        enhancement_error: None,
    }
}

/// `path` as the `uploads` table records it: relative to the job's directory.
pub(super) fn relative<'a>(job_dir: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(job_dir)
        .ok()
        .or_else(|| path.file_name().map(Path::new))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests;
