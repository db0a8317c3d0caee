//! WAV headers, written and read by hand.
//!
//! hound's writer cannot refresh its header in place while we own the file descriptor and
//! the sync schedule, so segments get their header from here.
//!
//! # Segment layout
//! Every segment has the same 68-byte header whatever its format, so its audio always
//! starts at [`SEGMENT_HEADER_LEN`] and the header can be patched in place:
//!
//! ```text
//!  0 "RIFF" <riff size u32>  "WAVE"
//! 12 "fmt " 40  WAVE_FORMAT_EXTENSIBLE (container bits, valid bits, channel mask, subformat)
//! 60 "data" <data size u32>
//! 68 frames...
//! ```
//!
//! A segment written since the journal became rebuildable carries one more chunk between
//! `fmt ` and `data`, `edgr`, holding its [`SegmentIdentity`] (job, sequence, first frame on
//! the job's timeline) as JSON, so the segment files alone can rebuild a lost journal. Its
//! audio then starts later (`data_offset`); readers skip the chunk (every WAV reader skips
//! unknown chunks), and segments without it stay readable.
//!
//! Both sizes saturate at `u32::MAX` once a segment passes 4 GiB: the file length is the
//! truth, and repair trusts it. A segment never has a pad byte after odd-sized data (it
//! is append-only); readers tolerate that.
//!
//! # S24_LE segments are low-justified
//! `S24_LE` audio is kept exactly as the device gives it, 24-bit samples low-justified in
//! 4-byte words (no conversion on the hot path), and declared as a 32-bit container with
//! 24 valid bits. WAVE_FORMAT_EXTENSIBLE means the valid bits to be the *high* ones, so a
//! standard reader plays such a segment 48 dB too quiet (hound reads it right). Segments
//! are not deliverables: stitching packs them to 24-bit (`render::stitch`).

use crate::core::format::{SampleFormat, StreamSpec};
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes before the first frame of every segment.
pub const SEGMENT_HEADER_LEN: u64 = 68;

/// Where the RIFF size field sits.
pub const RIFF_SIZE_OFFSET: u64 = 4;
/// Where a segment's data size field sits.
pub const SEGMENT_DATA_SIZE_OFFSET: u64 = SEGMENT_HEADER_LEN - 4;

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_IEEE_FLOAT: u16 = 0x0003;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// The GUID tail shared by the KSDATAFORMAT_SUBTYPE_* GUIDs; the first two bytes are the
/// plain format tag.
const GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// How the `fmt ` chunk describes the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmtLayout {
    /// WAVE_FORMAT_PCM (16-byte chunk) or WAVE_FORMAT_IEEE_FLOAT (18-byte chunk).
    Plain,
    /// WAVE_FORMAT_EXTENSIBLE (40-byte chunk).
    Extensible,
}

/// What a WAV header says about the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub spec: StreamSpec,
    /// Offset of the first audio byte.
    pub data_offset: u64,
    /// The data size the header declares: stale or 0 in a segment left open by a crash.
    pub declared_data_len: u64,
    /// Where the `edgr` chunk's body sits and its length, when the segment has one.
    pub identity_chunk: Option<(u64, u32)>,
    /// Where the `fmt ` chunk's header sits and its body's length.
    pub fmt_chunk: (u64, u32),
}

/// The chunk id of a segment's identity.
pub const IDENTITY_CHUNK: &[u8; 4] = b"edgr";
/// An identity chunk longer than this is not ours: it is not read.
const IDENTITY_MAX_LEN: u32 = 4096;

/// What makes a segment self-describing: which job it belongs to and where it sits on
/// that job's timeline. Written once, when the segment is created.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentIdentity {
    /// The journal's job id.
    pub job: String,
    pub seq: u32,
    /// Where its first frame sits on the job's timeline.
    pub first_frame: u64,
    /// Wall time the segment was opened (ms since the epoch).
    pub opened_at_ms: i64,
}

impl WavInfo {
    /// Whole frames a file of `file_len` bytes holds after the header, whatever the header
    /// declares, and the bytes of a trailing partial frame.
    pub fn frames_in_file(&self, file_len: u64) -> (u64, u64) {
        let bpf = self.spec.bytes_per_frame() as u64;
        let data = file_len.saturating_sub(self.data_offset);
        (data / bpf, data % bpf)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file (starts with {0:?})")]
    NotRiff(String),
    #[error("no `fmt ` chunk before the `data` chunk")]
    NoFmt,
    #[error("invalid `fmt ` chunk: {0}")]
    BadFmt(&'static str),
    #[error("unsupported WAV format tag {0:#06x} (only PCM, IEEE float and EXTENSIBLE are read)")]
    UnsupportedFormatTag(u16),
    #[error("unsupported WAVE_FORMAT_EXTENSIBLE subformat (only PCM and IEEE float are read)")]
    UnsupportedSubFormat,
    #[error(
        "unsupported sample layout: {valid_bits} valid bits in {container_bytes}-byte {} samples",
        if *float { "float" } else { "integer" }
    )]
    UnsupportedBits {
        valid_bits: u16,
        container_bytes: u16,
        float: bool,
    },
    #[error("no `data` chunk")]
    NoData,
    #[error("file ends at byte {at}, inside the {what}")]
    Truncated { at: u64, what: &'static str },
    #[error("reading the WAV header: {0}")]
    Io(#[from] io::Error),
}

/// The header of a segment holding `data_bytes` bytes of audio, with its identity chunk
/// when given: the audio starts at the returned header's length.
pub fn identified_segment_header(
    spec: &StreamSpec,
    data_bytes: u64,
    identity: Option<&SegmentIdentity>,
) -> Vec<u8> {
    let Some(identity) = identity else {
        return segment_header(spec, data_bytes).to_vec();
    };
    let mut body = serde_json::to_vec(identity).unwrap_or_default();
    if body.len() % 2 == 1 {
        body.push(b' '); // chunks are even-sized; JSON ignores the space
    }
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN as usize + 8 + body.len());
    let header_len = SEGMENT_HEADER_LEN + 8 + body.len() as u64;
    h.extend_from_slice(b"RIFF");
    put_u32(&mut h, saturate(header_len - 8 + data_bytes));
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(&fmt_chunk(spec, FmtLayout::Extensible));
    h.extend_from_slice(IDENTITY_CHUNK);
    put_u32(&mut h, body.len() as u32);
    h.extend_from_slice(&body);
    h.extend_from_slice(b"data");
    put_u32(&mut h, saturate(data_bytes));
    h
}

/// Reads the identity chunk `info` found, if any. A chunk that does not parse is `None`:
/// the segment is then placed from its file name and its neighbours.
pub fn read_identity(
    r: &mut (impl Read + Seek),
    info: &WavInfo,
) -> Result<Option<SegmentIdentity>, WavError> {
    let Some((at, len)) = info.identity_chunk else {
        return Ok(None);
    };
    if len > IDENTITY_MAX_LEN {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    r.seek(SeekFrom::Start(at))?;
    read_exact_at_eof(r, &mut body, at, "`edgr` chunk")?;
    Ok(serde_json::from_slice(&body).ok())
}

/// The header of a segment holding `data_bytes` bytes of audio.
pub fn segment_header(spec: &StreamSpec, data_bytes: u64) -> [u8; 68] {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    h.extend_from_slice(b"RIFF");
    put_u32(&mut h, saturate(SEGMENT_HEADER_LEN - 8 + data_bytes));
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(&fmt_chunk(spec, FmtLayout::Extensible));
    h.extend_from_slice(b"data");
    put_u32(&mut h, saturate(data_bytes));
    let mut out = [0u8; 68];
    out.copy_from_slice(&h); // fixed length for every spec: see the `header_is_68_bytes` test
    out
}

/// The size fields of a segment header whose audio starts at `data_offset` and holds
/// `data_bytes`: (RIFF, data).
pub fn segment_sizes(data_offset: u64, data_bytes: u64) -> (u32, u32) {
    (saturate(data_offset - 8 + data_bytes), saturate(data_bytes))
}

/// A mono 16-bit WAV of `samples` at `rate` (a live-listen chunk): the canonical 44-byte
/// header, then the samples. A chunk is at most 10 s, far below what a RIFF size can say.
pub fn mono_s16_wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let spec = StreamSpec {
        format: SampleFormat::S16Le,
        rate,
        channels: 1,
    };
    let fmt = fmt_chunk(&spec, FmtLayout::Plain);
    let data = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(12 + fmt.len() + 8 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    put_u32(&mut out, (4 + fmt.len() as u32 + 8).saturating_add(data));
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(&fmt);
    out.extend_from_slice(b"data");
    put_u32(&mut out, data);
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// A `fmt ` chunk (with its 8-byte chunk header) for `spec`.
pub fn fmt_chunk(spec: &StreamSpec, layout: FmtLayout) -> Vec<u8> {
    let f = spec.format;
    let container_bytes = f.bytes_per_sample() as u16;
    let block_align = spec.channels.saturating_mul(container_bytes);
    let plain_tag = if f.is_float() {
        FORMAT_IEEE_FLOAT
    } else {
        FORMAT_PCM
    };
    let (tag, body_len) = match layout {
        FmtLayout::Plain if f.is_float() => (plain_tag, 18), // non-PCM tags need cbSize
        FmtLayout::Plain => (plain_tag, 16),
        FmtLayout::Extensible => (FORMAT_EXTENSIBLE, 40),
    };
    let mut c = Vec::with_capacity(8 + body_len as usize);
    c.extend_from_slice(b"fmt ");
    put_u32(&mut c, body_len);
    put_u16(&mut c, tag);
    put_u16(&mut c, spec.channels);
    put_u32(&mut c, spec.rate);
    put_u32(&mut c, spec.rate.saturating_mul(block_align as u32));
    put_u16(&mut c, block_align);
    put_u16(&mut c, container_bytes * 8);
    match body_len {
        18 => put_u16(&mut c, 0),
        40 => {
            put_u16(&mut c, 22);
            put_u16(&mut c, f.valid_bits());
            put_u32(&mut c, channel_mask(spec.channels));
            put_u16(&mut c, plain_tag);
            c.extend_from_slice(&GUID_TAIL);
        }
        _ => {}
    }
    c
}

/// Front centre for mono, front left/right for stereo; otherwise no speaker assignment,
/// which suits a multitrack interface whose inputs are not speakers.
fn channel_mask(channels: u16) -> u32 {
    match channels {
        1 => 0x4,
        2 => 0x3,
        _ => 0,
    }
}

/// Reads a RIFF/WAVE header, leaving `r` at an unspecified position. Skips chunks it does
/// not need (LIST, bext, fact, JUNK, ...) and stops at the `data` chunk, which may declare
/// any size (a crashed segment says 0): callers that know better trust the file length.
pub fn parse_header(r: &mut (impl Read + Seek)) -> Result<WavInfo, WavError> {
    let file_len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut riff = [0u8; 12];
    read_exact_at_eof(r, &mut riff, 0, "RIFF header")?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(WavError::NotRiff(
            String::from_utf8_lossy(&riff[0..4]).into_owned(),
        ));
    }
    let mut pos = 12u64;
    let mut spec = None;
    let mut fmt_chunk = (0, 0);
    let mut identity_chunk = None;
    loop {
        if pos >= file_len {
            return Err(if spec.is_some() {
                WavError::NoData
            } else {
                WavError::NoFmt
            });
        }
        let mut head = [0u8; 8];
        read_exact_at_eof(r, &mut head, pos, "chunk header")?;
        let len = u64::from(u32_at(&head, 4));
        let body = pos + 8;
        match &head[0..4] {
            b"data" => {
                let spec = spec.ok_or(WavError::NoFmt)?;
                return Ok(WavInfo {
                    spec,
                    data_offset: body,
                    declared_data_len: len,
                    identity_chunk,
                    fmt_chunk,
                });
            }
            id if id == IDENTITY_CHUNK => identity_chunk = Some((body, len as u32)),
            b"fmt " => {
                let mut fmt = vec![0u8; len.min(64) as usize];
                read_exact_at_eof(r, &mut fmt, body, "`fmt ` chunk")?;
                spec = Some(parse_fmt(&fmt)?);
                fmt_chunk = (pos, len as u32);
            }
            _ => {}
        }
        pos = body + len + (len & 1); // chunks are padded to even sizes
        r.seek(SeekFrom::Start(pos))?;
    }
}

/// `read_exact`, reporting a short file as [`WavError::Truncated`].
fn read_exact_at_eof(
    r: &mut impl Read,
    buf: &mut [u8],
    at: u64,
    what: &'static str,
) -> Result<(), WavError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(WavError::Truncated {
                    at: at + got as u64,
                    what,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Decodes a `fmt ` chunk body (at most its first 64 bytes).
fn parse_fmt(b: &[u8]) -> Result<StreamSpec, WavError> {
    if b.len() < 16 {
        return Err(WavError::BadFmt("shorter than 16 bytes"));
    }
    let tag = u16_at(b, 0);
    let channels = u16_at(b, 2);
    let rate = u32_at(b, 4);
    let block_align = u16_at(b, 12);
    let bits = u16_at(b, 14);
    if channels == 0 {
        return Err(WavError::BadFmt("zero channels"));
    }
    if rate == 0 {
        return Err(WavError::BadFmt("zero sample rate"));
    }
    if block_align == 0 || block_align % channels != 0 {
        return Err(WavError::BadFmt(
            "block align is not a whole number of bytes per channel",
        ));
    }
    if rate.checked_mul(u32::from(block_align)).is_none() {
        return Err(WavError::BadFmt(
            "sample rate times block align does not fit the byte-rate field",
        ));
    }
    let container_bytes = block_align / channels;
    let (float, valid_bits) = match tag {
        FORMAT_PCM => (false, bits),
        FORMAT_IEEE_FLOAT => (true, bits),
        FORMAT_EXTENSIBLE => {
            if b.len() < 40 {
                return Err(WavError::BadFmt(
                    "WAVE_FORMAT_EXTENSIBLE chunk shorter than 40 bytes",
                ));
            }
            let float = match (u16_at(b, 24), &b[26..40]) {
                (FORMAT_PCM, tail) if tail == GUID_TAIL => false,
                (FORMAT_IEEE_FLOAT, tail) if tail == GUID_TAIL => true,
                _ => return Err(WavError::UnsupportedSubFormat),
            };
            let valid = u16_at(b, 18);
            (float, if valid == 0 { bits } else { valid }) // 0 is seen in the wild
        }
        other => return Err(WavError::UnsupportedFormatTag(other)),
    };
    let format =
        sample_format(valid_bits, container_bytes, float).ok_or(WavError::UnsupportedBits {
            valid_bits,
            container_bytes,
            float,
        })?;
    Ok(StreamSpec {
        format,
        rate,
        channels,
    })
}

/// Maps (valid bits, container bytes, float) back to a [`SampleFormat`].
fn sample_format(valid_bits: u16, container_bytes: u16, float: bool) -> Option<SampleFormat> {
    let f = match (float, container_bytes, valid_bits) {
        (false, 2, 16) => SampleFormat::S16Le,
        (false, 3, 24) => SampleFormat::S24Le3,
        (false, 4, 24) => SampleFormat::S24Le,
        (false, 4, 32) => SampleFormat::S32Le,
        (true, 4, 32) => SampleFormat::FloatLe,
        _ => return None,
    };
    Some(f)
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn put_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

pub(crate) fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests;
