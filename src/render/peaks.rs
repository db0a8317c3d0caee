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

/// Min and max of each of `N` interleaved channels over `run`, into `current`.
fn fold<const N: usize>(current: &mut [(f32, f32)], run: &[f32]) {
    let mut lo = [f32::MAX; N];
    let mut hi = [f32::MIN; N];
    for frame in run.chunks_exact(N) {
        for c in 0..N {
            lo[c] = lo[c].min(frame[c]);
            hi[c] = hi[c].max(frame[c]);
        }
    }
    for (c, cur) in current.iter_mut().enumerate().take(N) {
        *cur = (cur.0.min(lo[c]), cur.1.max(hi[c]));
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
