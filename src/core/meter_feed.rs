//! The level meter's pass over native samples. The writer feeds every captured sample
//! through it, so it is built from simple loops the compiler turns into SIMD (SSE2 on
//! baseline x86-64, NEON on aarch64): a block of frames is decoded into a scratch of
//! samples first, then summed in lanes (lane `l` holds channel `l % channels`, a row of
//! lanes is a whole number of frames), with no call and no branch per sample.
//!
//! Integer formats accumulate in integers (peak as max |v|, Σv², Σv, rail hits, Σxy of
//! each pair), exact, and are folded into the window's f64 sums once per block; the
//! lanes only reorder exact integer additions, so the result is what a sample-by-sample
//! pass gives. 32-bit formats accumulate in f64 lanes (their squares do not fit an
//! integer block): the same sums up to the rounding of the additions' order.
//! The listen tap has its own pass (`core::listen`): a per-frame tap here cost more than
//! the meter.

use super::LevelMeter;
use super::s16;
use crate::core::format::SampleFormat;

/// Frames per block: 24-bit squares are below 2^46, so 4096 of them fit a lane's u64.
const BLOCK_FRAMES: usize = 4096;
/// Lanes per row at least: four SSE2 registers of i32, or of NEON.
const MIN_LANES: usize = 16;

/// One channel's integer sums over a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ChannelAcc {
    pub(super) peak: u32,
    pub(super) sum_sq: u64,
    pub(super) sum: i64,
    pub(super) clipped: u64,
}

/// Scratch kept between feeds, so a feed allocates nothing once warm.
#[derive(Clone, Debug, Default)]
pub(super) struct Scratch {
    shorts: Vec<i16>,
    ints: Vec<i32>,
    floats: Vec<f64>,
    lanes: IntLanes,
    float_lanes: FloatLanes,
    pub(super) channels: Vec<ChannelAcc>,
    pub(super) cross: Vec<i64>,
}

/// Per-lane integer sums (lane `l` is channel `l % channels`).
#[derive(Clone, Debug, Default)]
struct IntLanes {
    peak: Vec<u32>,
    sum_sq: Vec<u64>,
    sum: Vec<i64>,
    rails: Vec<u32>,
    /// Lane `k` is the pair `k % (channels / 2)` (even channel counts only).
    cross: Vec<i64>,
}

/// Per-lane f64 sums of the 32-bit formats.
#[derive(Clone, Debug, Default)]
struct FloatLanes {
    peak: Vec<f64>,
    sum_sq: Vec<f64>,
    sum: Vec<f64>,
    rails: Vec<u64>,
    cross: Vec<f64>,
}

/// Lanes per row for `channels`: a whole number of frames, at least [`MIN_LANES`].
fn lane_count(channels: usize) -> usize {
    channels * MIN_LANES.div_ceil(channels)
}

/// Sets `v` to `n` zeros, keeping its allocation.
fn zeroed<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    v.clear();
    v.resize(n, T::default());
}

/// The integer formats: (bytes per sample, bits of magnitude).
fn int_layout(format: SampleFormat) -> Option<(usize, u32)> {
    match format {
        SampleFormat::S16Le => Some((2, 15)),
        SampleFormat::S24Le3 => Some((3, 23)),
        SampleFormat::S24Le => Some((4, 23)),
        SampleFormat::S32Le | SampleFormat::FloatLe => None,
    }
}

/// Whether the CPU has AVX2 (std caches the detection: one atomic load a call).
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx2() -> bool {
    #[cfg(test)]
    if BASELINE_ONLY.get() {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(test)]
thread_local! {
    /// Set by a test to run the baseline build (SSE2 on x86-64) on a CPU with AVX2.
    pub(super) static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Decodes whole samples of an integer format into `out` (one loop per format),
/// written by `extend`: zeroing them first would cost a pass of its own. The listen
/// tap decodes with it too (S32 included; the meter takes S32 as floats).
pub(crate) fn decode_ints(format: SampleFormat, bytes: &[u8], out: &mut Vec<i32>) {
    out.clear();
    let width = format.bytes_per_sample();
    let words = bytes.chunks_exact(width);
    match format {
        SampleFormat::S16Le => {
            out.extend(words.map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))))
        }
        SampleFormat::S24Le3 => {
            out.extend(words.map(|s| i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8))
        }
        // Low-justified in 32 bits: sign-extend the low 24.
        SampleFormat::S24Le => {
            out.extend(words.map(|s| (i32::from_le_bytes([s[0], s[1], s[2], s[3]]) << 8) >> 8))
        }
        SampleFormat::S32Le => {
            out.extend(words.map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]])))
        }
        SampleFormat::FloatLe => {}
    }
}

/// Decodes whole samples of a 32-bit format into `out`, full scale = 1 (a float that
/// is not finite reads as 0).
pub(crate) fn decode_floats(format: SampleFormat, bytes: &[u8], out: &mut Vec<f64>) {
    out.clear();
    let words = bytes.chunks_exact(4).map(|s| [s[0], s[1], s[2], s[3]]);
    if format == SampleFormat::FloatLe {
        out.extend(words.map(|w| {
            let v = f64::from(f32::from_le_bytes(w));
            if v.is_finite() { v } else { 0.0 }
        }));
    } else {
        let scale = 1.0 / 2_147_483_648.0;
        out.extend(words.map(|w| f64::from(i32::from_le_bytes(w)) * scale));
    }
}

/// Pure: one block's integer sums per channel (`scratch.channels`) and Σxy per pair
/// (`scratch.cross`), from decoded samples (whole frames) of `bits + 1` bits. Lanes
/// first, then each channel's lanes added up.
pub(super) fn int_block_sums(samples: &[i32], channels: usize, bits: u32, scratch: &mut Scratch) {
    let (hi, lo) = ((1i32 << bits) - 1, -(1i32 << bits));
    let n = lane_count(channels);
    let l = &mut scratch.lanes;
    zeroed(&mut l.peak, n);
    zeroed(&mut l.sum_sq, n);
    zeroed(&mut l.sum, n);
    zeroed(&mut l.rails, n);
    // Pairs tile a row only for an even count (an odd one's last channel has no partner).
    zeroed(&mut l.cross, if channels % 2 == 0 { n / 2 } else { 0 });
    if n == MIN_LANES {
        fixed_rows_dispatch(samples, l, hi, lo);
    } else {
        for row in samples.chunks(n) {
            int_row(row, l.refs(), hi, lo);
        }
    }
    let acc = &mut scratch.channels;
    zeroed(acc, channels);
    for lane in 0..n {
        let a = &mut acc[lane % channels];
        a.peak = a.peak.max(l.peak[lane]);
        a.sum_sq += l.sum_sq[lane];
        a.sum += l.sum[lane];
        a.clipped += u64::from(l.rails[lane]);
    }
    let cross = &mut scratch.cross;
    zeroed(cross, channels / 2);
    if channels % 2 == 0 {
        for (k, &c) in l.cross.iter().enumerate() {
            cross[k % (channels / 2)] += c;
        }
    } else {
        for frame in samples.chunks_exact(channels) {
            for (c, pair) in cross.iter_mut().zip(frame.chunks_exact(2)) {
                *c += i64::from(pair[0]) * i64::from(pair[1]);
            }
        }
    }
}

/// Borrowed per-lane integer sums: the scratch's, or a pass's local arrays.
struct LaneRefs<'a> {
    peak: &'a mut [u32],
    sum_sq: &'a mut [u64],
    sum: &'a mut [i64],
    rails: &'a mut [u32],
    cross: &'a mut [i64],
}

/// One row of lanes (the last row of a block may be shorter: still whole frames).
#[inline(always)]
fn int_row(row: &[i32], l: LaneRefs<'_>, hi: i32, lo: i32) {
    let k = row.len();
    let (peak, sum_sq) = (&mut l.peak[..k], &mut l.sum_sq[..k]);
    let (sum, rails) = (&mut l.sum[..k], &mut l.rails[..k]);
    for i in 0..k {
        let v = row[i];
        let a = v.unsigned_abs();
        peak[i] = peak[i].max(a);
        sum_sq[i] += u64::from(a) * u64::from(a);
        sum[i] += i64::from(v);
        rails[i] += u32::from(v == hi) + u32::from(v == lo);
    }
    for (c, pair) in l.cross.iter_mut().zip(row.chunks_exact(2)) {
        *c += i64::from(pair[0]) * i64::from(pair[1]);
    }
}

impl IntLanes {
    fn refs(&mut self) -> LaneRefs<'_> {
        LaneRefs {
            peak: &mut self.peak,
            sum_sq: &mut self.sum_sq,
            sum: &mut self.sum,
            rails: &mut self.rails,
            cross: &mut self.cross,
        }
    }
}

/// [`int_row`] over a whole block for `L` lanes (a count that divides `L`): the sums
/// live in local arrays of a constant length, which the compiler keeps in registers
/// across rows (lanes in memory are loaded and stored again at every row).
#[inline(always)]
fn fixed_rows<const L: usize, const H: usize>(samples: &[i32], l: &mut IntLanes, hi: i32, lo: i32) {
    let (mut peak, mut sum_sq, mut sum) = ([0u32; L], [0u64; L], [0i64; L]);
    let (mut rails, mut cross) = ([0u32; L], [0i64; H]);
    // Mono has no pairs: its cross lanes stay out of the sums.
    let pairs = if l.cross.len() == H { H } else { 0 };
    let rows = samples.chunks_exact(L);
    let rest = rows.remainder();
    for row in rows {
        let row: &[i32; L] = row.try_into().expect("chunks_exact gives rows of L");
        let refs = LaneRefs {
            peak: &mut peak,
            sum_sq: &mut sum_sq,
            sum: &mut sum,
            rails: &mut rails,
            cross: &mut cross[..pairs],
        };
        int_row(row, refs, hi, lo);
    }
    l.peak.copy_from_slice(&peak);
    l.sum_sq.copy_from_slice(&sum_sq);
    l.sum.copy_from_slice(&sum);
    l.rails.copy_from_slice(&rails);
    l.cross.copy_from_slice(&cross[..pairs]);
    int_row(rest, l.refs(), hi, lo);
}

/// [`fixed_rows`] for [`MIN_LANES`], built for AVX2 when the CPU has it: AVX2 has the
/// signed 32x32→64 multiply, 32-bit abs and max that SSE2 lacks.
fn fixed_rows_dispatch(samples: &[i32], l: &mut IntLanes, hi: i32, lo: i32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked above), all `fixed_rows_avx2` requires.
        return unsafe { fixed_rows_avx2(samples, l, hi, lo) };
    }
    fixed_rows::<MIN_LANES, { MIN_LANES / 2 }>(samples, l, hi, lo);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fixed_rows_avx2(samples: &[i32], l: &mut IntLanes, hi: i32, lo: i32) {
    fixed_rows::<MIN_LANES, { MIN_LANES / 2 }>(samples, l, hi, lo);
}

/// One row of f64 lanes: `hi` is the format's positive rail (full scale = 1).
#[inline(always)]
fn float_row(row: &[f64], l: &mut FloatLanes, hi: f64) {
    let k = row.len();
    let (peak, sum_sq) = (&mut l.peak[..k], &mut l.sum_sq[..k]);
    let (sum, rails) = (&mut l.sum[..k], &mut l.rails[..k]);
    for i in 0..k {
        let x = row[i];
        peak[i] = peak[i].max(x.abs());
        sum_sq[i] += x * x;
        sum[i] += x;
        rails[i] += u64::from(x >= hi) + u64::from(x <= -1.0);
    }
    for (c, pair) in l.cross.iter_mut().zip(row.chunks_exact(2)) {
        *c += pair[0] * pair[1];
    }
}

impl LevelMeter {
    /// [`LevelMeter::feed_bytes`]'s body: dispatches on the format once per feed.
    pub(super) fn feed_native(&mut self, format: SampleFormat, bytes: &[u8]) {
        let frame_bytes = format.bytes_per_sample() * self.channels;
        let whole = bytes.len() / frame_bytes * frame_bytes;
        for block in bytes[..whole].chunks(BLOCK_FRAMES * frame_bytes) {
            match int_layout(format) {
                Some((_, bits)) => self.int_block(format, block, bits),
                None => self.float_block(format, block),
            }
            self.frames += (block.len() / frame_bytes) as u64;
        }
    }

    /// One block of an integer format: exact sums, then one fold into the window's f64
    /// sums (the scale is a power of two, so each fold is exact but for its rounding).
    fn int_block(&mut self, format: SampleFormat, block: &[u8], bits: u32) {
        let inv = 1.0 / f64::from(1u32 << bits);
        let mut scratch = std::mem::take(&mut self.scratch);
        if format == SampleFormat::S16Le && s16::fits(self.channels) {
            let mut samples = std::mem::take(&mut scratch.shorts);
            match s16::as_samples(block) {
                Some(native) => s16::block_sums(native, self.channels, &mut scratch),
                None => {
                    s16::decode(block, &mut samples);
                    s16::block_sums(&samples, self.channels, &mut scratch);
                }
            }
            scratch.shorts = samples;
            self.fold_ints(&scratch, inv);
            self.scratch = scratch;
            return;
        }
        let mut samples = std::mem::take(&mut scratch.ints);
        decode_ints(format, block, &mut samples);
        int_block_sums(&samples, self.channels, bits, &mut scratch);
        self.fold_ints(&scratch, inv);
        scratch.ints = samples;
        self.scratch = scratch;
    }

    /// A block's integer sums into the window's f64 sums, `inv` the format's full scale.
    fn fold_ints(&mut self, scratch: &Scratch, inv: f64) {
        for (ch, a) in scratch.channels.iter().enumerate() {
            self.peak[ch] = self.peak[ch].max(f64::from(a.peak) * inv);
            self.sum_sq[ch] += a.sum_sq as f64 * (inv * inv);
            self.sum[ch] += a.sum as f64 * inv;
            self.clipped[ch] += a.clipped;
        }
        for (total, &c) in self.cross.iter_mut().zip(&scratch.cross) {
            *total += c as f64 * (inv * inv);
        }
    }

    /// One block of a 32-bit format, in f64 lanes.
    fn float_block(&mut self, format: SampleFormat, block: &[u8]) {
        // S32's positive rail is one step below 1; a float's rails are ±1 and beyond.
        let hi = match format {
            SampleFormat::S32Le => f64::from(i32::MAX) / 2_147_483_648.0,
            _ => 1.0,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        decode_floats(format, block, &mut scratch.floats);
        let n = lane_count(self.channels);
        let l = &mut scratch.float_lanes;
        for v in [&mut l.peak, &mut l.sum_sq, &mut l.sum] {
            zeroed(v, n);
        }
        zeroed(&mut l.rails, n);
        zeroed(&mut l.cross, if self.channels % 2 == 0 { n / 2 } else { 0 });
        for row in scratch.floats.chunks(n) {
            float_row(row, l, hi);
        }
        let channels = self.channels;
        for lane in 0..n {
            let ch = lane % channels;
            self.peak[ch] = self.peak[ch].max(l.peak[lane]);
            self.sum_sq[ch] += l.sum_sq[lane];
            self.sum[ch] += l.sum[lane];
            self.clipped[ch] += l.rails[lane];
        }
        if channels % 2 == 0 {
            for (k, &c) in l.cross.iter().enumerate() {
                self.cross[k % (channels / 2)] += c;
            }
        } else {
            for frame in scratch.floats.chunks_exact(channels) {
                for (c, pair) in self.cross.iter_mut().zip(frame.chunks_exact(2)) {
                    *c += pair[0] * pair[1];
                }
            }
        }
        self.scratch = scratch;
    }
}
