//! Sample conversion, done once each way: segment bytes to `f32` (nominal -1.0..1.0), and
//! `f32` to the encoder's integer width with TPDF dither where the output grid is coarser
//! than the signal's, clipping counted.
//!
//! Integer sources up to 24 bits are exact in `f32` (24-bit mantissa): a 16- or 24-bit
//! capture rendered at its own width with no mixing comes out bit for bit.

use crate::core::format::SampleFormat;

/// Appends the samples of `bytes` (whole samples of `format`) to `out` as `f32`.
pub fn decode(format: SampleFormat, bytes: &[u8], out: &mut Vec<f32>) {
    match format {
        SampleFormat::S16Le => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0),
        ),
        SampleFormat::S24Le3 => out.extend(bytes.chunks_exact(3).map(|b| {
            let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
            v as f32 / 8_388_608.0
        })),
        // Low-justified 24-bit in a word: the top byte only repeats the sign.
        SampleFormat::S24Le => out.extend(bytes.chunks_exact(4).map(|b| {
            let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
            v as f32 / 8_388_608.0
        })),
        SampleFormat::S32Le => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0),
        ),
        SampleFormat::FloatLe => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
    }
}

/// Appends `samples` as little-endian integers `width` bytes wide (their low bytes).
/// Written in place into a resized buffer: `extend` over `flat_map` pushes byte by byte.
pub fn encode_le(samples: &[i32], width: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + samples.len() * width, 0);
    let dest = &mut out[start..];
    match width {
        2 => put(dest, samples, |v| (v as i16).to_le_bytes()),
        3 => put(dest, samples, |v| {
            let b = v.to_le_bytes();
            [b[0], b[1], b[2]]
        }),
        _ => put(dest, samples, i32::to_le_bytes),
    }
}

/// Appends `samples` as little-endian IEEE floats.
pub fn encode_f32_le(samples: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + samples.len() * 4, 0);
    put(&mut out[start..], samples, f32::to_le_bytes);
}

fn put<T: Copy, const W: usize>(dest: &mut [u8], samples: &[T], f: impl Fn(T) -> [u8; W]) {
    for (d, &v) in dest.chunks_exact_mut(W).zip(samples) {
        d.copy_from_slice(&f(v));
    }
}

/// `f32` to `bits`-wide integers. Deterministic (the dither is a hash of the sample index), so a render
/// is reproducible.
#[derive(Clone, Debug)]
pub struct Quantizer {
    bits: u32,
    dither: bool,
    /// Samples dithered so far: the dither hash's input.
    counter: u64,
    /// Samples past full scale, clamped.
    pub clipped: u64,
}

impl Quantizer {
    /// `dither` when the output grid is coarser than the signal's (fewer bits than the
    /// source, or samples that were mixed or resampled off the source grid).
    pub fn new(bits: u16, dither: bool) -> Quantizer {
        Quantizer {
            bits: u32::from(bits.clamp(8, 32)),
            dither,
            counter: 0,
            clipped: 0,
        }
    }

    /// TPDF dither for sample `n` of the stream, in LSBs (-1..1, triangular): the
    /// difference of the two 16-bit halves of a 32-bit integer hash of `n`. Each value
    /// stands alone (no generator state to carry), so the loop over a buffer vectorizes.
    fn tpdf(n: u32) -> f32 {
        let mut x = n;
        x ^= x >> 16;
        x = x.wrapping_mul(0x7FEB_352D);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846C_A68B);
        x ^= x >> 16;
        ((x & 0xFFFF) as f32 - (x >> 16) as f32) * (1.0 / 65_536.0)
    }

    /// Quantizes `input` into `out` (cleared first).
    pub fn run(&mut self, input: &[f32], out: &mut Vec<i32>) {
        out.clear();
        let scale = (1u64 << (self.bits - 1)) as f64;
        let (min, max) = (-scale, scale - 1.0);
        // Counted without a branch, so the loops below stay straight-line.
        self.clipped += input
            .iter()
            .map(|x| u64::from(!(-1.0..=1.0).contains(x)))
            .sum::<u64>();
        // f64: a 32-bit grid is finer than f32 can carry. Round half away from zero with
        // a truncating cast (`round` is a library call on baseline x86-64).
        let q = move |v: f64| {
            let w = v + 0.5f64.copysign(v);
            // NaN to 0, then into [min, max]: what a saturating `as` gives, but a plain
            // select and min/max, so the loops below vectorize (the saturating cast
            // kept them one sample at a time on baseline x86-64).
            let w = if w.is_nan() { 0.0 } else { w }.max(min).min(max);
            // SAFETY: `w` is finite and within [min, max] ⊆ [i32::MIN, i32::MAX].
            unsafe { w.to_int_unchecked::<i32>() }
        };
        out.resize(input.len(), 0);
        if self.dither {
            let first = self.counter as u32;
            self.counter = self.counter.wrapping_add(input.len() as u64);
            for (i, (o, &x)) in out.iter_mut().zip(input).enumerate() {
                let d = Self::tpdf(first.wrapping_add(i as u32));
                *o = q(f64::from(x) * scale + f64::from(d));
            }
        } else {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = q(f64::from(x) * scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        // (format, bytes, expected)
        let cases: Vec<(SampleFormat, Vec<u8>, Vec<f32>)> = vec![
            (
                SampleFormat::S16Le,
                [0i16, 16_384, -32_768, 32_767]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![0.0, 0.5, -1.0, 32_767.0 / 32_768.0],
            ),
            (
                SampleFormat::S24Le3,
                vec![0x00, 0x00, 0x40, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00],
                vec![0.5, -1.0, 1.0 / 8_388_608.0],
            ),
            (
                SampleFormat::S24Le,
                [-0x40_0000i32, 0x7F_FFFF]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![-0.5, 8_388_607.0 / 8_388_608.0],
            ),
            (
                SampleFormat::S32Le,
                [i32::MIN, 1 << 30]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![-1.0, 0.5],
            ),
            (
                SampleFormat::FloatLe,
                [0.25f32, -2.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![0.25, -2.0],
            ),
        ];
        for (format, bytes, want) in cases {
            let mut got = Vec::new();
            decode(format, &bytes, &mut got);
            assert_eq!(got, want, "{format}");
        }
    }

    #[test]
    fn undithered_round_trip_is_exact() {
        let values16: Vec<i32> = (-32_768..32_768).step_by(7).collect();
        let bytes: Vec<u8> = values16
            .iter()
            .flat_map(|&v| (v as i16).to_le_bytes())
            .collect();
        let mut f = Vec::new();
        decode(SampleFormat::S16Le, &bytes, &mut f);
        let mut q = Quantizer::new(16, false);
        let mut out = Vec::new();
        q.run(&f, &mut out);
        assert_eq!(out, values16);
        assert_eq!(q.clipped, 0);

        let values24: Vec<i32> = (-8_388_608..8_388_608).step_by(4099).collect();
        let bytes: Vec<u8> = values24.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut f = Vec::new();
        decode(SampleFormat::S24Le, &bytes, &mut f);
        let mut q = Quantizer::new(24, false);
        q.run(&f, &mut out);
        assert_eq!(out, values24);
    }

    #[test]
    fn little_endian_encoding_by_width() {
        let s = [0x0102_0304, -2];
        let mut out = vec![9];
        encode_le(&s, 2, &mut out);
        assert_eq!(out, [9, 0x04, 0x03, 0xFE, 0xFF]);
        out.clear();
        encode_le(&s, 3, &mut out);
        assert_eq!(out, [0x04, 0x03, 0x02, 0xFE, 0xFF, 0xFF]);
        out.clear();
        encode_le(&s, 4, &mut out);
        assert_eq!(out, [0x04, 0x03, 0x02, 0x01, 0xFE, 0xFF, 0xFF, 0xFF]);
        out.clear();
        encode_f32_le(&[1.0], &mut out);
        assert_eq!(out, 1.0f32.to_le_bytes());
    }

    #[test]
    fn clipping_is_counted_and_clamped() {
        let mut q = Quantizer::new(16, false);
        let mut out = Vec::new();
        q.run(&[1.5, -1.5, 1.0, -1.0, f32::NAN], &mut out);
        assert_eq!(out, vec![32_767, -32_768, 32_767, -32_768, 0]);
        assert_eq!(q.clipped, 3); // NaN is outside the range too
    }

    #[test]
    fn quantizer_equals_a_saturating_cast_at_every_width() {
        // The rounding the vectorized loop replaced, sample for sample: half away from
        // zero, clamped, NaN to 0; with and without dither.
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
            2.0,
            -2.0,
        ];
        let mut x: Vec<f32> = specials.to_vec();
        x.extend((0..20_000).map(|i| ((i as f32) * 0.37).sin() * 1.05));
        x.extend((-40..40).map(|i| i as f32 * 0.5 / 32_768.0));
        for bits in [16u16, 24, 32] {
            for dither in [false, true] {
                let mut q = Quantizer::new(bits, dither);
                let mut got = Vec::new();
                q.run(&x, &mut got);
                let scale = (1u64 << (bits - 1)) as f64;
                let want: Vec<i32> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let d = if dither {
                            Quantizer::tpdf(i as u32)
                        } else {
                            0.0
                        };
                        let v = f64::from(v) * scale + f64::from(d);
                        (v + 0.5f64.copysign(v)).clamp(-scale, scale - 1.0) as i32
                    })
                    .collect();
                assert!(got == want, "{bits}-bit, dither {dither}");
            }
        }
    }

    #[test]
    fn tpdf_dither_is_within_one_lsb_and_unbiased() {
        let mut q = Quantizer::new(16, true);
        let x = 1000.25 / 32_768.0;
        let mut out = Vec::new();
        q.run(&vec![x; 100_000], &mut out);
        assert!(out.iter().all(|&v| (999..=1002).contains(&v)), "{out:?}");
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / out.len() as f64;
        assert!((mean - 1000.25).abs() < 0.01, "mean {mean}");
        // Silence stays nearly silent: never more than one LSB.
        q.run(&vec![0.0; 1000], &mut out);
        assert!(out.iter().all(|&v| v.abs() <= 1));
    }
}
