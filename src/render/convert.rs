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

/// `f32` to `bits`-wide integers. Deterministic (a fixed-seed generator), so a render
/// is reproducible.
#[derive(Clone, Debug)]
pub struct Quantizer {
    bits: u32,
    dither: bool,
    rng: u64,
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
            rng: 0x9E37_79B9_7F4A_7C15,
            clipped: 0,
        }
    }

    /// Uniform in [0, 1): xorshift64*, top 24 bits.
    fn uniform(&mut self) -> f32 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / 16_777_216.0
    }

    /// Quantizes `input` into `out` (cleared first).
    pub fn run(&mut self, input: &[f32], out: &mut Vec<i32>) {
        out.clear();
        let scale = (1u64 << (self.bits - 1)) as f64;
        let (min, max) = (-(scale as i64), scale as i64 - 1);
        for &x in input {
            if !(-1.0..=1.0).contains(&x) {
                self.clipped += 1;
            }
            // f64: a 32-bit grid is finer than f32 can carry.
            let mut v = f64::from(x) * scale;
            if self.dither {
                // TPDF: two uniforms, ±1 LSB triangular.
                v += f64::from(self.uniform() - self.uniform());
            }
            // Round half away from zero with a truncating cast (one instruction; `round`
            // is a library call on baseline x86-64). NaN casts to 0.
            let q = (v + 0.5f64.copysign(v)) as i64;
            out.push(q.clamp(min, max) as i32);
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
    fn clipping_is_counted_and_clamped() {
        let mut q = Quantizer::new(16, false);
        let mut out = Vec::new();
        q.run(&[1.5, -1.5, 1.0, -1.0, f32::NAN], &mut out);
        assert_eq!(out, vec![32_767, -32_768, 32_767, -32_768, 0]);
        assert_eq!(q.clipped, 3); // NaN is outside the range too
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
