//! The lane pass against a plain scalar reference: random blocks of every integer
//! format, 1 to 8 channels and a wide 64, rails included, give exactly the same integer
//! sums (they are exact, so any difference is a bug, not rounding). S16 with a channel
//! count that divides 16 has a pass of its own (`meter_s16.rs`), held to the same sums.
//! Each runs in both its builds: AVX2 (where the CPU has it) and the baseline.

use super::feed::{ChannelAcc, Scratch, int_block_sums};
use super::s16;
use super::*;
use proptest::prelude::*;

const INT_FORMATS: [SampleFormat; 3] = [
    SampleFormat::S16Le,
    SampleFormat::S24Le3,
    SampleFormat::S24Le,
];

/// Magnitude bits of an integer format.
fn bits(format: SampleFormat) -> u32 {
    if format == SampleFormat::S16Le {
        15
    } else {
        23
    }
}

/// A value in range as native bytes (S24_LE with garbage in its top byte, which a
/// reader must ignore).
fn encode(format: SampleFormat, v: i32, junk: u8) -> Vec<u8> {
    let b = v.to_le_bytes();
    match format {
        SampleFormat::S16Le => b[..2].to_vec(),
        SampleFormat::S24Le3 => b[..3].to_vec(),
        _ => vec![b[0], b[1], b[2], junk],
    }
}

/// Decodes one sample byte by byte, the long way round.
fn scalar_decode(format: SampleFormat, s: &[u8]) -> i32 {
    let width = if format == SampleFormat::S16Le { 2 } else { 3 };
    let raw = s[..width]
        .iter()
        .rev()
        .fold(0i64, |acc, &b| acc * 256 + i64::from(b));
    let half = 1i64 << (8 * width - 1);
    (if raw >= half { raw - 2 * half } else { raw }) as i32
}

/// The reference: sample by sample, frame by frame.
fn scalar_sums(format: SampleFormat, bytes: &[u8], channels: usize) -> (Vec<ChannelAcc>, Vec<i64>) {
    let width = format.bytes_per_sample();
    let (hi, lo) = ((1i32 << bits(format)) - 1, -(1i32 << bits(format)));
    let mut acc = vec![ChannelAcc::default(); channels];
    let mut cross = vec![0i64; channels / 2];
    for frame in bytes.chunks_exact(width * channels) {
        let v: Vec<i32> = frame
            .chunks_exact(width)
            .map(|s| scalar_decode(format, s))
            .collect();
        for (a, &x) in acc.iter_mut().zip(&v) {
            a.peak = a.peak.max(x.unsigned_abs());
            a.sum_sq += (i64::from(x) * i64::from(x)) as u64;
            a.sum += i64::from(x);
            a.clipped += u64::from(x == hi || x == lo);
        }
        for (p, c) in cross.iter_mut().enumerate() {
            *c += i64::from(v[2 * p]) * i64::from(v[2 * p + 1]);
        }
    }
    (acc, cross)
}

/// A block: format, channels, and samples (each may sit on a rail).
fn blocks() -> impl Strategy<Value = (SampleFormat, usize, Vec<(i32, u8)>)> {
    let channels = prop_oneof![1usize..=8, Just(64usize)];
    (0..3usize, channels, 0usize..=300).prop_flat_map(|(f, ch, frames)| {
        let format = INT_FORMATS[f];
        let b = bits(format);
        let (hi, lo) = ((1i32 << b) - 1, -(1i32 << b));
        let sample = prop_oneof![
            6 => lo..=hi,
            1 => Just(hi),
            1 => Just(lo),
            1 => -4i32..=4,
        ];
        let samples = proptest::collection::vec((sample, any::<u8>()), frames * ch);
        (Just(format), Just(ch), samples)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_lane_pass_sums_exactly_what_a_scalar_pass_sums((format, channels, samples) in blocks()) {
        // Both builds of the lane loops: AVX2 where the CPU has it, and the baseline.
        for baseline in [false, true] {
            super::feed::BASELINE_ONLY.set(baseline);
            let bytes: Vec<u8> = samples.iter().flat_map(|&(v, junk)| encode(format, v, junk)).collect();
            let mut decoded = Vec::new();
            let width = format.bytes_per_sample();
            decoded.extend(bytes.chunks_exact(width).map(|s| scalar_decode(format, s)));
            let mut scratch = Scratch::default();
            int_block_sums(&decoded, channels, bits(format), &mut scratch);
            let (acc, cross) = scalar_sums(format, &bytes, channels);
            prop_assert_eq!(&scratch.channels, &acc);
            prop_assert_eq!(&scratch.cross, &cross);
            if format == SampleFormat::S16Le && s16::fits(channels) {
                let shorts: Vec<i16> = decoded.iter().map(|&v| v as i16).collect();
                let mut scratch = Scratch::default();
                s16::block_sums(&shorts, channels, &mut scratch);
                prop_assert_eq!(&scratch.channels, &acc);
                prop_assert_eq!(&scratch.cross, &cross);
            }
            // And through the meter's own decode, one feed: the same window as the sums.
            let mut m = LevelMeter::new(channels as u16);
            m.feed_bytes(format, &bytes);
            let inv = 1.0 / f64::from(1u32 << bits(format));
            for (ch, a) in acc.iter().enumerate() {
                prop_assert_eq!(m.clipped[ch], a.clipped);
                prop_assert_eq!(m.peak[ch], f64::from(a.peak) * inv);
                prop_assert_eq!(m.sum_sq[ch], a.sum_sq as f64 * inv * inv);
                prop_assert_eq!(m.sum[ch], a.sum as f64 * inv);
            }
            for (p, &c) in cross.iter().enumerate() {
                prop_assert_eq!(m.cross[p], c as f64 * inv * inv);
            }
            prop_assert_eq!(m.frames, (samples.len() / channels) as u64);
            // The same bytes at an odd address: S16 is decoded first there, not read in
            // place, and the window is the same.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let mut odd = LevelMeter::new(channels as u16);
            odd.feed_bytes(format, &shifted[1..]);
            prop_assert_eq!((&odd.peak, &odd.sum_sq, &odd.sum), (&m.peak, &m.sum_sq, &m.sum));
            prop_assert_eq!((&odd.clipped, &odd.cross, odd.frames), (&m.clipped, &m.cross, m.frames));
        }
    }
}
