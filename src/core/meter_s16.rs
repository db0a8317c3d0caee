//! The meter's pass over S16 samples (the default capture), for channel counts that
//! divide [`LANES`]. It keeps every sum in 16- and 32-bit lanes, which SSE2 and NEON
//! handle four to eight at a time and without 64-bit multiplies, and widens them to the
//! block's u64/i64 sums once per block. The sums stay exact:
//!
//! - peak: a lane's max and min as i16 (`pmaxsw`/`pminsw`), |v| taken once at the end;
//! - rails: one hit per sample at most, so a u16 count holds 65535 rows;
//! - Σv: |v| ≤ 2^15, so an i32 holds 2^16 rows;
//! - Σv² and Σxy: each product is exact in i32 (|p| ≤ 2^30) but a few overflow a lane,
//!   so a product is split into its high and low 16 bits (`p = (p >> 16) * 2^16 +
//!   (p & 0xffff)`, exact for any sign) and the halves are summed apart: each half is
//!   below 2^16 in size, so an i32 holds 2^15 rows.
//!
//! A block is 4096 frames of at most 16 channels: 4096 rows at most, under every bound.

use super::feed::{ChannelAcc, Scratch};

/// Lanes per row: two SSE2 registers of i16, or one AVX2 register.
pub(super) const LANES: usize = 16;

/// Rows a block may hold for its 32-bit lanes (the tightest bound above).
const MAX_ROWS: usize = 1 << 15;

/// One block's lanes (lane `l` is channel `l % channels`; cross lane `k` is the pair
/// `k % (channels / 2)`).
struct Lanes<const H: usize> {
    max: [i16; LANES],
    min: [i16; LANES],
    rails: [u16; LANES],
    sum: [i32; LANES],
    sq: Split<LANES>,
    cross: Split<H>,
}

/// Sums of 32-bit products kept as their high and low 16 bits.
struct Split<const N: usize> {
    hi: [i32; N],
    lo: [i32; N],
}

impl<const N: usize> Split<N> {
    #[inline(always)]
    fn add(&mut self, i: usize, p: i32) {
        self.hi[i] += p >> 16;
        self.lo[i] += p & 0xffff;
    }

    fn total(&self, i: usize) -> i64 {
        (i64::from(self.hi[i]) << 16) + i64::from(self.lo[i])
    }
}

/// Decodes whole S16 samples into `out`, by `extend` (no zeroing pass first).
pub(super) fn decode(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]])),
    );
}

/// The bytes as samples without a copy, where they already are native S16: a
/// little-endian machine and an even address (the ring's frames always are). `None`
/// otherwise: [`decode`] them.
pub(super) fn as_samples(bytes: &[u8]) -> Option<&[i16]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every bit pattern is a valid i16, and `align_to` only hands out the part
    // of the slice that is aligned for it.
    let (head, samples, tail) = unsafe { bytes.align_to::<i16>() };
    (head.is_empty() && tail.is_empty()).then_some(samples)
}

/// Whether [`block_sums`] takes `channels`.
pub(super) fn fits(channels: usize) -> bool {
    channels > 0 && LANES % channels == 0
}

/// Pure: one block's exact sums per channel (`scratch.channels`) and Σxy per pair
/// (`scratch.cross`), as `int_block_sums` gives them. `channels` must [`fit`](fits);
/// `samples` is whole frames of at most 4096 rows.
pub(super) fn block_sums(samples: &[i16], channels: usize, scratch: &mut Scratch) {
    debug_assert!(fits(channels) && samples.len() / LANES < MAX_ROWS);
    if channels % 2 == 0 {
        fold(&rows_dispatch::<{ LANES / 2 }>(samples), channels, scratch);
    } else {
        // Mono: no pairs, so no cross lanes to sum.
        fold(&rows_dispatch::<0>(samples), channels, scratch);
    }
}

/// [`rows`] built for AVX2 when the CPU has it (checked once), else for the baseline.
fn rows_dispatch<const H: usize>(samples: &[i16]) -> Lanes<H> {
    #[cfg(target_arch = "x86_64")]
    if super::feed::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked above), all `rows_avx2` requires.
        return unsafe { rows_avx2::<H>(samples) };
    }
    rows::<H>(samples)
}

/// [`rows`] with 256-bit registers: twice the lanes per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2<const H: usize>(samples: &[i16]) -> Lanes<H> {
    rows::<H>(samples)
}

/// The lanes over whole rows; a last short row is padded with zeros, which add
/// nothing to any sum (0 is no rail, and the max and min start at 0).
#[inline(always)]
fn rows<const H: usize>(samples: &[i16]) -> Lanes<H> {
    let mut l = Lanes {
        max: [0; LANES],
        min: [0; LANES],
        rails: [0; LANES],
        sum: [0; LANES],
        sq: Split {
            hi: [0; LANES],
            lo: [0; LANES],
        },
        cross: Split {
            hi: [0; H],
            lo: [0; H],
        },
    };
    let rows = samples.chunks_exact(LANES);
    let mut last = [0i16; LANES];
    last[..rows.remainder().len()].copy_from_slice(rows.remainder());
    for row in rows {
        row_sums(
            &mut l,
            row.try_into().expect("chunks_exact gives rows of LANES"),
        );
    }
    row_sums(&mut l, &last);
    l
}

#[inline(always)]
fn row_sums<const H: usize>(l: &mut Lanes<H>, row: &[i16; LANES]) {
    for (i, &v) in row.iter().enumerate() {
        l.max[i] = l.max[i].max(v);
        l.min[i] = l.min[i].min(v);
        l.rails[i] += u16::from(v == i16::MAX) + u16::from(v == i16::MIN);
        l.sum[i] += i32::from(v);
        l.sq.add(i, i32::from(v) * i32::from(v));
    }
    for k in 0..H {
        l.cross
            .add(k, i32::from(row[2 * k]) * i32::from(row[2 * k + 1]));
    }
}

/// The lanes added up per channel and per pair.
fn fold<const H: usize>(l: &Lanes<H>, channels: usize, scratch: &mut Scratch) {
    let acc = &mut scratch.channels;
    acc.clear();
    acc.resize(channels, ChannelAcc::default());
    for lane in 0..LANES {
        let a = &mut acc[lane % channels];
        let peak = i32::from(l.max[lane]).max(-i32::from(l.min[lane])) as u32;
        a.peak = a.peak.max(peak);
        a.sum_sq += l.sq.total(lane) as u64;
        a.sum += i64::from(l.sum[lane]);
        a.clipped += u64::from(l.rails[lane]);
    }
    let cross = &mut scratch.cross;
    cross.clear();
    cross.resize(channels / 2, 0);
    for k in 0..H {
        cross[k % (channels / 2)] += l.cross.total(k);
    }
}
