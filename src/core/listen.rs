//! Live listen from the capture's own frames: every channel averaged to mono, decimated
//! by an integer factor to at most [`LISTEN_MAX_RATE`] (a box average first, so what is
//! dropped does not fold back as aliasing tones), as 16-bit samples. Ten seconds of it
//! fit the controller's 512 KiB cap. Pure: frames in, samples out.

use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::meter::{decode_floats, decode_ints};

/// The highest rate a listen chunk carries: speech and music stay intelligible, and a
/// 5 s chunk is 240 KB.
pub const LISTEN_MAX_RATE: u32 = 24_000;

/// The mono, decimated stream of one capture.
#[derive(Clone, Debug)]
pub struct ListenTap {
    format: SampleFormat,
    channels: usize,
    factor: u32,
    rate: u32,
    /// From a sum of `channels × factor` samples to 16-bit full scale: the mean's divisor
    /// and the format's full scale in one multiplier.
    scale: f64,
    /// The output sample in the making: the sum of its frames' samples so far (exact for
    /// the integer formats; the float format's at full scale = 1).
    int_sum: i64,
    float_sum: f64,
    in_group: usize,
    samples: Vec<i16>,
    /// A feed's decoded samples (kept: a warm feed allocates nothing).
    ints: Vec<i32>,
    floats: Vec<f64>,
}

/// A 16-bit sample from full scale = `i16::MAX`, rounded half away from zero (the cast
/// truncates toward zero and saturates at the rails).
#[inline(always)]
fn to_i16(x: f64) -> i16 {
    (x + 0.5f64.copysign(x)) as i16
}

impl ListenTap {
    pub fn new(spec: StreamSpec) -> ListenTap {
        let factor = spec.rate.div_ceil(LISTEN_MAX_RATE).max(1);
        let channels = usize::from(spec.channels.max(1));
        let full_scale = match spec.format {
            SampleFormat::FloatLe => 1.0,
            f => 2f64.powi(i32::from(f.valid_bits()) - 1),
        };
        ListenTap {
            format: spec.format,
            channels,
            factor,
            rate: spec.rate / factor,
            scale: f64::from(i16::MAX) / (full_scale * channels as f64 * f64::from(factor)),
            int_sum: 0,
            float_sum: 0.0,
            in_group: 0,
            samples: Vec::new(),
            ints: Vec::new(),
            floats: Vec::new(),
        }
    }

    /// The rate of the samples it yields.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Interleaved frames in the stream's native format. Each output sample is the mean
    /// of its `factor` frames' samples: decoded by the meter's decoders, summed exactly
    /// (integer formats) and scaled once, since the writer feeds every captured frame
    /// through here on a controller's job (a call and a division per frame cost more than
    /// the meter).
    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        let frame = self.format.bytes_per_sample() * self.channels;
        let whole = &bytes[..bytes.len() / frame * frame];
        if self.format == SampleFormat::FloatLe {
            let mut floats = std::mem::take(&mut self.floats);
            decode_floats(self.format, whole, &mut floats);
            let sum = |s: &[f64]| s.iter().sum::<f64>();
            let (head, bulk, tail) = self.split(&floats, self.channels);
            self.float_sum += sum(head);
            self.close_if_whole(head.len() / self.channels);
            for group in bulk.chunks_exact(self.group_len()) {
                self.samples.push(to_i16(sum(group) * self.scale));
            }
            self.float_sum += sum(tail);
            self.in_group += tail.len() / self.channels;
            self.floats = floats;
        } else if !(self.format == SampleFormat::S16Le && self.feed_s16(whole)) {
            self.feed_ints(whole);
        }
    }

    /// Whole integer frames, decoded by the meter's decoder.
    fn feed_ints(&mut self, whole: &[u8]) {
        let mut ints = std::mem::take(&mut self.ints);
        decode_ints(self.format, whole, &mut ints);
        let (head, bulk, tail) = self.split(&ints, self.channels);
        self.int_sum += sum_ints(head);
        self.close_if_whole(head.len() / self.channels);
        // Room first, then one store per output sample (a push checks capacity each).
        let start = self.samples.len();
        self.samples
            .resize(start + bulk.len() / self.group_len(), 0);
        groups_of_ints(
            bulk,
            self.group_len(),
            self.scale,
            &mut self.samples[start..],
        );
        self.int_sum += sum_ints(tail);
        self.in_group += tail.len() / self.channels;
        self.ints = ints;
    }

    /// Whole S16 frames, when an output sample is a common number of samples (mono or
    /// stereo at 44.1-96 kHz, 4, 6 or 8 channels at 48 kHz): its whole output samples
    /// summed straight from the bytes, in a loop the compiler unrolls, and the frames
    /// around them through [`Self::feed_ints`]. False (nothing fed) for other sizes.
    fn feed_s16(&mut self, whole: &[u8]) -> bool {
        let groups: GroupsOfS16 = match self.group_len() {
            2 => groups_of_s16::<2>,
            4 => groups_of_s16::<4>,
            8 => groups_of_s16::<8>,
            12 => groups_of_s16::<12>,
            16 => groups_of_s16::<16>,
            _ => return false,
        };
        let (head, bulk, tail) = self.split(whole, 2 * self.channels);
        self.feed_ints(head);
        let start = self.samples.len();
        let n = bulk.len() / (2 * self.group_len());
        self.samples.resize(start + n, 0);
        groups(bulk, self.scale, &mut self.samples[start..]);
        self.feed_ints(tail);
        true
    }

    /// Samples per output sample.
    fn group_len(&self) -> usize {
        self.channels * self.factor as usize
    }

    /// Whole frames (`per_frame` items each: samples, or bytes) as: those that finish the
    /// output sample in the making, whole output samples' worth, and the frames left over
    /// for the next feed.
    fn split<'a, T>(&self, items: &'a [T], per_frame: usize) -> (&'a [T], &'a [T], &'a [T]) {
        let to_finish = match self.in_group {
            0 => 0,
            n => self.factor as usize - n,
        };
        let (head, rest) = items.split_at((to_finish * per_frame).min(items.len()));
        let group = self.factor as usize * per_frame;
        let (bulk, tail) = rest.split_at(rest.len() / group * group);
        (head, bulk, tail)
    }

    /// Counts `frames` more into the output sample in the making; closes it when whole.
    fn close_if_whole(&mut self, frames: usize) {
        if frames == 0 {
            return;
        }
        self.in_group += frames;
        if self.in_group == self.factor as usize {
            self.close();
        }
    }

    /// The group in the making, closed as a 16-bit sample.
    fn close(&mut self) {
        let sum = match self.format {
            SampleFormat::FloatLe => self.float_sum,
            _ => self.int_sum as f64,
        };
        self.samples.push(to_i16(sum * self.scale));
        (self.int_sum, self.float_sum, self.in_group) = (0, 0.0, 0);
    }

    /// The samples since the last take.
    pub fn take(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.samples)
    }
}

fn sum_ints(samples: &[i32]) -> i64 {
    samples.iter().map(|&v| i64::from(v)).sum()
}

/// Each whole group of `group` decoded samples to one output sample.
fn groups_of_ints(samples: &[i32], group: usize, scale: f64, out: &mut [i16]) {
    for (o, g) in out.iter_mut().zip(samples.chunks_exact(group)) {
        *o = to_i16(sum_ints(g) as f64 * scale);
    }
}

/// [`groups_of_s16`] for one group size.
type GroupsOfS16 = fn(&[u8], f64, &mut [i16]);

/// Each whole group of `G` S16 samples to one output sample, as [`groups_of_ints`] gives
/// (the same exact sum: `G` 16-bit samples fit an i32 many times over).
fn groups_of_s16<const G: usize>(bytes: &[u8], scale: f64, out: &mut [i16]) {
    for (o, g) in out.iter_mut().zip(bytes.chunks_exact(2 * G)) {
        let mut sum = 0i32;
        for k in 0..G {
            sum += i32::from(i16::from_le_bytes([g[2 * k], g[2 * k + 1]]));
        }
        *o = to_i16(f64::from(sum) * scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s16_stereo(frames: &[(i16, i16)]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|(l, r)| [l.to_le_bytes(), r.to_le_bytes()].concat())
            .collect()
    }

    #[test]
    fn stereo_is_averaged_and_48k_is_halved() {
        let spec = StreamSpec {
            format: SampleFormat::S16Le,
            rate: 48_000,
            channels: 2,
        };
        let mut tap = ListenTap::new(spec);
        assert_eq!(tap.rate(), 24_000);
        // Two frames per output sample: (L+R)/2 averaged over the pair.
        tap.feed_bytes(&s16_stereo(&[
            (16_384, 0),
            (16_384, 0),
            (-8192, -8192),
            (-8192, -8192),
        ]));
        tap.feed_bytes(&s16_stereo(&[(1000, 1000)])); // half a pair waits for the next feed
        assert_eq!(tap.take(), [8192, -8192]);
        tap.feed_bytes(&s16_stereo(&[(1000, 1000)]));
        assert_eq!(tap.take(), [1000]);
    }

    #[test]
    fn rates_map_to_at_most_24k_and_a_chunk_is_a_wav_hound_reads() {
        for (rate, want) in [
            (8_000, 8_000),
            (44_100, 22_050),
            (96_000, 24_000),
            (192_000, 24_000),
        ] {
            let spec = StreamSpec {
                format: SampleFormat::S32Le,
                rate,
                channels: 8,
            };
            assert_eq!(ListenTap::new(spec).rate(), want, "{rate}");
        }
        let samples: Vec<i16> = (0..2400).map(|i| (i * 7) as i16).collect();
        let bytes = crate::segment::wav::mono_s16_wav(&samples, 24_000);
        assert_eq!(bytes.len(), 44 + 2 * samples.len());
        let mut r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        let spec = r.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 24_000, 16)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let back: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
    }

    /// The mean the old per-frame pass computed: each frame's normalized sum divided
    /// and accumulated in f64, then scaled and rounded.
    fn per_frame_reference(
        format: SampleFormat,
        channels: usize,
        factor: u32,
        bytes: &[u8],
    ) -> Vec<i16> {
        let width = format.bytes_per_sample();
        let (mut acc, mut n, mut out) = (0.0f64, 0u32, Vec::new());
        for frame in bytes.chunks_exact(width * channels) {
            let sum: f64 = frame
                .chunks_exact(width)
                .map(|s| crate::core::meter::normalized(format, s).0)
                .sum();
            acc += sum / (channels as f64 * f64::from(factor));
            n += 1;
            if n == factor {
                let x = (acc * f64::from(i16::MAX)).round();
                out.push(x.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
                (acc, n) = (0.0, 0);
            }
        }
        out
    }

    fn format_of(i: u8) -> SampleFormat {
        [
            SampleFormat::S16Le,
            SampleFormat::S24Le3,
            SampleFormat::S24Le,
            SampleFormat::S32Le,
            SampleFormat::FloatLe,
        ][usize::from(i % 5)]
    }

    proptest::proptest! {
        /// Fed in any pieces, the tap gives what one feed gives, and that is the old
        /// per-frame pass's result but for its rounding (at most one step of 16 bits).
        #[test]
        fn any_split_gives_one_feeds_samples_and_the_per_frame_mean(
            fmt in 0u8..5,
            channels in 1u16..7,
            rate in proptest::sample::select(vec![8_000u32, 48_000, 96_000, 192_000]),
            frames in 0usize..400,
            seed in proptest::prelude::any::<u64>(),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let format = format_of(fmt);
            let spec = StreamSpec { format, rate, channels };
            let frame = format.bytes_per_sample() * usize::from(channels);
            // Noise with a few rail values (the full-scale edges are where rounding bites).
            let mut x = seed | 1;
            let bytes: Vec<u8> = (0..frames * frame)
                .map(|i| {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    if format == SampleFormat::FloatLe && i % 4 == 3 { (x % 0x3f) as u8 } else { x as u8 }
                })
                .collect();
            let mut whole = ListenTap::new(spec);
            whole.feed_bytes(&bytes);
            let whole = whole.take();
            let mut pieces = ListenTap::new(spec);
            let mut at = 0;
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.min(&frames) * frame).collect();
            cuts.sort_unstable();
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieces.feed_bytes(&bytes[at..cut]);
                at = cut;
            }
            proptest::prop_assert_eq!(&pieces.take(), &whole);
            let factor = whole_factor(rate);
            let reference = per_frame_reference(format, usize::from(channels), factor, &bytes);
            proptest::prop_assert_eq!(reference.len(), whole.len());
            for (a, b) in reference.iter().zip(&whole) {
                proptest::prop_assert!((i32::from(*a) - i32::from(*b)).abs() <= 1, "{a} vs {b}");
            }
        }
    }

    proptest::proptest! {
        /// The S16 groups summed from the bytes are the decoded groups' samples, exactly.
        #[test]
        fn s16_groups_are_the_decoded_groups(
            samples in proptest::collection::vec(proptest::prelude::any::<i16>(), 0..400),
            scale in 0.001f64..1.0,
        ) {
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            let ints: Vec<i32> = samples.iter().map(|&s| i32::from(s)).collect();
            let cases: [(usize, GroupsOfS16); 5] = [
                (2, groups_of_s16::<2>),
                (4, groups_of_s16::<4>),
                (8, groups_of_s16::<8>),
                (12, groups_of_s16::<12>),
                (16, groups_of_s16::<16>),
            ];
            for (g, fast) in cases {
                let n = samples.len() / g;
                let (mut want, mut got) = (vec![0i16; n], vec![0i16; n]);
                groups_of_ints(&ints, g, scale, &mut want);
                fast(&bytes, scale, &mut got);
                proptest::prop_assert_eq!(&got, &want, "group {}", g);
            }
        }
    }

    fn whole_factor(rate: u32) -> u32 {
        rate.div_ceil(LISTEN_MAX_RATE).max(1)
    }
}
