//! MP3 with LAME (mp3lame-encoder): VBR at the LAME preset nearest the asked bitrate, or CBR;
//! an ID3v2.4 tag of text frames first, LAME's Xing/LAME tag frame patched in after it at
//! the end so players know the length and the encoder delay.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::num::NonZeroU32;

use mp3lame_encoder::{
    Bitrate, Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality, VbrMode,
};

use super::{CodecError, Encoder, EncoderParams, Facts, SampleKind, Samples};
use crate::core::format::SampleFormat;

mod frames;
mod join;
mod out;
mod sched;
pub(crate) mod split;
mod tag;
mod worker;
mod writer;

/// The rates MPEG-1, 2 and 2.5 carry.
const MP3_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// When the job names no bitrate.
pub const DEFAULT_KBPS: u32 = 128;

/// LAME's VBR presets V0..V9 and their typical bitrates (kbps), from LAME's own table.
const VBR_PRESETS: [(Quality, u32); 10] = [
    (Quality::Best, 245),
    (Quality::SecondBest, 225),
    (Quality::NearBest, 190),
    (Quality::VeryNice, 175),
    (Quality::Nice, 165),
    (Quality::Good, 130),
    (Quality::Decent, 115),
    (Quality::Ok, 100),
    (Quality::SecondWorst, 85),
    (Quality::Worst, 65),
];

const CBR_RATES: [(Bitrate, u32); 16] = [
    (Bitrate::Kbps8, 8),
    (Bitrate::Kbps16, 16),
    (Bitrate::Kbps24, 24),
    (Bitrate::Kbps32, 32),
    (Bitrate::Kbps40, 40),
    (Bitrate::Kbps48, 48),
    (Bitrate::Kbps64, 64),
    (Bitrate::Kbps80, 80),
    (Bitrate::Kbps96, 96),
    (Bitrate::Kbps112, 112),
    (Bitrate::Kbps128, 128),
    (Bitrate::Kbps160, 160),
    (Bitrate::Kbps192, 192),
    (Bitrate::Kbps224, 224),
    (Bitrate::Kbps256, 256),
    (Bitrate::Kbps320, 320),
];

/// The V-level (0..=9) whose typical bitrate is nearest `kbps` (ties to the better one).
pub fn vbr_level(kbps: u32) -> usize {
    (0..VBR_PRESETS.len())
        .min_by_key(|&i| VBR_PRESETS[i].1.abs_diff(kbps))
        .unwrap_or(2)
}

/// The bitrate (kbps) `p` typically takes: its VBR preset's or its CBR rate.
pub(crate) fn typical_kbps(p: &EncoderParams) -> u32 {
    let kbps = p.bitrate_kbps.unwrap_or(DEFAULT_KBPS);
    if p.vbr {
        VBR_PRESETS[vbr_level(kbps)].1
    } else {
        cbr_kbps(kbps)
    }
}

/// The CBR bitrate nearest `kbps`.
pub fn cbr_kbps(kbps: u32) -> u32 {
    CBR_RATES[cbr_index(kbps)].1
}

fn cbr_index(kbps: u32) -> usize {
    (0..CBR_RATES.len())
        .min_by_key(|&i| CBR_RATES[i].1.abs_diff(kbps))
        .unwrap_or(10)
}

pub fn layout(
    _bits: Option<u16>,
    _float: bool,
    _source: SampleFormat,
) -> Result<(u16, bool), CodecError> {
    Ok((32, true)) // LAME takes float samples; it does its own quantization
}

pub fn open(file: File, p: &EncoderParams) -> Result<Box<dyn Encoder>, CodecError> {
    let (lame, channels) = lame(p)?;
    let tag = id3v2(&p.facts, p.rate);
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    out.write_all(&tag)?;
    Ok(Box::new(Mp3Encoder {
        lame,
        out,
        channels,
        tag_len: tag.len() as u64,
        buf: Vec::new(),
    }))
}

/// A LAME encoder for `p` (its Xing/LAME tag frame enabled) and its channel count.
pub(crate) fn lame(p: &EncoderParams) -> Result<(mp3lame_encoder::Encoder, usize), CodecError> {
    let build = |e: mp3lame_encoder::BuildError| CodecError::Encode(format!("LAME: {e}"));
    let mut b = Builder::new().ok_or_else(|| CodecError::Encode("LAME: out of memory".into()))?;
    let channels = u8::try_from(p.channels)
        .ok()
        .filter(|c| (1..=2).contains(c))
        .ok_or_else(|| {
            CodecError::Unsupported(format!("MP3 carries 1 or 2 channels, not {}", p.channels))
        })?;
    b.set_num_channels(channels).map_err(build)?;
    b.set_sample_rate(p.rate).map_err(build)?;
    // Else LAME picks a lower rate at low presets (V7-V9 at 48 kHz gave 22.05 kHz) while
    // the report says the input's; an MP3 rate is kept (LAME resamples other rates).
    if MP3_RATES.contains(&p.rate) {
        b.set_output_sample_rate(NonZeroU32::new(p.rate))
            .map_err(build)?;
    }
    b.set_mode(if channels == 1 {
        Mode::Mono
    } else {
        Mode::JointStereo
    })
    .map_err(build)?;
    b.set_quality(Quality::VeryNice).map_err(build)?; // LAME's own default (-q 3)
    let kbps = p.bitrate_kbps.unwrap_or(DEFAULT_KBPS);
    if p.vbr {
        b.set_vbr_mode(VbrMode::Mtrh).map_err(build)?;
        b.set_vbr_quality(VBR_PRESETS[vbr_level(kbps)].0)
            .map_err(build)?;
    } else {
        b.set_vbr_mode(VbrMode::Off).map_err(build)?;
        b.set_brate(CBR_RATES[cbr_index(kbps)].0).map_err(build)?;
    }
    b.set_to_write_vbr_tag(true).map_err(build)?;
    Ok((b.build().map_err(build)?, usize::from(channels)))
}

struct Mp3Encoder {
    lame: mp3lame_encoder::Encoder,
    out: BufWriter<File>,
    channels: usize,
    tag_len: u64,
    buf: Vec<u8>,
}

fn encode_err(e: mp3lame_encoder::EncodeError) -> CodecError {
    CodecError::Encode(format!("LAME: {e}"))
}

impl Encoder for Mp3Encoder {
    fn input(&self) -> SampleKind {
        SampleKind::Float
    }

    fn write(&mut self, samples: Samples<'_>) -> Result<(), CodecError> {
        let Samples::Float(s) = samples else {
            return Err(CodecError::Encode("integer samples for MP3".into()));
        };
        let frames = s.len() / self.channels;
        self.buf.clear();
        self.buf
            .reserve(mp3lame_encoder::max_required_buffer_size(frames));
        if self.channels == 1 {
            self.lame.encode_to_vec(MonoPcm(s), &mut self.buf)
        } else {
            self.lame.encode_to_vec(InterleavedPcm(s), &mut self.buf)
        }
        .map_err(encode_err)?;
        self.out.write_all(&self.buf)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), CodecError> {
        self.buf.clear();
        self.buf.reserve(7200 * 2);
        self.lame
            .flush_to_vec::<FlushGap>(&mut self.buf)
            .map_err(encode_err)?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.buf.reserve(self.lame.lame_tag_size().max(1));
        let tag = self
            .lame
            .lame_tag_encode_to_vec(&mut self.buf)
            .map_or(0, |n| n.get());
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        if tag > 0 {
            // LAME left a blank frame of this size at the start of its stream.
            file.seek(SeekFrom::Start(self.tag_len))?;
            file.write_all(&self.buf[..tag])?;
        }
        file.sync_all()?;
        Ok(())
    }
}

/// An ID3v2.4 tag: TIT2, TDRC and TSSE, and TXXX for the other facts (UTF-8 text).
pub fn id3v2(facts: &Facts, rate: u32) -> Vec<u8> {
    let mut frames = Vec::new();
    let mut text_frame = |id: &[u8; 4], body: &[u8]| {
        let len = body.len() as u32 + 1;
        frames.extend_from_slice(id);
        frames.extend_from_slice(&synchsafe(len));
        frames.extend_from_slice(&[0, 0, 3]); // flags; encoding 3 = UTF-8
        frames.extend_from_slice(body);
    };
    text_frame(b"TIT2", facts.description().as_bytes());
    for (key, value) in facts.fields(rate) {
        match key {
            "DATE" => text_frame(
                b"TDRC",
                value
                    .trim_end_matches('Z')
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .as_bytes(),
            ),
            "ENCODER" => text_frame(b"TSSE", value.as_bytes()),
            "DESCRIPTION" => {}
            _ => text_frame(b"TXXX", format!("{key}\0{value}").as_bytes()),
        }
    }
    let mut tag = Vec::with_capacity(frames.len() + 10);
    tag.extend_from_slice(b"ID3\x04\x00\x00");
    tag.extend_from_slice(&synchsafe(frames.len() as u32));
    tag.extend_from_slice(&frames);
    tag
}

/// 28 bits in four 7-bit bytes.
fn synchsafe(n: u32) -> [u8; 4] {
    [
        (n >> 21) as u8 & 0x7F,
        (n >> 14) as u8 & 0x7F,
        (n >> 7) as u8 & 0x7F,
        n as u8 & 0x7F,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_and_bitrate_tables() {
        // (asked kbps, V level, CBR kbps)
        for (kbps, v, cbr) in [
            (245, 0, 256),
            (300, 0, 320),
            (190, 2, 192),
            (128, 5, 128),
            (65, 9, 64),
            (8, 9, 8),
            (170, 3, 160),
            (100, 7, 96),
        ] {
            assert_eq!(vbr_level(kbps), v, "{kbps}");
            assert_eq!(cbr_kbps(kbps), cbr, "{kbps}");
        }
    }

    #[test]
    fn id3_tag_is_well_formed() {
        let f = Facts {
            job_id: "j".into(),
            recording_id: "r".into(),
            started_at_ms: Some(0),
        };
        let t = id3v2(&f, 48_000);
        assert_eq!(&t[..5], b"ID3\x04\x00");
        let size = t[6..10].iter().fold(0u32, |a, &b| a << 7 | u32::from(b));
        assert_eq!(size as usize, t.len() - 10);
        let s = String::from_utf8_lossy(&t);
        assert!(s.contains("TIT2") && s.contains("edgerec job j recording r"));
        assert!(s.contains("TDRC") && s.contains("1970-01-01T00:00:00"));
        assert!(s.contains("EDGEREC_JOB\0j"));
    }
}
