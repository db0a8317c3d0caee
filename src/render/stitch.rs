//! Stitching: streams a plan of segments and silences into one WAV, in fixed-size chunks,
//! never holding the recording in memory.
//!
//! The output is built as `.<name>.partial` beside `out`, synced, then renamed over `out`,
//! so `out` is either absent, the previous render, or complete.
//!
//! Output format: PCM (tag 1) for integers and IEEE float (tag 3, with a `fact` chunk) for
//! float, or WAVE_FORMAT_EXTENSIBLE past two channels (to carry the channel mask). S24_LE
//! segments (24-bit low-justified in 4-byte words, see `segment::wav`) are packed on the
//! fly to 3-byte 24-bit; every other format is copied byte for byte.
//!
//! A 28-byte `JUNK` chunk follows the RIFF header, so that an output past 4 GiB turns it
//! into the `ds64` chunk of an RF64 file (EBU Tech 3306) without moving the audio.

use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::timeline::Piece;
use crate::segment::file::sync_parent_dir;
use crate::segment::wav::{self, FmtLayout, WavError, put_u32};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read from a segment per copy step.
const CHUNK_BYTES: usize = 256 * 1024;
/// Body of the JUNK chunk reserved for a `ds64` chunk: RIFF size, data size, sample
/// count (u64 each) and an empty table (u32).
const DS64_LEN: u32 = 28;

/// What a stitch produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StitchReport {
    /// Frames in the output (segments and silence).
    pub frames: u64,
    /// Size of the output file.
    pub bytes: u64,
    /// The output is RF64 (its audio passed 4 GiB).
    pub rf64: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    #[error("cannot open segment {}: {source}; is the job's segment directory intact?", file.display())]
    OpenSegment { file: PathBuf, source: io::Error },
    #[error("segment {} has an unreadable WAV header: {source}; run `edgerec repair` on the job", file.display())]
    BadSegment { file: PathBuf, source: WavError },
    #[error("segment {} is {found}, but the recording is {expected}: the journal and the file disagree", file.display())]
    SpecMismatch {
        file: PathBuf,
        found: StreamSpec,
        expected: StreamSpec,
    },
    #[error(
        "segment {} holds {available} frames, but the plan needs frames {skip}..{} of it; \
         run `edgerec repair` to re-read segment lengths into the journal",
        file.display(), skip.saturating_add(*frames)
    )]
    ShortSegment {
        file: PathBuf,
        skip: u64,
        frames: u64,
        available: u64,
    },
    #[error("reading segment {}: {source}", file.display())]
    ReadSegment { file: PathBuf, source: io::Error },
    #[error("writing {}: {source}; check free space and permissions there", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("the plan is too long to render ({frames} frames)")]
    PlanTooLarge { frames: u64 },
    #[error(
        "channel selection {selection:?} does not fit a {channels}-channel recording (channels are 0-based here)"
    )]
    BadSelection { selection: Vec<u16>, channels: u16 },
}

/// Renders `plan`, whose segments must all be `spec`, into `out` (replacing it).
pub fn stitch(
    plan: &[Piece<PathBuf>],
    spec: StreamSpec,
    out: &Path,
) -> Result<StitchReport, StitchError> {
    stitch_channels(plan, spec, None, out)
}

/// Like [`stitch`], keeping only `channels` (0-based device channels, in output order):
/// one capture serves several jobs, each with its own channel subset.
pub fn stitch_channels(
    plan: &[Piece<PathBuf>],
    spec: StreamSpec,
    channels: Option<&[u16]>,
    out: &Path,
) -> Result<StitchReport, StitchError> {
    if let Some(sel) = channels
        && (sel.is_empty() || sel.iter().any(|&c| c >= spec.channels))
    {
        return Err(StitchError::BadSelection {
            selection: sel.to_vec(),
            channels: spec.channels,
        });
    }
    let partial = partial_path(out)?;
    let out_err = |source| StitchError::Output {
        path: out.to_path_buf(),
        source,
    };
    match write_partial(plan, spec, channels, &partial) {
        Ok(report) => {
            fs::rename(&partial, out).map_err(out_err)?;
            sync_parent_dir(out).map_err(out_err)?;
            Ok(report)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial); // best effort: the error is what matters
            Err(e)
        }
    }
}

/// `.<name>.partial` in `out`'s directory.
pub(crate) fn partial_path(out: &Path) -> Result<PathBuf, StitchError> {
    let Some(name) = out.file_name() else {
        let source = io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output path has no file name",
        );
        return Err(StitchError::Output {
            path: out.to_path_buf(),
            source,
        });
    };
    let mut partial = std::ffi::OsString::from(".");
    partial.push(name);
    partial.push(".partial");
    Ok(out.with_file_name(partial))
}

fn write_partial(
    plan: &[Piece<PathBuf>],
    spec: StreamSpec,
    channels: Option<&[u16]>,
    path: &Path,
) -> Result<StitchReport, StitchError> {
    let out_err = |source| StitchError::Output {
        path: path.to_path_buf(),
        source,
    };
    let pack = Packing::for_input(spec.format);
    let out_spec = StreamSpec {
        format: pack.output_format(),
        channels: channels.map_or(spec.channels, |c| c.len() as u16),
        ..spec
    };
    let mut file = File::create(path).map_err(out_err)?;
    // A placeholder: the real sizes go in once the audio is written.
    file.write_all(&output_header(&out_spec, 0, 0).bytes)
        .map_err(out_err)?;

    let mut copier = Copier::new(spec, pack, channels);
    let mut frames = 0u64;
    for piece in plan {
        match piece {
            Piece::Silence { frames: n } => copier.silence(&mut file, *n).map_err(out_err)?,
            Piece::Segment {
                file: seg,
                skip,
                frames: n,
            } => copier.segment(&mut file, path, seg, *skip, *n)?,
        }
        frames = frames
            .checked_add(piece_frames(piece))
            .ok_or(StitchError::PlanTooLarge { frames })?;
    }

    let data_bytes = frames
        .checked_mul(out_spec.bytes_per_frame() as u64)
        .ok_or(StitchError::PlanTooLarge { frames })?;
    if data_bytes % 2 == 1 {
        file.write_all(&[0]).map_err(out_err)?; // RIFF pads chunks to even sizes
    }
    let header = output_header(&out_spec, data_bytes, frames);
    file.write_all_at(&header.bytes, 0).map_err(out_err)?;
    file.sync_all().map_err(out_err)?;
    let bytes = header.bytes.len() as u64 + data_bytes + data_bytes % 2;
    Ok(StitchReport {
        frames,
        bytes,
        rf64: header.rf64,
    })
}

fn piece_frames(p: &Piece<PathBuf>) -> u64 {
    match p {
        Piece::Segment { frames, .. } | Piece::Silence { frames } => *frames,
    }
}

/// Copies the `select`ed samples of each frame of `input` (frames of `in_bpf` bytes,
/// samples of `sample` bytes) into `out`, in selection order.
pub(crate) fn select_channels(
    input: &[u8],
    in_bpf: usize,
    sample: usize,
    select: &[usize],
    out: &mut [u8],
) {
    let mut at = 0;
    for frame in input.chunks_exact(in_bpf) {
        for &ch in select {
            out[at..at + sample].copy_from_slice(&frame[ch * sample..(ch + 1) * sample]);
            at += sample;
        }
    }
}

/// How segment samples become output samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packing {
    Copy(SampleFormat),
    /// S24_LE words to S24_3LE: keep the low three bytes of each word.
    S24WordsTo3,
}

impl Packing {
    pub(crate) fn for_input(f: SampleFormat) -> Packing {
        match f {
            SampleFormat::S24Le => Packing::S24WordsTo3,
            other => Packing::Copy(other),
        }
    }

    pub(crate) fn output_format(self) -> SampleFormat {
        match self {
            Packing::Copy(f) => f,
            Packing::S24WordsTo3 => SampleFormat::S24Le3,
        }
    }
}

/// The chunk buffers, allocated once per stitch.
struct Copier {
    spec: StreamSpec,
    pack: Packing,
    out_bpf: usize,
    frames_per_chunk: u64,
    input: Vec<u8>,
    packed: Vec<u8>,
    zeros: Vec<u8>,
    /// Output channels taken from each (packed) input frame, when a subset is kept.
    select: Option<Vec<usize>>,
    selected: Vec<u8>,
}

impl Copier {
    fn new(spec: StreamSpec, pack: Packing, channels: Option<&[u16]>) -> Copier {
        let in_bpf = spec.bytes_per_frame();
        let packed_bpf = StreamSpec {
            format: pack.output_format(),
            ..spec
        }
        .bytes_per_frame();
        let out_bpf = pack.output_format().bytes_per_sample()
            * channels.map_or(spec.channels as usize, <[u16]>::len);
        let frames_per_chunk = (CHUNK_BYTES / in_bpf).max(1);
        let packed_len = if pack == Packing::S24WordsTo3 {
            frames_per_chunk * packed_bpf
        } else {
            0
        };
        Copier {
            spec,
            pack,
            out_bpf,
            frames_per_chunk: frames_per_chunk as u64,
            input: vec![0; frames_per_chunk * in_bpf],
            packed: vec![0; packed_len],
            zeros: vec![0; frames_per_chunk * out_bpf], // 0 is silence in every format, float too
            select: channels.map(|c| c.iter().map(|&ch| ch as usize).collect()),
            selected: vec![
                0;
                if channels.is_some() {
                    frames_per_chunk * out_bpf
                } else {
                    0
                }
            ],
        }
    }

    fn silence(&self, out: &mut File, frames: u64) -> io::Result<()> {
        let mut left = frames;
        while left > 0 {
            let n = left.min(self.frames_per_chunk);
            out.write_all(&self.zeros[..n as usize * self.out_bpf])?;
            left -= n;
        }
        Ok(())
    }

    /// Copies frames `skip..skip + frames` of the segment `seg`.
    fn segment(
        &mut self,
        out: &mut File,
        out_path: &Path,
        seg: &Path,
        skip: u64,
        frames: u64,
    ) -> Result<(), StitchError> {
        let read_err = |source| StitchError::ReadSegment {
            file: seg.to_path_buf(),
            source,
        };
        let out_err = |source| StitchError::Output {
            path: out_path.to_path_buf(),
            source,
        };
        let mut src = open_segment(seg, self.spec, skip, frames)?;
        let in_bpf = self.spec.bytes_per_frame();
        let mut left = frames;
        while left > 0 {
            let n = left.min(self.frames_per_chunk) as usize;
            src.read_exact(&mut self.input[..n * in_bpf])
                .map_err(read_err)?;
            let sample = self.pack.output_format().bytes_per_sample();
            let packed_bpf = sample * self.spec.channels as usize;
            let bytes = match self.pack {
                Packing::Copy(_) => &self.input[..n * in_bpf],
                Packing::S24WordsTo3 => {
                    let packed = &mut self.packed[..n * packed_bpf];
                    pack_s24_words(&self.input[..n * in_bpf], packed);
                    packed
                }
            };
            let bytes = match &self.select {
                None => bytes,
                Some(select) => {
                    let out = &mut self.selected[..n * self.out_bpf];
                    select_channels(bytes, packed_bpf, sample, select, out);
                    out
                }
            };
            out.write_all(bytes).map_err(out_err)?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Opens a segment, checks its format and length, and seeks to frame `skip`.
pub(crate) fn open_segment(
    seg: &Path,
    spec: StreamSpec,
    skip: u64,
    frames: u64,
) -> Result<File, StitchError> {
    let file_err = |source| StitchError::OpenSegment {
        file: seg.to_path_buf(),
        source,
    };
    let mut src = File::open(seg).map_err(file_err)?;
    let info = wav::parse_header(&mut src).map_err(|source| match source {
        WavError::Io(source) => StitchError::ReadSegment {
            file: seg.to_path_buf(),
            source,
        },
        source => StitchError::BadSegment {
            file: seg.to_path_buf(),
            source,
        },
    })?;
    if info.spec != spec {
        return Err(StitchError::SpecMismatch {
            file: seg.to_path_buf(),
            found: info.spec,
            expected: spec,
        });
    }
    // The length is the truth: a repaired segment past 4 GiB declares a saturated size.
    let len = src.metadata().map_err(file_err)?.len();
    let available = info.frames_in_file(len).0;
    if skip.checked_add(frames).is_none_or(|end| end > available) {
        return Err(StitchError::ShortSegment {
            file: seg.to_path_buf(),
            skip,
            frames,
            available,
        });
    }
    let start = info.data_offset + skip * spec.bytes_per_frame() as u64;
    src.seek(SeekFrom::Start(start))
        .map_err(|source| StitchError::ReadSegment {
            file: seg.to_path_buf(),
            source,
        })?;
    Ok(src)
}

/// Packs low-justified 24-bit samples in 4-byte words into 3-byte samples. Exact: the
/// dropped top byte only repeats the sign.
pub(crate) fn pack_s24_words(words: &[u8], packed: &mut [u8]) {
    for (w, p) in words.chunks_exact(4).zip(packed.chunks_exact_mut(3)) {
        p.copy_from_slice(&w[..3]);
    }
}

/// The header of an output holding `data_bytes` of audio (`frames` frames).
pub(crate) struct OutputHeader {
    pub bytes: Vec<u8>,
    pub rf64: bool,
}

/// Same length whatever the size, so the header is rewritten in place: RIFF + JUNK, or
/// past 4 GiB RF64 + ds64, then `fmt `, `fact` (float only) and the `data` chunk header.
fn output_header(spec: &StreamSpec, data_bytes: u64, frames: u64) -> OutputHeader {
    wav_header(spec, data_bytes, frames, &[])
}

/// [`output_header`] with `extra` (whole chunks, e.g. `bext`) before the `data` chunk.
pub(crate) fn wav_header(
    spec: &StreamSpec,
    data_bytes: u64,
    frames: u64,
    extra: &[u8],
) -> OutputHeader {
    let layout = if spec.channels > 2 {
        FmtLayout::Extensible
    } else {
        FmtLayout::Plain
    };
    let fmt = wav::fmt_chunk(spec, layout);
    let fact_len = if spec.format.is_float() { 12 } else { 0 };
    let header_len =
        12 + 8 + DS64_LEN as u64 + fmt.len() as u64 + fact_len + extra.len() as u64 + 8;
    let riff_size = header_len - 8 + data_bytes + data_bytes % 2;
    let rf64 = riff_size > u64::from(u32::MAX);
    let small = |n: u64| if rf64 { u32::MAX } else { n as u32 };

    let mut h = Vec::with_capacity(header_len as usize);
    h.extend_from_slice(if rf64 { b"RF64" } else { b"RIFF" });
    put_u32(&mut h, small(riff_size));
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(if rf64 { b"ds64" } else { b"JUNK" });
    put_u32(&mut h, DS64_LEN);
    if rf64 {
        h.extend_from_slice(&riff_size.to_le_bytes());
        h.extend_from_slice(&data_bytes.to_le_bytes());
        h.extend_from_slice(&frames.to_le_bytes());
        put_u32(&mut h, 0); // no table: only `data` is large
    } else {
        h.extend_from_slice(&[0; DS64_LEN as usize]);
    }
    h.extend_from_slice(&fmt);
    if fact_len > 0 {
        h.extend_from_slice(b"fact");
        put_u32(&mut h, 4);
        put_u32(&mut h, u32::try_from(frames).unwrap_or(u32::MAX));
    }
    h.extend_from_slice(extra);
    h.extend_from_slice(b"data");
    put_u32(&mut h, small(data_bytes));
    OutputHeader { bytes: h, rf64 }
}

#[cfg(test)]
mod tests;
