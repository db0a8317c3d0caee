//! `record`'s stitched WAV written from the stitched view: the segments' bytes copied once,
//! hashed and their peaks taken in the same pass. The pipeline would decode every sample
//! to float, quantize and encode it back, then read the file again for its hash; the
//! view's bytes are the pipeline's WAV byte for byte (see `delivery`), so the file is too.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::codec::Codec;
use super::delivery::{StitchedView, to_hex};
use super::peaks::Peaks;
use super::pipeline::{RenderError, RenderReport};
use super::{convert, stitch};
use crate::segment::file::sync_parent_dir;

/// Writes `view` (segments under `job_dir`) to `out` through `.<name>.partial` (synced and
/// renamed: a crash leaves no half file under the real name) and its peaks to `peaks_out`,
/// then fsyncs their directory once for both. The report is the pipeline's for the same WAV.
pub fn write(
    view: &StitchedView,
    codec: &Codec,
    job_dir: &Path,
    out: &Path,
    peaks_out: &Path,
) -> Result<RenderReport, RenderError> {
    let out_err = |source| RenderError::Output {
        path: out.to_path_buf(),
        source,
    };
    let partial = stitch::partial_path(out)?;
    let copied = copy(view, job_dir, &partial);
    let (sha256, bytes, peaks) = match copied {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial); // best effort: the error is what matters
            return Err(out_err(e));
        }
    };
    std::fs::rename(&partial, out).map_err(out_err)?;
    super::replace_file(peaks_out, &peaks).map_err(|source| RenderError::Output {
        path: peaks_out.to_path_buf(),
        source,
    })?;
    sync_parent_dir(out).map_err(out_err)?;
    if peaks_out.parent() != out.parent() {
        sync_parent_dir(peaks_out).map_err(out_err)?;
    }
    Ok(report(view, codec, sha256, bytes))
}

/// The pipeline's report for the WAV `view` gives, of `bytes` hashing to `sha256`.
pub fn report(view: &StitchedView, codec: &Codec, sha256: String, bytes: u64) -> RenderReport {
    let spec = view.out_spec();
    let frames = view.frames();
    RenderReport {
        codec: codec.name.to_string(),
        content_type: codec.content_type.to_string(),
        rate: spec.rate,
        channels: spec.channels,
        bits: spec.format.valid_bits(),
        frames,
        duration_seconds: frames as f64 / f64::from(spec.rate),
        bytes,
        sha256,
        clipped: 0,
    }
}

/// The copy itself: (SHA-256 hex, bytes, peaks JSON). The view's bytes are borrowed
/// from its reader step by step, hashed, written and decoded for the peaks in place.
fn copy(view: &StitchedView, job_dir: &Path, to: &Path) -> io::Result<(String, u64, Vec<u8>)> {
    let spec = view.out_spec();
    let bpf = spec.bytes_per_frame();
    let mut peaks = Peaks::new(spec.channels, spec.rate, view.frames());
    let mut reader = view.open_at(job_dir, 0)?;
    let mut file = File::create(to)?;
    let mut hasher = Sha256::new();
    let mut decoded = Vec::new();
    let (mut header_left, mut frames_left) = (view.header.len() / 2, view.frames());
    let mut bytes = 0u64;
    loop {
        let chunk = reader.next_chunk()?;
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        file.write_all(chunk)?;
        bytes += chunk.len() as u64;
        // Peaks from the data chunk's frames: a lent step holds whole frames; the header
        // and the RIFF pad byte are lent apart and left out.
        let skip = header_left.min(chunk.len());
        header_left -= skip;
        let audio = &chunk[skip..];
        let whole = (audio.len() / bpf).min(frames_left as usize);
        debug_assert!(
            whole == 0 || audio.len() == whole * bpf,
            "a step of whole frames"
        );
        decoded.clear();
        convert::decode(spec.format, &audio[..whole * bpf], &mut decoded);
        peaks.push(&decoded);
        frames_left -= whole as u64;
    }
    file.sync_all()?;
    Ok((to_hex(&hasher.finalize()), bytes, peaks.finish()))
}
