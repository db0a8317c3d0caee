//! Live listen from the capture's own frames: every channel averaged to mono, decimated
//! by an integer factor to at most [`LISTEN_MAX_RATE`] (a box average first, so what is
//! dropped does not fold back as aliasing tones), as 16-bit samples. Ten seconds of it
//! fit the controller's 512 KiB cap. Pure: frames in, samples out.

use crate::core::format::{SampleFormat, StreamSpec};

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
    acc: f64,
    in_acc: u32,
    samples: Vec<i16>,
}

impl ListenTap {
    pub fn new(spec: StreamSpec) -> ListenTap {
        let factor = spec.rate.div_ceil(LISTEN_MAX_RATE).max(1);
        ListenTap {
            format: spec.format,
            channels: usize::from(spec.channels.max(1)),
            factor,
            rate: spec.rate / factor,
            acc: 0.0,
            in_acc: 0,
            samples: Vec::new(),
        }
    }

    /// The rate of the samples it yields.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Interleaved frames in the stream's native format.
    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        let width = self.format.bytes_per_sample();
        for frame in bytes.chunks_exact(width * self.channels) {
            let sum: f64 = frame
                .chunks_exact(width)
                .map(|s| crate::core::meter::normalized(self.format, s).0)
                .sum();
            self.push_frame_sum(sum);
        }
    }

    /// One frame, as the sum of its channels at full scale = 1 (what the level meter
    /// decodes already: see `LevelMeter::feed_bytes_tapped`).
    pub fn push_frame_sum(&mut self, sum: f64) {
        self.acc += sum / (self.channels as f64 * f64::from(self.factor));
        self.in_acc += 1;
        if self.in_acc == self.factor {
            let x = (self.acc * f64::from(i16::MAX)).round();
            self.samples
                .push(x.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
            (self.acc, self.in_acc) = (0.0, 0);
        }
    }

    /// The samples since the last take.
    pub fn take(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.samples)
    }
}

/// A mono 16-bit WAV of `samples` at `rate`.
pub fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    // Writing to memory cannot fail but for sizes past 4 GiB, which a chunk never is.
    if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
        let mut i16s = w.get_i16_writer(samples.len() as u32);
        for s in samples {
            i16s.write_sample(*s);
        }
        let _ = i16s.flush();
        let _ = w.finalize();
    }
    out.into_inner()
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
        let bytes = wav_bytes(&samples, 24_000);
        let mut r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!((r.spec().channels, r.spec().sample_rate), (1, 24_000));
        let back: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
    }
}
