//! Waveform peaks in the BBC audiowaveform JSON format (version 2, 8-bit), as peaks.js
//! reads it: per pixel, per channel, a min and a max. Memory is bounded: the pixel width
//! grows with the length so a recording never has more than [`MAX_PIXELS`] pixels.

use serde::Serialize;

/// audiowaveform's default zoom.
pub const MIN_SAMPLES_PER_PIXEL: u64 = 256;
pub const MAX_PIXELS: u64 = 200_000;

pub struct Peaks {
    channels: usize,
    rate: u32,
    samples_per_pixel: u64,
    /// Frames into the current pixel.
    in_pixel: u64,
    current: Vec<(f32, f32)>,
    data: Vec<i8>,
}

/// Floats per lane row of [`fold`]: four SSE2 registers, a whole number of frames of
/// one or two channels.
const LANES: usize = 16;

/// The smaller of `lo` and `x`, as `lo.min(x)` when `lo` is not NaN (it starts at
/// `f32::MAX` and only ever takes an `x` that compares below it): a NaN `x` is passed
/// over, as `f32::min` does. Unlike `f32::min` it is one compare and select, which maps
/// to `minps`, so the lanes below vectorize. (`convert::decode` passes a float
/// capture's NaN through, so NaN does reach here.)
#[inline(always)]
fn min_of(lo: f32, x: f32) -> f32 {
    if x < lo { x } else { lo }
}

/// The larger, as [`min_of`].
#[inline(always)]
fn max_of(hi: f32, x: f32) -> f32 {
    if x > hi { x } else { hi }
}

/// Min and max of each of `N` interleaved channels over `run`, into `current`: in
/// [`LANES`] lanes (lane `l` is channel `l % N`), then the lanes folded per channel.
/// A min or max does not depend on the order it is taken in (a zero's sign may, but
/// -0 and 0 quantize alike), so the pixels are the ones a frame-by-frame pass gives.
fn fold<const N: usize>(current: &mut [(f32, f32)], run: &[f32]) {
    let mut lo = [f32::MAX; LANES];
    let mut hi = [f32::MIN; LANES];
    let rows = run.chunks_exact(LANES);
    let rest = rows.remainder();
    for row in rows {
        for (i, &x) in row.iter().enumerate() {
            lo[i] = min_of(lo[i], x);
            hi[i] = max_of(hi[i], x);
        }
    }
    // The rest is whole frames, so its lane `i` is channel `i % N` too.
    for (i, &x) in rest.iter().enumerate() {
        lo[i] = min_of(lo[i], x);
        hi[i] = max_of(hi[i], x);
    }
    for (i, (&l, &h)) in lo.iter().zip(&hi).enumerate() {
        let cur = &mut current[i % N];
        *cur = (min_of(cur.0, l), max_of(cur.1, h));
    }
}

fn fold_any(current: &mut [(f32, f32)], run: &[f32]) {
    for frame in run.chunks_exact(current.len()) {
        for (c, &x) in current.iter_mut().zip(frame) {
            *c = (c.0.min(x), c.1.max(x));
        }
    }
}

#[derive(Serialize)]
struct PeaksJson<'a> {
    version: u32,
    channels: usize,
    sample_rate: u32,
    samples_per_pixel: u64,
    bits: u32,
    length: usize,
    data: &'a [i8],
}

impl Peaks {
    /// For an output of `frames` frames (the plan's length) at `rate`.
    pub fn new(channels: u16, rate: u32, frames: u64) -> Peaks {
        let samples_per_pixel = Peaks::pixel_width(frames);
        let channels = usize::from(channels.max(1));
        let pixels = frames.div_ceil(samples_per_pixel).min(MAX_PIXELS + 1) as usize;
        Peaks {
            channels,
            rate,
            samples_per_pixel,
            in_pixel: 0,
            current: vec![(f32::MAX, f32::MIN); channels],
            data: Vec::with_capacity(pixels * channels * 2),
        }
    }

    pub fn push(&mut self, mut interleaved: &[f32]) {
        while !interleaved.is_empty() {
            // The rest of this pixel, at most: one tight min/max run per channel count.
            let room = (self.samples_per_pixel - self.in_pixel) as usize * self.channels;
            let (run, rest) = interleaved.split_at(room.min(interleaved.len()));
            match self.channels {
                1 => fold::<1>(&mut self.current, run),
                2 => fold::<2>(&mut self.current, run),
                4 => fold::<4>(&mut self.current, run),
                8 => fold::<8>(&mut self.current, run),
                _ => fold_any(&mut self.current, run),
            }
            self.in_pixel += (run.len() / self.channels) as u64;
            if self.in_pixel == self.samples_per_pixel {
                self.close_pixel();
            }
            interleaved = rest;
        }
    }

    fn close_pixel(&mut self) {
        let q = |x: f32| (x.clamp(-1.0, 1.0) * 127.0).round() as i8;
        for c in &mut self.current {
            self.data.push(q(c.0));
            self.data.push(q(c.1));
            *c = (f32::MAX, f32::MIN);
        }
        self.in_pixel = 0;
    }

    /// Frames a pixel covers for an output of `frames` frames.
    pub fn pixel_width(frames: u64) -> u64 {
        frames.div_ceil(MAX_PIXELS).max(MIN_SAMPLES_PER_PIXEL)
    }

    /// These peaks followed by `later`'s, which began where these end: at a pixel
    /// boundary, so the pixels are the ones one pass over both parts makes.
    pub fn append(mut self, later: Peaks) -> Peaks {
        debug_assert_eq!(self.in_pixel, 0, "peaks split inside a pixel");
        self.data.extend_from_slice(&later.data);
        self.in_pixel = later.in_pixel;
        self.current = later.current;
        self
    }

    /// The JSON document, closing a partial last pixel.
    pub fn finish(mut self) -> Vec<u8> {
        if self.in_pixel > 0 {
            self.close_pixel();
        }
        let doc = PeaksJson {
            version: 2,
            channels: self.channels,
            sample_rate: self.rate,
            samples_per_pixel: self.samples_per_pixel,
            bits: 8,
            length: self.data.len() / (2 * self.channels),
            data: &self.data,
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fold as it was before the lanes: frame by frame with `f32::min`/`max`, then
    /// quantized per pixel of `width` frames as `close_pixel` does.
    fn scalar_pixels(channels: usize, width: usize, samples: &[f32]) -> Vec<i8> {
        let q = |x: f32| (x.clamp(-1.0, 1.0) * 127.0).round() as i8;
        let mut data = Vec::new();
        for pixel in samples.chunks(width * channels) {
            let mut cur = vec![(f32::MAX, f32::MIN); channels];
            for frame in pixel.chunks_exact(channels) {
                for (c, &x) in cur.iter_mut().zip(frame) {
                    *c = (c.0.min(x), c.1.max(x));
                }
            }
            data.extend(cur.iter().flat_map(|c| [q(c.0), q(c.1)]));
        }
        data
    }

    /// A sample: mostly in range, some beyond it, and the floats a min/max may trip on.
    fn sample() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -1.5f32..1.5,
            1 => prop_oneof![
                Just(f32::NAN),
                Just(f32::INFINITY),
                Just(f32::NEG_INFINITY),
                Just(0.0),
                Just(-0.0),
                Just(f32::MAX),
                Just(f32::MIN),
            ],
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn the_lane_fold_gives_the_scalar_folds_bytes(
            channels in 1usize..=9,
            frames in 0usize..1500,
            pool in proptest::collection::vec(sample(), 1500 * 9),
            cuts in proptest::collection::vec(0usize..1500, 0..4),
        ) {
            let samples = &pool[..frames * channels];
            let mut p = Peaks::new(channels as u16, 48_000, frames as u64);
            // Pushed in pieces of whole frames, cut anywhere.
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(frames) * channels).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([samples.len()]) {
                p.push(&samples[at..cut]);
                at = cut;
            }
            let want = Peaks {
                data: scalar_pixels(channels, p.samples_per_pixel as usize, samples),
                in_pixel: 0,
                ..Peaks::new(channels as u16, 48_000, frames as u64)
            };
            prop_assert_eq!(p.finish(), want.finish());
        }
    }

    #[test]
    fn pixels_hold_min_and_max_per_channel() {
        let mut p = Peaks::new(2, 48_000, 600);
        let mut frames = vec![0.0f32; 600 * 2];
        frames[10] = 1.0; // frame 5, left
        frames[2 * 300 + 1] = -0.5; // frame 300, right
        p.push(&frames[..334]);
        p.push(&frames[334..]);
        let v: serde_json::Value = serde_json::from_slice(&p.finish()).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["samples_per_pixel"], 256);
        assert_eq!(v["length"], 3);
        let data: Vec<i64> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(data, vec![0, 127, 0, 0, 0, 0, -64, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn peaks_split_at_a_pixel_join_as_one_pass() {
        let frames: Vec<f32> = (0..5000)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let mut one = Peaks::new(1, 48_000, 5000);
        one.push(&frames);
        let (mut a, mut b) = (Peaks::new(1, 48_000, 5000), Peaks::new(1, 48_000, 5000));
        a.push(&frames[..256 * 7]);
        b.push(&frames[256 * 7..]);
        assert_eq!(a.append(b).finish(), one.finish());
    }

    #[test]
    fn long_recordings_stay_under_the_pixel_cap() {
        let frames = 48_000u64 * 3600 * 10;
        let p = Peaks::new(1, 48_000, frames);
        assert!(frames.div_ceil(p.samples_per_pixel) <= MAX_PIXELS);
    }
}
