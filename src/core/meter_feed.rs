//! The level meter's pass over native samples. The writer feeds every captured sample
//! through it, so it is one tight loop per block of frames: integer formats accumulate in
//! integers (peak as max |v|, Σv², Σv, rail hits, Σxy of each pair; exact, no float and no
//! branch per sample) and are folded into the window's f64 sums once per block. Mono and
//! stereo, the common layouts, have their own pass with the channel count a constant, so
//! the per-frame loop unrolls and vectorises. 32-bit formats accumulate in f64 (their
//! squares do not fit an integer block).

use super::LevelMeter;
use crate::core::format::SampleFormat;

/// Frames per integer block: 24-bit squares are below 2^46, so 4096 of them fit an i64.
const BLOCK_FRAMES: usize = 4096;

/// One channel's integer sums over a block.
#[derive(Clone, Copy, Debug, Default)]
struct ChannelAcc {
    peak: u32,
    sum_sq: i64,
    sum: i64,
    clipped: u64,
}

/// Scratch kept between feeds, so a feed allocates nothing.
#[derive(Clone, Debug, Default)]
pub(super) struct Scratch {
    channels: Vec<ChannelAcc>,
    cross: Vec<i64>,
}

impl LevelMeter {
    /// [`LevelMeter::feed_bytes_tapped`]'s body: dispatches on the format once per feed.
    pub(super) fn feed_native(
        &mut self,
        format: SampleFormat,
        bytes: &[u8],
        tap: &mut impl FnMut(f64),
    ) {
        match format {
            SampleFormat::S16Le => self.feed_int::<2>(bytes, 15, tap, |s| {
                i32::from(i16::from_le_bytes([s[0], s[1]]))
            }),
            SampleFormat::S24Le3 => self.feed_int::<3>(bytes, 23, tap, |s| {
                i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8
            }),
            SampleFormat::S24Le => self.feed_int::<4>(bytes, 23, tap, |s| {
                (i32::from_le_bytes([s[0], s[1], s[2], s[3]]) << 8) >> 8
            }),
            SampleFormat::S32Le | SampleFormat::FloatLe => {
                let width = format.bytes_per_sample();
                for frame in bytes.chunks_exact(width * self.channels) {
                    let mut sum = 0.0;
                    for (ch, sample) in frame.chunks_exact(width).enumerate() {
                        let (x, at_rail) = super::normalized(format, sample);
                        self.add(ch, x, at_rail);
                        sum += x;
                    }
                    tap(sum);
                    self.add_cross(frame, width, format);
                    self.frames += 1;
                }
            }
        }
    }

    /// Σxy of each pair of one frame, 32-bit formats (the f64 path).
    fn add_cross(&mut self, frame: &[u8], width: usize, format: SampleFormat) {
        for (pair, cross) in frame.chunks_exact(2 * width).zip(self.cross.iter_mut()) {
            let (a, _) = super::normalized(format, &pair[..width]);
            let (b, _) = super::normalized(format, &pair[width..]);
            *cross += a * b;
        }
    }

    /// Integer samples of `bits + 1` bits, `W` bytes each, decoded by `decode`.
    fn feed_int<const W: usize>(
        &mut self,
        bytes: &[u8],
        bits: u32,
        tap: &mut impl FnMut(f64),
        decode: impl Fn(&[u8]) -> i32 + Copy,
    ) {
        let frame_bytes = W * self.channels;
        let whole = bytes.len() / frame_bytes * frame_bytes;
        for block in bytes[..whole].chunks(BLOCK_FRAMES * frame_bytes) {
            match self.channels {
                1 => self.int_block_of::<W, 1>(block, bits, tap, decode),
                2 => self.int_block_of::<W, 2>(block, bits, tap, decode),
                _ => self.int_block::<W>(block, bits, tap, decode),
            }
        }
    }

    /// [`Self::int_block`] for exactly `C` channels: the sums live in registers and the
    /// frame loop has no inner loop left to branch on.
    fn int_block_of<const W: usize, const C: usize>(
        &mut self,
        block: &[u8],
        bits: u32,
        tap: &mut impl FnMut(f64),
        decode: impl Fn(&[u8]) -> i32,
    ) {
        let (hi, lo) = ((1i32 << bits) - 1, -(1i32 << bits));
        let inv = 1.0 / f64::from(1u32 << bits);
        let (mut peak, mut sum_sq, mut sum, mut clipped) =
            ([0u32; C], [0i64; C], [0i64; C], [0u64; C]);
        let mut cross = 0i64;
        let mut frames = 0u64;
        for frame in block.chunks_exact(W * C) {
            let v: [i32; C] = std::array::from_fn(|ch| decode(&frame[ch * W..ch * W + W]));
            for ch in 0..C {
                peak[ch] = peak[ch].max(v[ch].unsigned_abs());
                sum_sq[ch] += i64::from(v[ch]) * i64::from(v[ch]);
                sum[ch] += i64::from(v[ch]);
                clipped[ch] += u64::from(v[ch] == hi) + u64::from(v[ch] == lo);
            }
            if C == 2 {
                cross += i64::from(v[0]) * i64::from(v[C - 1]);
            }
            tap(v.iter().map(|&x| i64::from(x)).sum::<i64>() as f64 * inv);
            frames += 1;
        }
        for ch in 0..C {
            let a = ChannelAcc {
                peak: peak[ch],
                sum_sq: sum_sq[ch],
                sum: sum[ch],
                clipped: clipped[ch],
            };
            self.fold_channel(ch, &a, inv);
        }
        if C == 2 {
            self.cross[0] += cross as f64 * inv * inv;
        }
        self.frames += frames;
    }

    /// Folds one channel's integer sums into the window's f64 sums (the scale is a power
    /// of two, so the fold is exact but for the sum's own rounding).
    fn fold_channel(&mut self, ch: usize, a: &ChannelAcc, inv: f64) {
        self.peak[ch] = self.peak[ch].max(f64::from(a.peak) * inv);
        self.sum_sq[ch] += a.sum_sq as f64 * (inv * inv);
        self.sum[ch] += a.sum as f64 * inv;
        self.clipped[ch] += a.clipped;
    }

    /// One block: integer sums, then one fold into the window's f64 sums (the scale is a
    /// power of two, so each fold is exact but for the sum's own rounding).
    fn int_block<const W: usize>(
        &mut self,
        block: &[u8],
        bits: u32,
        tap: &mut impl FnMut(f64),
        decode: impl Fn(&[u8]) -> i32,
    ) {
        let (hi, lo) = ((1i32 << bits) - 1, -(1i32 << bits));
        let inv = 1.0 / f64::from(1u32 << bits);
        let mut acc = std::mem::take(&mut self.scratch);
        acc.channels.clear();
        acc.channels.resize(self.channels, ChannelAcc::default());
        acc.cross.clear();
        acc.cross.resize(self.cross.len(), 0);
        let mut frames = 0u64;
        for frame in block.chunks_exact(W * self.channels) {
            let mut frame_sum = 0i64;
            for (s, a) in frame.chunks_exact(W).zip(acc.channels.iter_mut()) {
                let v = decode(s);
                a.peak = a.peak.max(v.unsigned_abs());
                a.sum_sq += i64::from(v) * i64::from(v);
                a.sum += i64::from(v);
                a.clipped += u64::from(v == hi || v == lo);
                frame_sum += i64::from(v);
            }
            tap(frame_sum as f64 * inv);
            for (pair, cross) in frame.chunks_exact(2 * W).zip(acc.cross.iter_mut()) {
                *cross += i64::from(decode(&pair[..W])) * i64::from(decode(&pair[W..]));
            }
            frames += 1;
        }
        for (ch, a) in acc.channels.iter().enumerate() {
            self.fold_channel(ch, a, inv);
        }
        for (total, &c) in self.cross.iter_mut().zip(&acc.cross) {
            *total += c as f64 * (inv * inv);
        }
        self.frames += frames;
        self.scratch = acc;
    }
}
