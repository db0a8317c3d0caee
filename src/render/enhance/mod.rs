//! The voice-enhanced rendition (`rendition=enhanced`): the job's channel map, a mono
//! downmix resampled to 48 kHz, the [`dsp`] chain, then back to the raw render's rate and
//! channels (the mono on each) and the job's codec. Loudness normalisation reads the
//! segments twice: the first pass only measures (EBU R128 integrated loudness and true
//! peak), so memory stays bounded whatever the length and nothing extra is written.
//! A chunked job's chunks each get theirs ([`chunk`]), through a [`Window`].
//!
//! The options follow Rakkr's `recordingEnhancementSchema` (its defaults for absent
//! fields). Its de-esser and compressor are not built; DeepFilterNet3 is not in this
//! agent, so either denoise engine runs RNNoise.

pub mod chunk;
pub mod dsp;
pub mod job;
pub mod listen;
mod options;

use std::fs::{self, File};
use std::path::Path;

use self::dsp::{Chain, ChainSpec, RATE};
pub use self::options::{Enhancement, EnhancementError};
use super::convert::Quantizer;
use super::peaks::Peaks;
use super::pipeline::{self, RenderError, RenderReport, RenderRequest, Sink};
use super::resample::Resampler;
use super::stitch;
use crate::core::timeline::plan_frames;
use crate::segment::file::sync_parent_dir;

/// Where the chain runs when a file holds only part of what it hears (a chunk): over
/// `fed`, which starts `pre` capture frames (whole seconds) before the part and may run
/// past its end, so the denoiser, filters, gate and resamplers carry on across the edges.
/// The part's loudness gain ramps over [`GAIN_RAMP_MS`] from `gain_from` (the previous
/// part's) at its start.
pub struct Window<'a> {
    pub fed: &'a RenderRequest,
    pub pre: u64,
    pub gain_from: Option<f32>,
}

/// How long a part's gain takes to move from the previous part's.
pub const GAIN_RAMP_MS: u64 = 500;

/// Renders `req`'s enhanced rendition into `out`, on a thread below the caller's priority.
pub fn render(
    req: &RenderRequest,
    enhancement: &Enhancement,
    out: &Path,
) -> Result<RenderReport, RenderError> {
    let whole = Window {
        fed: req,
        pre: 0,
        gain_from: None,
    };
    render_window(req, &whole, enhancement, out).map(|(report, _)| report)
}

/// Renders the enhanced rendition of `kept` (its plan is the part the file holds) with
/// the chain run over `window`; returns the report and the loudness gain it applied.
pub fn render_window(
    kept: &RenderRequest,
    window: &Window,
    enhancement: &Enhancement,
    out: &Path,
) -> Result<(RenderReport, f32), RenderError> {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("render-enh".into())
            .spawn_scoped(s, || {
                pipeline::lower_priority();
                render_here(kept, window, enhancement, out)
            })
            .map_err(|source| RenderError::Output {
                path: out.to_path_buf(),
                source,
            })?;
        worker.join().unwrap_or_else(|_| {
            Err(RenderError::Unsupported(
                "the enhanced render thread panicked".into(),
            ))
        })
    })
}

fn render_here(
    req: &RenderRequest,
    window: &Window,
    enhancement: &Enhancement,
    out: &Path,
) -> Result<(RenderReport, f32), RenderError> {
    let spec = enhancement.chain();
    let in_rate = u64::from(req.spec.rate.max(1));
    let at_48k = |frames: u64| frames * u64::from(RATE) / in_rate;
    let (pre, kept) = (at_48k(window.pre), at_48k(plan_frames(&req.plan)));
    let gain = match &enhancement.loudness {
        Some(target) => {
            let mut measuring = Chain::measuring(&spec).measure_only(pre, pre + kept);
            run_pass(window.fed, &mut measuring, &mut |_| Ok(()))?;
            let (lufs, peak) = measuring.loudness().unwrap_or((f64::NEG_INFINITY, 0.0));
            log::debug!("enhanced render: {lufs:.1} LUFS, true peak {peak:.3} before gain");
            dsp::normalising_gain(lufs, peak, target.integrated, target.true_peak)
        }
        None => 1.0,
    };
    let out_err = |source| RenderError::Output {
        path: out.to_path_buf(),
        source,
    };
    let codec_err = |source| RenderError::Codec {
        codec: req.codec.name,
        source,
    };
    let channels = req.mix.out_channels();
    let params = pipeline::encoder_params(req, channels)?;
    let (rate, bits, frames) = (params.rate, params.bits, params.frames);
    let partial = stitch::partial_path(out)?;
    let result = (|| {
        let file = File::create(&partial).map_err(out_err)?;
        let encoder = (req.codec.open)(file, &params).map_err(codec_err)?;
        let sink = Sink::new(
            encoder,
            Quantizer::new(bits, true),
            Peaks::new(channels, rate, frames),
            channels,
        );
        let skip = window.pre * u64::from(rate) / in_rate;
        let mut back = Back::new(sink, rate, channels, (skip, frames))?;
        let mut chain = Chain::new(&spec, gain);
        if let Some(before) = window.gain_from {
            chain = chain.ramp_from(before, pre, u64::from(RATE) * GAIN_RAMP_MS / 1000);
        }
        run_pass(window.fed, &mut chain, &mut |s| back.write(s))?;
        back.finish()
    })();
    let (written, clipped) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&partial); // best effort: the error is what matters
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&partial, out) {
        let _ = fs::remove_file(&partial); // best effort: the error is what matters
        return Err(out_err(e));
    }
    sync_parent_dir(out).map_err(out_err)?;
    let (sha256, bytes) = pipeline::hash_file(out).map_err(out_err)?;
    let report = RenderReport {
        codec: req.codec.name.to_string(),
        content_type: req.codec.content_type.to_string(),
        rate,
        channels,
        bits,
        frames: written,
        duration_seconds: written as f64 / f64::from(rate),
        bytes,
        sha256,
        clipped,
    };
    Ok((report, gain))
}

/// One read of the segments: mapped, averaged to mono, at 48 kHz, through `chain`.
fn run_pass(
    req: &RenderRequest,
    chain: &mut Chain,
    emit: &mut dyn FnMut(&[f32]) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let emit = &mut |s: &[f32]| emit(s);
    let width = usize::from(req.mix.out_channels().max(1));
    let mut upsampler = match req.spec.rate {
        RATE => None,
        r => Some(Resampler::new(r, RATE, 1)?),
    };
    let mut mono = Vec::new();
    let total = plan_frames(&req.plan);
    pipeline::read_plan(req, total, &mut |_, _| {}, &mut |mixed| {
        mono.clear();
        let scale = 1.0 / width as f32;
        mono.extend(
            mixed
                .chunks_exact(width)
                .map(|f| f.iter().sum::<f32>() * scale),
        );
        match upsampler.as_mut() {
            Some(r) => r.push(&mono, &mut |s: &[f32]| chain.push(s, emit)),
            None => chain.push(&mono, emit),
        }
    })?;
    if let Some(r) = upsampler {
        r.finish(&mut |s: &[f32]| chain.push(s, emit))?;
    }
    // The chain is a value the caller keeps (its loudness); finishing flushes the denoiser.
    let done = std::mem::replace(chain, Chain::new(&ChainSpec::default(), 1.0));
    *chain = done.finish(emit)?;
    Ok(())
}

/// From 48 kHz mono to the output: its rate, the mono on each channel, the first `skip`
/// frames dropped (a pre-roll), then exactly `frames` long (two resamplings can round one
/// frame apart from the raw render).
struct Back {
    sink: Sink,
    down: Option<Resampler>,
    channels: usize,
    skip: u64,
    frames: u64,
    written: u64,
    wide: Vec<f32>,
}

impl Back {
    fn new(
        sink: Sink,
        rate: u32,
        channels: u16,
        (skip, frames): (u64, u64),
    ) -> Result<Back, RenderError> {
        Ok(Back {
            sink,
            down: match rate {
                RATE => None,
                r => Some(Resampler::new(RATE, r, 1)?),
            },
            channels: usize::from(channels),
            skip,
            frames,
            written: 0,
            wide: Vec::new(),
        })
    }

    fn write(&mut self, s: &[f32]) -> Result<(), RenderError> {
        let Some(mut down) = self.down.take() else {
            return self.spread(s);
        };
        let r = down.push(s, &mut |x: &[f32]| self.spread(x));
        self.down = Some(down);
        r
    }

    fn spread(&mut self, mono: &[f32]) -> Result<(), RenderError> {
        let dropped = self.skip.min(mono.len() as u64);
        self.skip -= dropped;
        let mono = &mono[dropped as usize..];
        let room = (self.frames - self.written).min(mono.len() as u64) as usize;
        self.wide.clear();
        for &s in &mono[..room] {
            self.wide.extend(std::iter::repeat_n(s, self.channels));
        }
        self.written += room as u64;
        let wide = std::mem::take(&mut self.wide);
        let r = self.sink.write(&wide);
        self.wide = wide;
        r
    }

    /// (frames written, clipped samples)
    fn finish(mut self) -> Result<(u64, u64), RenderError> {
        if let Some(down) = self.down.take() {
            down.finish(&mut |x: &[f32]| self.spread(x))?;
        }
        let zeros = vec![0.0; 4096];
        while self.written < self.frames {
            let n = (self.frames - self.written).min(zeros.len() as u64) as usize;
            self.spread(&zeros[..n])?;
        }
        let (frames, clipped, _peaks, _hashed) = self.sink.finish()?;
        Ok((frames, clipped))
    }
}
