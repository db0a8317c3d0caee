//! The enhanced rendition's signal chain, pure and streaming, at 48 kHz mono: RNNoise
//! denoise (`nnnoiseless`), then high-pass and low-pass biquads, a make-up gain and a gate
//! with hysteresis and hold. Loudness is measured (EBU R128 integrated, `ebur128`) on the
//! chain's output before gain and gate, so a render can take its gain from a first pass.

use ebur128::{EbuR128, Mode};
use nnnoiseless::DenoiseState;

/// The rate the whole chain runs at (RNNoise's only rate).
pub const RATE: u32 = 48_000;
/// RNNoise's frame: 10 ms.
const FRAME: usize = DenoiseState::FRAME_SIZE;
/// RNNoise takes and gives samples on the 16-bit scale.
const SCALE: f32 = 32_768.0;

/// A second-order section (RBJ cookbook, Butterworth Q), transposed direct form II in
/// f64 so an 80 Hz high-pass at 48 kHz keeps its precision.
#[derive(Clone, Debug)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    pub fn highpass(rate: u32, hz: f64) -> Biquad {
        let (cos, alpha) = Self::warp(rate, hz);
        let b1 = -(1.0 + cos);
        Self::normalised([-b1 / 2.0, b1, -b1 / 2.0], cos, alpha)
    }

    pub fn lowpass(rate: u32, hz: f64) -> Biquad {
        let (cos, alpha) = Self::warp(rate, hz);
        let b1 = 1.0 - cos;
        Self::normalised([b1 / 2.0, b1, b1 / 2.0], cos, alpha)
    }

    fn warp(rate: u32, hz: f64) -> (f64, f64) {
        // Below Nyquist whatever the job says; the options are range-checked before this.
        let w = std::f64::consts::TAU * hz.clamp(1.0, f64::from(rate) * 0.49) / f64::from(rate);
        (w.cos(), w.sin() / std::f64::consts::SQRT_2) // alpha = sin w / 2Q, Q = 1/sqrt 2
    }

    fn normalised(b: [f64; 3], cos: f64, alpha: f64) -> Biquad {
        let a0 = 1.0 + alpha;
        Biquad {
            b: b.map(|x| x / a0),
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    pub fn run(&mut self, x: &mut [f32]) {
        let ([b0, b1, b2], [a1, a2]) = (self.b, self.a);
        for s in x {
            let x = f64::from(*s);
            let y = b0 * x + self.z[0];
            self.z[0] = b1 * x - a1 * y + self.z[1];
            self.z[1] = b2 * x - a2 * y;
            *s = y as f32;
        }
    }
}

/// A noise gate: opens when the level (an RMS over 10 ms) reaches the threshold, closes
/// only once it has stayed [`Gate::HYSTERESIS_DB`] below it for the hold time, so a
/// level at the threshold does not chatter. Closed, it attenuates by
/// [`Gate::RANGE_DB`] (ffmpeg `agate`'s default depth); the gain moves smoothly (10 ms
/// to open, 150 ms to close) so it never clicks.
#[derive(Clone, Debug)]
pub struct Gate {
    open_at: f32,
    close_at: f32,
    hold: u32,
    below: u32,
    open: bool,
    power: f32,
    gain: f32,
    floor: f32,
    k_power: f32,
    k_open: f32,
    k_close: f32,
}

impl Gate {
    pub const HYSTERESIS_DB: f32 = 6.0;
    pub const RANGE_DB: f32 = -24.0;
    pub const HOLD_MS: u32 = 100;

    pub fn new(rate: u32, threshold_db: f32) -> Gate {
        let k = |ms: f32| 1.0 - (-1000.0 / (ms * rate as f32)).exp();
        let power = |db: f32| 10f32.powf(db / 10.0);
        Gate {
            open_at: power(threshold_db),
            close_at: power(threshold_db - Self::HYSTERESIS_DB),
            hold: rate * Self::HOLD_MS / 1000,
            below: 0,
            open: false,
            power: 0.0,
            gain: db_to_gain(Self::RANGE_DB),
            floor: db_to_gain(Self::RANGE_DB),
            k_power: k(10.0),
            k_open: k(10.0),
            k_close: k(150.0),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn run(&mut self, x: &mut [f32]) {
        for s in x {
            self.power += self.k_power * (*s * *s - self.power);
            if self.power >= self.open_at {
                self.open = true;
                self.below = 0;
            } else if self.open && self.power < self.close_at {
                self.below += 1;
                self.open = self.below < self.hold;
            } else {
                self.below = 0;
            }
            let (target, k) = match self.open {
                true => (1.0, self.k_open),
                false => (self.floor, self.k_close),
            };
            self.gain += k * (target - self.gain);
            *s *= self.gain;
        }
    }
}

pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// The gain that brings an integrated loudness of `measured_lufs` to `target_lufs`,
/// lowered so the true peak `peak` (linear) stays at or under `ceiling_db` dBTP. Silence
/// (no gated loudness) gets no gain: there is nothing to bring up.
pub fn normalising_gain(measured_lufs: f64, peak: f64, target_lufs: f64, ceiling_db: f64) -> f32 {
    if !measured_lufs.is_finite() || measured_lufs < -70.0 {
        return 1.0;
    }
    let mut db = target_lufs - measured_lufs;
    if peak > 0.0 {
        db = db.min(ceiling_db - 20.0 * peak.log10());
    }
    db_to_gain(db as f32)
}

/// RNNoise over a stream: input in any lengths, output aligned with the input (its one
/// frame of delay dropped) and exactly as long once finished.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    pending: Vec<f32>,
    frame: Vec<f32>,
    /// Output samples still to drop at the start (the delay).
    skip: usize,
    fed: u64,
    given: u64,
}

impl Default for Denoiser {
    fn default() -> Self {
        Self::new()
    }
}

impl Denoiser {
    /// RNNoise's output lags its input by one frame.
    pub const DELAY: usize = FRAME;

    pub fn new() -> Denoiser {
        Denoiser {
            state: DenoiseState::new(),
            pending: Vec::with_capacity(FRAME),
            frame: vec![0.0; FRAME],
            skip: Self::DELAY,
            fed: 0,
            given: 0,
        }
    }

    pub fn push<E>(
        &mut self,
        mut x: &[f32],
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.fed += x.len() as u64;
        while !x.is_empty() {
            let take = (FRAME - self.pending.len()).min(x.len());
            self.pending.extend(x[..take].iter().map(|s| s * SCALE));
            x = &x[take..];
            if self.pending.len() == FRAME {
                self.frame_out(emit)?;
            }
        }
        Ok(())
    }

    /// Flushes the partial frame and the delay with silence, up to the input's length.
    pub fn finish<E>(mut self, emit: &mut impl FnMut(&[f32]) -> Result<(), E>) -> Result<(), E> {
        while self.given < self.fed {
            self.pending.resize(FRAME, 0.0);
            self.frame_out(emit)?;
        }
        Ok(())
    }

    fn frame_out<E>(&mut self, emit: &mut impl FnMut(&[f32]) -> Result<(), E>) -> Result<(), E> {
        self.state.process_frame(&mut self.frame, &self.pending);
        self.pending.clear();
        let start = self.skip.min(FRAME);
        self.skip -= start;
        let room = (self.fed - self.given).min((FRAME - start) as u64) as usize;
        let out = &mut self.frame[start..start + room];
        out.iter_mut().for_each(|s| *s /= SCALE);
        self.given += room as u64;
        emit(out)
    }
}

/// Which stages run, and with what.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainSpec {
    pub denoise: bool,
    pub highpass_hz: Option<f64>,
    pub lowpass_hz: Option<f64>,
    pub gate_db: Option<f32>,
}

/// The chain after the denoiser, on one block at a time.
pub struct Chain {
    denoiser: Option<Denoiser>,
    filters: Vec<Biquad>,
    gain: f32,
    /// `(gain before, first sample, samples)`: the gain moves linearly from the one before
    /// to `gain` (a chunk taking over from the previous chunk's gain).
    ramp: Option<(f32, u64, u64)>,
    gate: Option<Gate>,
    meter: Option<EbuR128>,
    /// Samples `[from, to)` are measured (a chunk, not its pre-roll or post-roll).
    measured: (u64, u64),
    /// Samples through the stages so far.
    at: u64,
    scratch: Vec<f32>,
}

impl Chain {
    /// The chain as the render plays it: the filters, `gain`, then the gate.
    pub fn new(spec: &ChainSpec, gain: f32) -> Chain {
        let filters = [
            spec.highpass_hz.map(|hz| Biquad::highpass(RATE, hz)),
            spec.lowpass_hz.map(|hz| Biquad::lowpass(RATE, hz)),
        ];
        Chain {
            denoiser: spec.denoise.then(Denoiser::new),
            filters: filters.into_iter().flatten().collect(),
            gain,
            ramp: None,
            gate: spec.gate_db.map(|db| Gate::new(RATE, db)),
            meter: None,
            measured: (0, u64::MAX),
            at: 0,
            scratch: Vec::new(),
        }
    }

    /// The gain is `before` up to sample `start`, then moves to the chain's own over `len`.
    pub fn ramp_from(mut self, before: f32, start: u64, len: u64) -> Chain {
        self.ramp = Some((before, start, len.max(1)));
        self
    }

    /// A measuring chain measures only samples `[from, to)`.
    pub fn measure_only(mut self, from: u64, to: u64) -> Chain {
        self.measured = (from, to);
        self
    }

    /// The chain as the first pass plays it: no gain or gate, its output measured.
    pub fn measuring(spec: &ChainSpec) -> Chain {
        let mut chain = Chain::new(
            &ChainSpec {
                gate_db: None,
                ..spec.clone()
            },
            1.0,
        );
        // Mode and rate are constants ebur128 accepts; a refusal would only lose the measure.
        chain.meter = EbuR128::new(1, RATE, Mode::I | Mode::TRUE_PEAK).ok();
        chain
    }

    pub fn push<E>(
        &mut self,
        x: &[f32],
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(mut d) = self.denoiser.take() else {
            return self.stages(x, emit);
        };
        let r = d.push(x, &mut |s: &[f32]| self.stages(s, emit));
        self.denoiser = Some(d);
        r
    }

    pub fn finish<E>(mut self, emit: &mut impl FnMut(&[f32]) -> Result<(), E>) -> Result<Self, E> {
        if let Some(d) = self.denoiser.take() {
            d.finish(&mut |s: &[f32]| self.stages(s, emit))?;
        }
        Ok(self)
    }

    /// `(integrated LUFS, true peak)` of what went through a measuring chain.
    pub fn loudness(&self) -> Option<(f64, f64)> {
        let m = self.meter.as_ref()?;
        Some((m.loudness_global().ok()?, m.true_peak(0).ok()?))
    }

    fn stages<E>(
        &mut self,
        x: &[f32],
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scratch.clear();
        self.scratch.extend_from_slice(x);
        for f in &mut self.filters {
            f.run(&mut self.scratch);
        }
        let (at, n) = (self.at, self.scratch.len() as u64);
        self.at += n;
        if let Some(m) = self.meter.as_mut() {
            let (from, to) = (
                self.measured.0.clamp(at, at + n),
                self.measured.1.clamp(at, at + n),
            );
            let part = &self.scratch[(from - at) as usize..(to - at) as usize];
            let _ = m.add_frames_f32(part); // mono f32 frames: cannot be refused
        }
        match self.ramp {
            Some((before, start, len)) if at < start + len => {
                let step = (self.gain - before) / len as f32;
                for (i, s) in (at..).zip(self.scratch.iter_mut()) {
                    *s *= before + step * i.saturating_sub(start).min(len) as f32;
                }
            }
            _ if self.gain != 1.0 => self.scratch.iter_mut().for_each(|s| *s *= self.gain),
            _ => {}
        }
        if let Some(g) = self.gate.as_mut() {
            g.run(&mut self.scratch);
        }
        emit(&self.scratch)
    }
}

#[cfg(test)]
#[path = "dsp_tests.rs"]
mod tests;
