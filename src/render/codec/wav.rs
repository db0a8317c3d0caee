//! WAV (PCM 16/24/32-bit, IEEE float 32-bit) with a BWF `bext` chunk (EBU Tech 3285), RF64
//! past 4 GiB (the header layout is the stitcher's: a JUNK chunk that becomes `ds64`).

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{CodecError, Encoder, EncoderParams, Facts, SampleKind, Samples};
use crate::core::format::{SampleFormat, StreamSpec};
use crate::render::convert;
use crate::render::delivery::to_hex;
use crate::render::stitch::wav_header;
use crate::segment::wav::put_u32;

/// Fixed part of a `bext` body (version 2, no coding history).
const BEXT_FIXED: usize = 602;
const WRITE_BUFFER: usize = 256 * 1024;

pub fn layout(
    bits: Option<u16>,
    float: bool,
    source: SampleFormat,
) -> Result<(u16, bool), CodecError> {
    match (bits, float) {
        (None, false) if source.is_float() => Ok((32, true)),
        (None, false) => Ok((source.valid_bits(), false)),
        (None | Some(32), true) => Ok((32, true)),
        (Some(b @ (16 | 24 | 32)), false) => Ok((b, false)),
        (Some(b), f) => Err(CodecError::Unsupported(format!(
            "WAV carries 16-, 24- or 32-bit integers or 32-bit float, not {b}-bit{}",
            if f { " float" } else { "" }
        ))),
    }
}

fn sample_format(bits: u16, float: bool) -> SampleFormat {
    match (bits, float) {
        (_, true) => SampleFormat::FloatLe,
        (16, _) => SampleFormat::S16Le,
        (24, _) => SampleFormat::S24Le3,
        _ => SampleFormat::S32Le,
    }
}

pub fn open(file: File, p: &EncoderParams) -> Result<Box<dyn Encoder>, CodecError> {
    let spec = StreamSpec {
        format: sample_format(p.bits, p.float),
        rate: p.rate,
        channels: p.channels,
    };
    let bext = bext_chunk(&p.facts, spec);
    // The header with the sizes the render will write (its length is known exactly), so
    // the file is written front to back once and hashed on the way: no read-back.
    let expected = p.frames * spec.bytes_per_frame() as u64;
    let header = wav_header(&spec, expected, p.frames, &bext);
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, Hashing::new(file));
    out.write_all(&header.bytes)?;
    Ok(Box::new(WavEncoder {
        out,
        spec,
        bext,
        data_bytes: 0,
        expected,
        bytes: Vec::with_capacity(WRITE_BUFFER),
    }))
}

struct WavEncoder {
    out: BufWriter<Hashing>,
    spec: StreamSpec,
    bext: Vec<u8>,
    data_bytes: u64,
    /// Data bytes the header written at open declares.
    expected: u64,
    bytes: Vec<u8>,
}

/// The output file, hashed as it is written front to back.
struct Hashing {
    file: File,
    sha: Sha256,
    bytes: u64,
}

impl Hashing {
    fn new(file: File) -> Hashing {
        Hashing {
            file,
            sha: Sha256::new(),
            bytes: 0,
        }
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Encoder for WavEncoder {
    fn input(&self) -> SampleKind {
        if self.spec.format.is_float() {
            SampleKind::Float
        } else {
            SampleKind::Int(self.spec.format.valid_bits())
        }
    }

    fn write(&mut self, samples: Samples<'_>) -> Result<(), CodecError> {
        self.bytes.clear();
        match (samples, self.spec.format) {
            (Samples::Float(s), SampleFormat::FloatLe) => {
                convert::encode_f32_le(s, &mut self.bytes)
            }
            (Samples::Int(s), SampleFormat::S16Le) => convert::encode_le(s, 2, &mut self.bytes),
            (Samples::Int(s), SampleFormat::S24Le3) => convert::encode_le(s, 3, &mut self.bytes),
            (Samples::Int(s), _) => convert::encode_le(s, 4, &mut self.bytes),
            (Samples::Float(_), _) => {
                return Err(CodecError::Encode(
                    "float samples for an integer WAV".into(),
                ));
            }
        }
        self.out.write_all(&self.bytes)?;
        self.data_bytes += self.bytes.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), CodecError> {
        self.finish_hashed().map(|_| ())
    }

    fn finish_hashed(mut self: Box<Self>) -> Result<Option<(String, u64)>, CodecError> {
        if self.data_bytes % 2 == 1 {
            self.out.write_all(&[0])?; // RIFF pads chunks to even sizes
        }
        let Hashing {
            mut file,
            sha,
            bytes,
        } = self.out.into_inner().map_err(|e| e.into_error())?;
        if self.data_bytes == self.expected {
            file.sync_all()?;
            return Ok(Some((to_hex(&sha.finalize()), bytes)));
        }
        // Another length than announced: patch the header; the caller hashes the file.
        let frames = self.data_bytes / self.spec.bytes_per_frame() as u64;
        let header = wav_header(&self.spec, self.data_bytes, frames, &self.bext);
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header.bytes)?;
        file.sync_all()?;
        Ok(None)
    }
}

/// Copies `text` into a fixed ASCII field, NUL padded.
fn put_text(h: &mut Vec<u8>, text: &str, len: usize) {
    let bytes: Vec<u8> = text.bytes().filter(u8::is_ascii).take(len).collect();
    h.extend_from_slice(&bytes);
    h.resize(h.len() + len - bytes.len(), 0);
}

/// A whole `bext` chunk (header and body, even length).
pub fn bext_chunk(facts: &Facts, spec: StreamSpec) -> Vec<u8> {
    let (date, time) = facts.origination().unwrap_or_default();
    let mode = match spec.channels {
        1 => "mono",
        2 => "stereo",
        _ => "multichannel",
    };
    let history = format!(
        "A=PCM,F={},W={},M={mode},T=edgerec {}\r\n",
        spec.rate,
        spec.format.valid_bits(),
        env!("CARGO_PKG_VERSION")
    );
    let mut body = Vec::with_capacity(BEXT_FIXED + history.len() + 1);
    put_text(&mut body, &facts.description(), 256);
    put_text(&mut body, "edgerec", 32);
    put_text(&mut body, &facts.recording_id, 32);
    put_text(&mut body, &date, 10);
    put_text(&mut body, &time, 8);
    let tr = facts.time_reference(spec.rate);
    put_u32(&mut body, tr as u32);
    put_u32(&mut body, (tr >> 32) as u32);
    body.extend_from_slice(&2u16.to_le_bytes()); // version 2
    body.resize(BEXT_FIXED, 0); // UMID, loudness (unknown = 0), reserved
    body.extend_from_slice(history.as_bytes());
    if body.len() % 2 == 1 {
        body.push(0);
    }
    let mut chunk = Vec::with_capacity(body.len() + 8);
    chunk.extend_from_slice(b"bext");
    put_u32(&mut chunk, body.len() as u32);
    chunk.extend_from_slice(&body);
    chunk
}

/// What a `bext` chunk says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bext {
    pub description: String,
    pub originator: String,
    pub originator_reference: String,
    pub origination_date: String,
    pub origination_time: String,
    pub time_reference: u64,
    pub version: u16,
    pub coding_history: String,
}

/// Reads the `bext` chunk of a RIFF or RF64 WAVE file, if it has one.
pub fn read_bext(path: &Path) -> io::Result<Option<Bext>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    if !matches!(&head[0..4], b"RIFF" | b"RF64") || &head[8..12] != b"WAVE" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a WAVE file",
        ));
    }
    let mut pos = 12u64;
    while pos + 8 <= len {
        let mut ch = [0u8; 8];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut ch)?;
        let size = u64::from(u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]));
        if &ch[0..4] == b"bext" {
            let mut body = vec![0u8; size.min(1 << 20) as usize];
            f.read_exact(&mut body)?;
            return Ok(Some(parse_bext(&body)?));
        }
        if &ch[0..4] == b"data" {
            return Ok(None); // bext comes before the audio in what we read
        }
        pos += 8 + size + (size & 1);
    }
    Ok(None)
}

fn parse_bext(b: &[u8]) -> io::Result<Bext> {
    if b.len() < BEXT_FIXED - 190 + 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bext chunk too short",
        ));
    }
    let text = |r: std::ops::Range<usize>| {
        let s = &b[r];
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).trim_end().to_string()
    };
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    Ok(Bext {
        description: text(0..256),
        originator: text(256..288),
        originator_reference: text(288..320),
        origination_date: text(320..330),
        origination_time: text(330..338),
        time_reference: u64::from(u32_at(338)) | (u64::from(u32_at(342)) << 32),
        version: u16::from_le_bytes([b[346], b[347]]),
        coding_history: if b.len() > BEXT_FIXED {
            text(BEXT_FIXED..b.len())
        } else {
            String::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        use SampleFormat::*;
        assert_eq!(layout(None, false, S16Le).unwrap(), (16, false));
        assert_eq!(layout(None, false, S24Le).unwrap(), (24, false));
        assert_eq!(layout(None, false, FloatLe).unwrap(), (32, true));
        assert_eq!(layout(Some(24), false, FloatLe).unwrap(), (24, false));
        assert_eq!(layout(None, true, S16Le).unwrap(), (32, true));
        assert!(layout(Some(8), false, S16Le).is_err());
        assert!(layout(Some(16), true, S16Le).is_err());
    }

    #[test]
    fn bext_round_trips() {
        let facts = Facts {
            job_id: "job-7".into(),
            recording_id: "rec-9".into(),
            started_at_ms: Some(86_400_000 * 20_000 + 3_600_000 + 500),
        };
        let spec = StreamSpec {
            format: SampleFormat::S16Le,
            rate: 48_000,
            channels: 2,
        };
        let chunk = bext_chunk(&facts, spec);
        assert_eq!(chunk.len() % 2, 0);
        let got = parse_bext(&chunk[8..]).unwrap();
        assert_eq!(got.description, "edgerec job job-7 recording rec-9");
        assert_eq!(got.originator_reference, "rec-9");
        assert_eq!(got.origination_date, "2024-10-04");
        assert_eq!(got.origination_time, "01:00:00");
        assert_eq!(got.time_reference, 3_600_500 * 48);
        assert_eq!(got.version, 2);
        assert!(
            got.coding_history
                .starts_with("A=PCM,F=48000,W=16,M=stereo")
        );
    }
}
