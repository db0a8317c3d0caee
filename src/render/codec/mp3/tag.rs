//! The Xing/LAME tag frame rewritten for a stream LAME did not write in one piece: frame
//! and byte counts, the seek table (TOC, by LAME's own method), the encoder padding, the
//! music length and CRC, and the tag's CRC. Everything else stays as LAME wrote it.

/// Where the fields sit, from the `Xing`/`Info` magic.
const FRAMES: usize = 8;
const BYTES: usize = 12;
const TOC: usize = 16;
const LAME: usize = 120;
const DELAY_PADDING: usize = 141;
const MUSIC_LENGTH: usize = 148;
const MUSIC_CRC: usize = 152;
const TAG_CRC: usize = 154;

/// The facts of the joined stream the tag describes.
pub struct Stream<'a> {
    /// Each audio frame's bitrate (kbps), in order.
    pub kbps: &'a [u16],
    /// Bytes of the audio frames (the tag frame not counted).
    pub audio_bytes: u64,
    /// LAME's music CRC: over the audio frames.
    pub music_crc: u16,
    pub padding: u16,
}

fn magic(tag: &[u8]) -> Result<usize, String> {
    let x = (0..tag.len().min(64).saturating_sub(4))
        .find(|&i| &tag[i..i + 4] == b"Xing" || &tag[i..i + 4] == b"Info")
        .ok_or("no Xing/Info tag in LAME's tag frame")?;
    if tag.len() < x + TAG_CRC + 2 || &tag[x + LAME..x + LAME + 4] != b"LAME" {
        return Err("LAME's tag frame has no LAME extension".into());
    }
    Ok(x)
}

/// (encoder delay, padding) from a LAME tag frame.
pub fn delay_padding(tag: &[u8]) -> Result<(u16, u16), String> {
    let d = &tag[magic(tag)? + DELAY_PADDING..][..3];
    let delay = u16::from(d[0]) << 4 | u16::from(d[1] >> 4);
    Ok((delay, u16::from(d[1] & 0x0F) << 8 | u16::from(d[2])))
}

/// Rewrites `tag` (LAME's tag frame for the stream's first span) for `s`.
pub fn rewrite(tag: &mut [u8], s: &Stream<'_>) -> Result<(), String> {
    let x = magic(tag)?;
    let bytes = u32::try_from(s.audio_bytes + tag.len() as u64)
        .map_err(|_| "an MP3 past 4 GiB has no Xing byte count")?;
    let frames = u32::try_from(s.kbps.len()).map_err(|_| "too many MP3 frames")?;
    tag[x + FRAMES..][..4].copy_from_slice(&frames.to_be_bytes());
    tag[x + BYTES..][..4].copy_from_slice(&bytes.to_be_bytes());
    tag[x + TOC..][..100].copy_from_slice(&toc(s.kbps));
    let d = &mut tag[x + DELAY_PADDING..][..3];
    d[1] = d[1] & 0xF0 | (s.padding >> 8 & 0x0F) as u8;
    d[2] = s.padding as u8;
    tag[x + MUSIC_LENGTH..][..4].copy_from_slice(&bytes.to_be_bytes());
    tag[x + MUSIC_CRC..][..2].copy_from_slice(&s.music_crc.to_be_bytes());
    let crc = super::frames::crc16(0, &tag[..x + TAG_CRC]);
    tag[x + TAG_CRC..][..2].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// LAME's seek table (VbrTag.c, `addVbr` and `Xing_seek_table`): the running sum of the
/// frames' bitrates sampled into 400 slots, halved as they fill, read at each percent.
/// Its float arithmetic is kept so a one-piece stream gets LAME's bytes.
fn toc(kbps: &[u16]) -> [u8; 100] {
    const SIZE: usize = 400;
    let mut bag = [0i64; SIZE];
    let (mut sum, mut seen, mut want, mut pos) = (0i64, 0usize, 1usize, 0usize);
    for &k in kbps {
        sum += i64::from(k);
        seen += 1;
        if seen < want {
            continue;
        }
        if pos < SIZE {
            bag[pos] = sum;
            pos += 1;
            seen = 0;
        }
        if pos == SIZE {
            for i in (1..SIZE).step_by(2) {
                bag[i / 2] = bag[i];
            }
            want *= 2;
            pos /= 2;
        }
    }
    let mut t = [0u8; 100];
    if pos == 0 {
        return t;
    }
    for (i, entry) in t.iter_mut().enumerate().skip(1) {
        let j = i as f32 / 100.0;
        let index = (f64::from(j * pos as f32).floor() as usize).min(pos - 1);
        let (act, total) = (bag[index] as f32, sum as f32);
        *entry = ((256.0 * f64::from(act) / f64::from(total)) as i64).min(255) as u8;
    }
    t
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::frames::{FrameLog, crc16, kbps};
    use super::*;
    use crate::render::codec::{EncoderParams, Facts};
    use mp3lame_encoder::{FlushGap, InterleavedPcm};

    pub fn params(vbr: bool, kbps: u32) -> EncoderParams {
        EncoderParams {
            rate: 48_000,
            channels: 2,
            bits: 32,
            float: true,
            bitrate_kbps: Some(kbps),
            vbr,
            frames: 0,
            facts: Facts {
                job_id: "j".into(),
                recording_id: "r".into(),
                started_at_ms: Some(0),
            },
        }
    }

    /// A signal with speech-like bursts, a sweep and noise: bitrates and block types vary.
    pub fn signal(frames: usize) -> Vec<f32> {
        let mut seed = 0x1234_5678u32;
        (0..frames)
            .flat_map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let t = i as f32 / 48_000.0;
                let burst = if (t * 3.0).fract() < 0.4 { 0.6 } else { 0.05 };
                let l = burst
                    * (2.0 * std::f32::consts::PI * (200.0 + 900.0 * t.sin().abs()) * t).sin();
                let click = if i % 24_000 < 24 { 0.8 } else { 0.0 };
                [l + 0.05 * noise + click, 0.7 * l - 0.1 * noise]
            })
            .collect()
    }

    /// LAME's whole stream for `samples` (blank tag frame first) and its tag frame.
    pub fn encode(p: &EncoderParams, samples: &[f32]) -> (Vec<u8>, Vec<u8>) {
        let (mut lame, _) = super::super::lame(p).unwrap();
        let mut out = Vec::new();
        for piece in samples.chunks(8192) {
            out.reserve(mp3lame_encoder::max_required_buffer_size(piece.len() / 2));
            lame.encode_to_vec(InterleavedPcm(piece), &mut out).unwrap();
        }
        out.reserve(7200 * 2);
        lame.flush_to_vec::<FlushGap>(&mut out).unwrap();
        let mut tag = Vec::with_capacity(lame.lame_tag_size());
        lame.lame_tag_encode_to_vec(&mut tag).unwrap();
        (out, tag)
    }

    #[test]
    fn a_one_piece_stream_gets_lames_own_tag() {
        for (vbr, asked) in [(true, 190), (false, 128)] {
            let p = params(vbr, asked);
            let (bytes, lames) = encode(&p, &signal(48_000 * 20 + 333));
            let mut log = FrameLog::default();
            log.feed(&bytes).unwrap();
            assert!(log.is_whole());
            assert_eq!(
                usize::from(log.frames[0].len),
                lames.len(),
                "the blank tag frame"
            );
            let kbps: Vec<u16> = log.frames[1..]
                .iter()
                .map(|f| kbps(f.bitrate_index))
                .collect();
            let mut ours = lames.clone();
            let x = magic(&ours).unwrap();
            for r in [x + FRAMES..x + TOC + 100, x + MUSIC_LENGTH..x + TAG_CRC + 2] {
                ours[r].fill(0);
            }
            ours[x + DELAY_PADDING + 1] &= 0xF0;
            ours[x + DELAY_PADDING + 2] = 0;
            let stream = Stream {
                kbps: &kbps,
                audio_bytes: log.bytes - lames.len() as u64,
                music_crc: crc16(0, &bytes[lames.len()..]),
                padding: delay_padding(&lames).unwrap().1,
            };
            rewrite(&mut ours, &stream).unwrap();
            assert_eq!(ours, lames, "vbr {vbr}");
        }
    }
}
