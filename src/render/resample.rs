//! Streaming fixed-ratio resampling (rubato's FFT resampler): interleaved frames in,
//! interleaved frames out, the resampler's delay trimmed, and exactly
//! `round(in_frames × out_rate / in_rate)` frames out in all.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

/// Input frames per resampler call.
const CHUNK: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz: {detail}")]
    Construct { from: u32, to: u32, detail: String },
    #[error("resampling: {0}")]
    Process(String),
}

pub struct Resampler {
    inner: Fft<f32>,
    channels: usize,
    from: u32,
    to: u32,
    /// Input frames waiting for a full chunk.
    pending: Vec<f32>,
    out: Vec<f32>,
    /// Output frames still to drop (the resampler's delay).
    to_trim: usize,
    frames_in: u64,
    frames_out: u64,
}

/// Frames a `frames`-long input becomes at the new rate.
pub fn output_frames(frames: u64, from: u32, to: u32) -> u64 {
    let (from, to) = (u128::from(from.max(1)), u128::from(to));
    ((u128::from(frames) * to + from / 2) / from) as u64
}

impl Resampler {
    pub fn new(from: u32, to: u32, channels: u16) -> Result<Resampler, ResampleError> {
        let channels = usize::from(channels.max(1));
        let inner = Fft::<f32>::new(
            from as usize,
            to as usize,
            CHUNK,
            channels,
            FixedSync::Input,
        )
        .map_err(|e| ResampleError::Construct {
            from,
            to,
            detail: e.to_string(),
        })?;
        let out = vec![0.0; inner.output_frames_max() * channels];
        let pending = Vec::with_capacity(inner.input_frames_max() * channels);
        Ok(Resampler {
            to_trim: inner.output_delay(),
            inner,
            channels,
            from,
            to,
            pending,
            out,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Feeds interleaved frames; resampled frames go to `emit`.
    pub fn push<E: From<ResampleError>>(
        &mut self,
        mut input: &[f32],
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.frames_in += (input.len() / self.channels) as u64;
        while !input.is_empty() {
            let need = self.inner.input_frames_next() * self.channels - self.pending.len();
            let take = need.min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == self.inner.input_frames_next() * self.channels {
                self.process(None, emit)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Flushes the tail: the frames waiting and the delay, up to the exact total.
    pub fn finish<E: From<ResampleError>>(
        mut self,
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let target = output_frames(self.frames_in, self.from, self.to);
        let mut partial = self.pending.len() / self.channels;
        // The delay plus the tail, in whole calls, with room to spare: never loop forever.
        let mut calls = 4 + (self.to_trim + partial) / self.inner.output_frames_next().max(1);
        while self.frames_out < target && calls > 0 {
            calls -= 1;
            let chunk = self.inner.input_frames_next() * self.channels;
            self.pending.resize(chunk, 0.0);
            self.process(Some(partial), emit)?;
            partial = 0;
            self.pending.iter_mut().for_each(|s| *s = 0.0);
        }
        // Pad with silence if the resampler fell short (it cannot).
        let mut short = target.saturating_sub(self.frames_out) as usize * self.channels;
        let zeros = vec![0.0; self.channels * 256];
        while short > 0 {
            let n = short.min(zeros.len());
            emit(&zeros[..n])?;
            short -= n;
        }
        Ok(target)
    }

    fn process<E: From<ResampleError>>(
        &mut self,
        partial: Option<usize>,
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let frames_in = self.inner.input_frames_next();
        let frames_out = self.inner.output_frames_next();
        let input = InterleavedSlice::new(
            &self.pending[..frames_in * self.channels],
            self.channels,
            frames_in,
        )
        .map_err(|e| ResampleError::Process(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(
            &mut self.out[..frames_out * self.channels],
            self.channels,
            frames_out,
        )
        .map_err(|e| ResampleError::Process(e.to_string()))?;
        let indexing = partial.map(|n| Indexing {
            partial_len: Some(n),
            ..Default::default()
        });
        let (_, produced) = self
            .inner
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        let target = output_frames(self.frames_in, self.from, self.to);
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        let room = target.saturating_sub(self.frames_out) as usize;
        let keep = (produced - skip).min(room);
        if keep > 0 {
            emit(&self.out[skip * self.channels..(skip + keep) * self.channels])?;
            self.frames_out += keep as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: u32, to: u32, input: &[f32], channels: u16, step: usize) -> Vec<f32> {
        let mut r = Resampler::new(from, to, channels).unwrap();
        let mut out = Vec::new();
        let mut emit = |s: &[f32]| -> Result<(), ResampleError> {
            out.extend_from_slice(s);
            Ok(())
        };
        for piece in input.chunks(step * channels as usize) {
            r.push(piece, &mut emit).unwrap();
        }
        r.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn exact_frame_counts() {
        for (from, to, frames) in [
            (48_000, 44_100, 48_000u64),
            (44_100, 48_000, 44_100),
            (48_000, 16_000, 1000),
            (48_000, 44_100, 7),
            (48_000, 44_100, 0),
        ] {
            let input = vec![0.1f32; frames as usize * 2];
            let out = run(from, to, &input, 2, 777);
            assert_eq!(
                out.len() as u64,
                output_frames(frames, from, to) * 2,
                "{from}->{to} {frames}"
            );
        }
        assert_eq!(output_frames(48_000 * 60, 48_000, 44_100), 44_100 * 60);
    }

    #[test]
    fn a_tone_keeps_its_phase_and_level() {
        // 1 kHz at 48 kHz to 44.1 kHz: after delay trimming, the output is the same tone,
        // in phase, so the delay really was removed.
        let tone = |rate: f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate).sin() * 0.5)
                .collect()
        };
        let out = run(48_000, 44_100, &tone(48_000.0, 48_000), 1, 1000);
        let want = tone(44_100.0, 44_100);
        let err = out[2000..42_000]
            .iter()
            .zip(&want[2000..42_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
    }
}
