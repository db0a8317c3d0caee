//! FLAC with flacenc, frame by frame: `fLaC`, a STREAMINFO placeholder and the Vorbis
//! comments first; frames as they are encoded (in parallel batches on two threads); the
//! STREAMINFO (sizes, sample count, MD5) patched in place at the end.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};
use md5::{Digest, Md5};

use super::{CodecError, Encoder, EncoderParams, Facts, SampleKind, Samples};
use crate::core::format::SampleFormat;

const BLOCK: usize = 4096;
const LPC_ORDER: usize = 8;
/// Blocks per parallel batch (two halves, one per thread).
const BATCH_BLOCKS: usize = 32;
/// Offset of the STREAMINFO body: after `fLaC` and the block header.
const STREAMINFO_AT: u64 = 8;

pub fn layout(
    bits: Option<u16>,
    float: bool,
    source: SampleFormat,
) -> Result<(u16, bool), CodecError> {
    match (bits, float) {
        (_, true) => Err(CodecError::Unsupported(
            "FLAC carries integers, not float".into(),
        )),
        (None, _) if source.valid_bits() <= 16 => Ok((16, false)),
        (None, _) => Ok((24, false)),
        (Some(b @ (16 | 24)), _) => Ok((b, false)),
        (Some(b), _) => Err(CodecError::Unsupported(format!(
            "FLAC output is 16- or 24-bit here, not {b}-bit"
        ))),
    }
}

pub fn open(file: File, p: &EncoderParams) -> Result<Box<dyn Encoder>, CodecError> {
    let verify = |e: flacenc::error::VerifyError| CodecError::Encode(e.to_string());
    let info =
        StreamInfo::new(p.rate as usize, p.channels as usize, p.bits as usize).map_err(verify)?;
    let mut cfg = config::Encoder::default();
    cfg.block_size = BLOCK;
    cfg.multithread = false; // our own two threads, over whole batches
    // flac -5's LPC order: smaller and faster here than flacenc's default on speech.
    cfg.subframe_coding.qlpc.lpc_order = LPC_ORDER;
    let cfg = cfg.into_verified().map_err(|(_, e)| verify(e))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    out.write_all(b"fLaC")?;
    out.write_all(&[0x00, 0, 0, 34])?; // STREAMINFO, not last
    out.write_all(&streaminfo(&Summary::empty(p), p))?;
    let comments = vorbis_comments(&p.facts, p.rate);
    let len = comments.len() as u32;
    out.write_all(&[0x84, (len >> 16) as u8, (len >> 8) as u8, len as u8])?; // last block
    out.write_all(&comments)?;
    Ok(Box::new(FlacEncoder {
        out,
        params: p.clone(),
        cfg,
        info,
        pending: Vec::with_capacity(BLOCK * BATCH_BLOCKS * p.channels as usize),
        md5: Md5::new(),
        md5_bytes: Vec::new(),
        // Counted from the frames actually written.
        summary: Summary {
            samples: 0,
            ..Summary::empty(p)
        },
        next_frame: 0,
    }))
}

/// What STREAMINFO says about the frames written.
#[derive(Clone, Copy, Debug)]
struct Summary {
    min_block: u16,
    max_block: u16,
    min_frame: u32,
    max_frame: u32,
    samples: u64,
    md5: [u8; 16],
}

impl Summary {
    fn empty(p: &EncoderParams) -> Summary {
        Summary {
            min_block: BLOCK as u16,
            max_block: BLOCK as u16,
            min_frame: 0, // 0 = unknown, until the end
            max_frame: 0,
            samples: p.frames,
            md5: [0; 16],
        }
    }
}

struct FlacEncoder {
    out: BufWriter<File>,
    params: EncoderParams,
    cfg: Verified<config::Encoder>,
    info: StreamInfo,
    pending: Vec<i32>,
    md5: Md5,
    md5_bytes: Vec<u8>,
    summary: Summary,
    next_frame: usize,
}

impl FlacEncoder {
    /// Encodes and writes `pending`'s whole blocks (all of it when `last`).
    fn flush_blocks(&mut self, last: bool) -> Result<(), CodecError> {
        let ch = self.params.channels as usize;
        let block_len = BLOCK * ch;
        let whole = if last {
            self.pending.len()
        } else {
            self.pending.len() / block_len * block_len
        };
        if whole == 0 {
            return Ok(());
        }
        let blocks: Vec<&[i32]> = self.pending[..whole].chunks(block_len).collect();
        let half = blocks.len().div_ceil(2);
        let (cfg, info, first) = (&self.cfg, &self.info, self.next_frame);
        let (a, b) = std::thread::scope(|s| {
            let second = s.spawn(|| encode_blocks(cfg, info, &blocks[half..], first + half, ch));
            let a = encode_blocks(cfg, info, &blocks[..half], first, ch);
            let b = second
                .join()
                .unwrap_or_else(|_| Err(CodecError::Encode("FLAC worker panicked".into())));
            (a, b)
        });
        for (frame, frames) in a?.into_iter().chain(b?) {
            let s = &mut self.summary;
            let size = frame.len() as u32;
            if self.next_frame == 0 {
                (s.min_frame, s.max_frame, s.min_block, s.max_block) = (size, size, frames, frames);
            }
            s.min_frame = s.min_frame.min(size);
            s.max_frame = s.max_frame.max(size);
            s.min_block = s.min_block.min(frames);
            s.max_block = s.max_block.max(frames);
            s.samples += u64::from(frames);
            self.out.write_all(&frame)?;
            self.next_frame += 1;
        }
        self.pending.drain(..whole);
        Ok(())
    }
}

/// Encodes each block to its bytes, numbering frames from `first`.
fn encode_blocks(
    cfg: &Verified<config::Encoder>,
    info: &StreamInfo,
    blocks: &[&[i32]],
    first: usize,
    ch: usize,
) -> Result<Vec<(Vec<u8>, u16)>, CodecError> {
    let err = |e: &dyn std::fmt::Display| CodecError::Encode(e.to_string());
    let mut fb = FrameBuf::with_size(ch, BLOCK).map_err(|e| err(&e))?;
    let mut sink = ByteSink::new();
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        fb.fill_interleaved(block).map_err(|e| err(&e))?;
        let frame =
            flacenc::encode_fixed_size_frame(cfg, &fb, first + i, info).map_err(|e| err(&e))?;
        sink.clear();
        frame.write(&mut sink).map_err(|e| err(&e))?;
        out.push((sink.as_slice().to_vec(), (block.len() / ch) as u16));
    }
    Ok(out)
}

impl Encoder for FlacEncoder {
    fn input(&self) -> SampleKind {
        SampleKind::Int(self.params.bits)
    }

    fn write(&mut self, samples: Samples<'_>) -> Result<(), CodecError> {
        let Samples::Int(s) = samples else {
            return Err(CodecError::Encode("float samples for FLAC".into()));
        };
        // MD5 of the samples as little-endian bytes of the output width (the FLAC rule).
        let width = usize::from(self.params.bits / 8);
        self.md5_bytes.clear();
        for v in s {
            self.md5_bytes.extend_from_slice(&v.to_le_bytes()[..width]);
        }
        self.md5.update(&self.md5_bytes);
        self.pending.extend_from_slice(s);
        if self.pending.len() >= BLOCK * BATCH_BLOCKS * self.params.channels as usize {
            self.flush_blocks(false)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), CodecError> {
        self.flush_blocks(true)?;
        self.summary.md5 = self.md5.clone().finalize().into();
        let body = streaminfo(&self.summary, &self.params);
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(STREAMINFO_AT))?;
        file.write_all(&body)?;
        file.sync_all()?;
        Ok(())
    }
}

/// The 34-byte STREAMINFO body.
fn streaminfo(s: &Summary, p: &EncoderParams) -> [u8; 34] {
    let mut b = [0u8; 34];
    b[0..2].copy_from_slice(&s.min_block.to_be_bytes());
    b[2..4].copy_from_slice(&s.max_block.to_be_bytes());
    b[4..7].copy_from_slice(&s.min_frame.to_be_bytes()[1..]);
    b[7..10].copy_from_slice(&s.max_frame.to_be_bytes()[1..]);
    let packed: u64 = (u64::from(p.rate) << 44)
        | (u64::from(p.channels - 1) << 41)
        | (u64::from(p.bits - 1) << 36)
        | (s.samples & ((1 << 36) - 1));
    b[10..18].copy_from_slice(&packed.to_be_bytes());
    b[18..34].copy_from_slice(&s.md5);
    b
}

/// A VORBIS_COMMENT block body with the recording's facts.
fn vorbis_comments(facts: &Facts, rate: u32) -> Vec<u8> {
    let vendor = format!("edgerec {}", env!("CARGO_PKG_VERSION"));
    let fields = facts.fields(rate);
    let mut b = Vec::new();
    b.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    b.extend_from_slice(vendor.as_bytes());
    b.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (k, v) in fields {
        let c = format!("{k}={v}");
        b.extend_from_slice(&(c.len() as u32).to_le_bytes());
        b.extend_from_slice(c.as_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaminfo_packs_fields() {
        let p = EncoderParams {
            rate: 44_100,
            channels: 2,
            bits: 16,
            float: false,
            bitrate_kbps: None,
            vbr: false,
            frames: 0,
            facts: Facts::default(),
        };
        let s = Summary {
            min_block: 100,
            max_block: 4096,
            min_frame: 14,
            max_frame: 0x012345,
            samples: 0x1_2345_6789,
            md5: [7; 16],
        };
        let b = streaminfo(&s, &p);
        assert_eq!(&b[0..10], &[0, 100, 0x10, 0, 0, 0, 14, 0x01, 0x23, 0x45]);
        // 44100 = 0x0AC44 (20 bits), channels-1 = 1 (3 bits), bps-1 = 15 (5 bits)
        assert_eq!(&b[10..14], &[0x0A, 0xC4, 0x42, 0xF1]);
        assert_eq!(&b[14..18], &[0x23, 0x45, 0x67, 0x89]);
        assert_eq!(&b[18..], &[7; 16]);
        assert!(layout(None, false, SampleFormat::S32Le).unwrap() == (24, false));
        assert!(layout(Some(32), false, SampleFormat::S16Le).is_err());
    }
}
