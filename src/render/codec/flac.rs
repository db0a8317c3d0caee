//! FLAC with flacenc, frame by frame: `fLaC`, a STREAMINFO placeholder and the Vorbis
//! comments first; frames as they are encoded (batches on a pool of workers, one a core,
//! written in order); the STREAMINFO (sizes, sample count, MD5) patched in place at the end.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

use flacenc::component::StreamInfo;
use flacenc::config;
use flacenc::error::Verify;
use md5::{Digest, Md5};

use super::{CodecError, Encoder, EncoderParams, Facts, SampleKind, Samples};
use crate::core::format::SampleFormat;

mod frames;

/// flac -5's block size.
const BLOCK: usize = 4096;
/// flac -5's LPC order. With the fixed predictors left out (LPC of order 8 beats them on
/// speech and music, and choosing between them doubled the cost) the size stays within
/// 1 % of flac -5's.
const LPC_ORDER: usize = 8;
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

/// The encoder's settings: flac -5's size at the least work flacenc can do for it.
fn encoder_config(block: usize) -> config::Encoder {
    let mut cfg = config::Encoder::default();
    cfg.block_size = block;
    cfg.multithread = false; // our own pool, over whole batches
    cfg.subframe_coding.use_fixed = false;
    cfg.subframe_coding.qlpc.lpc_order = LPC_ORDER;
    // The stereo mode from a cheap estimate, two subframes encoded instead of four
    // (the vendored flacenc's patch): half the work, +0.002 % in size on speech.
    cfg.stereo_coding.estimate = true;
    cfg
}

pub fn open(file: File, p: &EncoderParams) -> Result<Box<dyn Encoder>, CodecError> {
    let verify = |e: flacenc::error::VerifyError| CodecError::Encode(e.to_string());
    let info =
        StreamInfo::new(p.rate as usize, p.channels as usize, p.bits as usize).map_err(verify)?;
    let cfg = encoder_config(BLOCK)
        .into_verified()
        .map_err(|(_, e)| verify(e))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    out.write_all(b"fLaC")?;
    out.write_all(&[0x00, 0, 0, 34])?; // STREAMINFO, not last
    out.write_all(&streaminfo(&Summary::empty(p), p))?;
    let comments = vorbis_comments(&p.facts, p.rate);
    let len = comments.len() as u32;
    out.write_all(&[0x84, (len >> 16) as u8, (len >> 8) as u8, len as u8])?; // last block
    out.write_all(&comments)?;
    let mut pool = frames::Pool::new(cfg, info, usize::from(p.channels), BLOCK)?;
    Ok(Box::new(FlacEncoder {
        out,
        params: p.clone(),
        pending: pool.buffer(),
        pool,
        md5: Md5::new(),
        md5_bytes: Vec::new(),
        // Counted from the frames actually written.
        summary: Summary {
            samples: 0,
            ..Summary::empty(p)
        },
        sent_frames: 0,
        written_frames: 0,
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

    /// Counts one frame written: `size` bytes carrying `frames` frames.
    fn add(&mut self, first: bool, size: u32, frames: u16) {
        if first {
            (self.min_frame, self.max_frame) = (size, size);
            // A one-block stream's block sizes are that block's.
            (self.min_block, self.max_block) = (frames, frames);
        } else {
            // Every block but the last is BLOCK long, and the last does not count (the
            // FLAC spec): a smaller minimum would declare a variable block size, and
            // libFLAC could not seek the file.
            (self.min_block, self.max_block) = (BLOCK as u16, BLOCK as u16);
        }
        self.min_frame = self.min_frame.min(size);
        self.max_frame = self.max_frame.max(size);
        self.samples += u64::from(frames);
    }
}

struct FlacEncoder {
    out: BufWriter<File>,
    params: EncoderParams,
    pool: frames::Pool,
    /// Samples for the next batch.
    pending: Vec<i32>,
    md5: Md5,
    md5_bytes: Vec<u8>,
    summary: Summary,
    sent_frames: usize,
    written_frames: usize,
}

impl FlacEncoder {
    /// Hands `pending` to the pool as a batch; writes the batches that are due.
    fn send_pending(&mut self) -> Result<(), CodecError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let block_samples = BLOCK * usize::from(self.params.channels);
        let blocks = self.pending.len().div_ceil(block_samples);
        let next = self.pool.buffer();
        let batch = std::mem::replace(&mut self.pending, next);
        let (out, summary, written) = (&mut self.out, &mut self.summary, &mut self.written_frames);
        let mut write = |b: &frames::Batch| write_batch(out, summary, written, b);
        self.pool.send(self.sent_frames, batch, &mut write)?;
        self.sent_frames += blocks;
        Ok(())
    }
}

/// Writes one encoded batch and counts its frames into STREAMINFO's summary.
fn write_batch(
    out: &mut BufWriter<File>,
    summary: &mut Summary,
    written: &mut usize,
    batch: &frames::Batch,
) -> Result<(), CodecError> {
    out.write_all(&batch.bytes)?;
    for &(size, frames) in &batch.frames {
        summary.add(*written == 0, size, frames);
        *written += 1;
    }
    Ok(())
}

impl Encoder for FlacEncoder {
    fn input(&self) -> SampleKind {
        SampleKind::Int(self.params.bits)
    }

    fn write(&mut self, samples: Samples<'_>) -> Result<(), CodecError> {
        let Samples::Int(mut s) = samples else {
            return Err(CodecError::Encode("float samples for FLAC".into()));
        };
        md5_update(&mut self.md5, &mut self.md5_bytes, s, self.params.bits);
        while !s.is_empty() {
            let room = self.pool.batch_len() - self.pending.len();
            let take = room.min(s.len());
            self.pending.extend_from_slice(&s[..take]);
            s = &s[take..];
            if self.pending.len() == self.pool.batch_len() {
                self.send_pending()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), CodecError> {
        self.send_pending()?;
        let (out, summary, written) = (&mut self.out, &mut self.summary, &mut self.written_frames);
        self.pool
            .drain(&mut |b: &frames::Batch| write_batch(out, summary, written, b))?;
        self.summary.md5 = self.md5.clone().finalize().into();
        let body = streaminfo(&self.summary, &self.params);
        let FlacEncoder { out, pool, .. } = *self;
        drop(pool);
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(STREAMINFO_AT))?;
        file.write_all(&body)?;
        file.sync_all()?;
        Ok(())
    }
}

/// MD5 of the samples as little-endian bytes of the output width (the FLAC rule).
fn md5_update(md5: &mut Md5, scratch: &mut Vec<u8>, s: &[i32], bits: u16) {
    scratch.clear();
    crate::render::convert::encode_le(s, usize::from(bits / 8), scratch);
    md5.update(scratch.as_slice());
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
