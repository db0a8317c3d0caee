//! One streaming pass: the stitch plan's segments and silences → channel map → resample →
//! encode, with waveform peaks taken on the way. Buffers are a fixed size whatever the
//! length. The output is built as `.<name>.partial` and renamed over `out` when complete.
//! The work runs on its own thread at a lower priority (nice) than capture.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::channel_map::Mix;
use super::codec::mp3::split as mp3_split;
use super::codec::{Codec, CodecError, Encoder, EncoderParams, Facts, SampleKind, Samples};
use super::convert::{self, Quantizer};
use super::peaks::Peaks;
use super::resample::{self, ResampleError, Resampler};
use super::stitch::{self, StitchError};
use crate::core::format::StreamSpec;
use crate::core::timeline::{Piece, plan_frames};
use crate::segment::file::sync_parent_dir;

/// Input frames read per step.
const STEP_FRAMES: usize = 8192;
/// Nice steps render threads run below the thread that starts them (capture runs at 0
/// or real-time).
pub const RENDER_NICE: i32 = 10;

/// Cores a render may use: `EDGEREC_RENDER_CORES` when set (1 keeps a render on one
/// thread, to compare or to spare the box), else the machine's.
pub fn render_cores() -> usize {
    std::env::var("EDGEREC_RENDER_CORES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What to render, and how.
#[derive(Clone, Debug)]
pub struct RenderRequest {
    pub plan: Vec<Piece<PathBuf>>,
    /// The segments' format.
    pub spec: StreamSpec,
    pub mix: Mix,
    pub codec: &'static Codec,
    /// Output width (`None`: the codec's choice for the source).
    pub bits: Option<u16>,
    pub float: bool,
    /// Output rate (`None`: the capture's, or the codec's highest if lower).
    pub rate: Option<u32>,
    pub bitrate_kbps: Option<u32>,
    pub vbr: bool,
    pub facts: Facts,
}

/// What a render produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderReport {
    pub codec: String,
    pub content_type: String,
    pub rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub frames: u64,
    pub duration_seconds: f64,
    pub bytes: u64,
    pub sha256: String,
    /// Samples past full scale, clamped (integer outputs).
    pub clipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Segment(#[from] StitchError),
    #[error("{codec}: {source}")]
    Codec {
        codec: &'static str,
        source: CodecError,
    },
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("writing {}: {source}; check free space and permissions there", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Unsupported(String),
}

impl From<CodecError> for RenderError {
    fn from(source: CodecError) -> Self {
        RenderError::Codec {
            codec: "encoder",
            source,
        }
    }
}

/// What the encoder is told: the output's rate, channels, sample layout, bitrate and
/// length (frames after resampling), and the job's facts for its metadata.
pub(super) fn encoder_params(
    req: &RenderRequest,
    channels: u16,
) -> Result<EncoderParams, RenderError> {
    let rate = output_rate(req)?;
    let (bits, float) =
        (req.codec.layout)(req.bits, req.float, req.spec.format).map_err(|source| {
            RenderError::Codec {
                codec: req.codec.name,
                source,
            }
        })?;
    Ok(EncoderParams {
        rate,
        channels,
        bits,
        float,
        bitrate_kbps: req.bitrate_kbps,
        vbr: req.vbr,
        frames: resample::output_frames(plan_frames(&req.plan), req.spec.rate, rate),
        facts: req.facts.clone(),
    })
}

/// The output rate for a request: asked, else the capture's; a codec that cannot carry
/// the capture's rate gets its highest (asking for more than it carries is an error).
pub fn output_rate(req: &RenderRequest) -> Result<u32, RenderError> {
    match req.rate {
        Some(r) if r > req.codec.max_rate || r == 0 => Err(RenderError::Unsupported(format!(
            "{} cannot carry {r} Hz (at most {} Hz)",
            req.codec.name, req.codec.max_rate
        ))),
        Some(r) => Ok(r),
        None => Ok(req.spec.rate.min(req.codec.max_rate)),
    }
}

/// Renders `req` into `out` and its peaks into `peaks_out`; `progress(done, total)` is
/// called with input frames as they go.
pub fn render(
    req: &RenderRequest,
    out: &Path,
    peaks_out: Option<&Path>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RenderReport, RenderError> {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("render".into())
            .spawn_scoped(s, || {
                lower_priority();
                render_here(req, out, peaks_out, progress)
            })
            .map_err(|source| RenderError::Output {
                path: out.to_path_buf(),
                source,
            })?;
        worker.join().unwrap_or_else(|_| {
            Err(RenderError::Unsupported(
                "the render thread panicked".into(),
            ))
        })
    })
}

/// Lowers the calling thread's priority by [`RENDER_NICE`] (threads it starts inherit
/// it): relative, so a render is always below the thread that asked for it. Best effort:
/// a render at normal priority is still a correct render.
pub(super) fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + RENDER_NICE).min(19));
    }
}

fn render_here(
    req: &RenderRequest,
    out: &Path,
    peaks_out: Option<&Path>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RenderReport, RenderError> {
    let out_err = |source| RenderError::Output {
        path: out.to_path_buf(),
        source,
    };
    let codec_err = |source| RenderError::Codec {
        codec: req.codec.name,
        source,
    };
    let channels = req.mix.out_channels();
    if channels == 0 || channels > req.codec.max_channels {
        return Err(RenderError::Unsupported(format!(
            "{} carries 1 to {} channels, not {channels}",
            req.codec.name, req.codec.max_channels
        )));
    }
    let params = encoder_params(req, channels)?;
    let (rate, bits, frames) = (params.rate, params.bits, params.frames);
    let in_frames = plan_frames(&req.plan);
    let partial = stitch::partial_path(out)?;
    let resampling = rate != req.spec.rate;
    // MP3 over two spans joined (two cores, no resampling, long enough); else one pass.
    let spans = (req.codec.name == "mp3" && !resampling)
        .then(|| {
            let kbps = super::codec::mp3::typical_kbps(&params);
            mp3_split::plan(
                frames,
                (rate, kbps),
                Peaks::pixel_width(frames),
                render_cores(),
            )
        })
        .flatten();
    let result = (|| {
        if let Some(spans) = &spans {
            if let Some((w, c, p)) = mp3_split::render(req, &params, spans, &partial, progress)? {
                return Ok((w, c, p, None));
            }
        }
        let file = File::create(&partial).map_err(out_err)?;
        let encoder = (req.codec.open)(file, &params).map_err(codec_err)?;
        let dither = bits < req.spec.format.valid_bits() || !req.mix.is_selection() || resampling;
        let mut sink = Sink::new(
            encoder,
            Quantizer::new(bits, dither),
            Peaks::new(channels, rate, frames),
            channels,
        );
        let mut resampler = if resampling {
            Some(Resampler::new(req.spec.rate, rate, channels)?)
        } else {
            None
        };
        read_plan(
            req,
            in_frames,
            progress,
            &mut |mixed| match resampler.as_mut() {
                Some(r) => r.push(mixed, &mut |s: &[f32]| sink.write(s)),
                None => sink.write(mixed),
            },
        )?;
        if let Some(r) = resampler {
            r.finish(&mut |s: &[f32]| sink.write(s))?;
        }
        let (written, clipped, peaks, hashed) = sink.finish().map_err(codec_err)?;
        Ok::<_, RenderError>((written, clipped, peaks, hashed))
    })();
    let (written, clipped, peaks, hashed) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&partial); // best effort: the error is what matters
            return Err(e);
        }
    };
    fs::rename(&partial, out).map_err(out_err)?;
    sync_parent_dir(out).map_err(out_err)?;
    if let Some(p) = peaks_out {
        super::write_atomically(p, &peaks).map_err(|source| RenderError::Output {
            path: p.to_path_buf(),
            source,
        })?;
    }
    let (sha256, bytes) = match hashed {
        Some(h) => h,
        None => hash_file(out).map_err(out_err)?,
    };
    Ok(RenderReport {
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
    })
}

/// Streams the plan's frames, decoded and mixed, to `emit`.
pub(super) fn read_plan(
    req: &RenderRequest,
    total: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
    emit: &mut dyn FnMut(&[f32]) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    read_plan_range(req, 0..u64::MAX, total, progress, emit)
}

/// [`read_plan`] over the plan's frames `range` only (progress counts from its start).
pub(crate) fn read_plan_range(
    req: &RenderRequest,
    range: std::ops::Range<u64>,
    total: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
    emit: &mut dyn FnMut(&[f32]) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let spec = req.spec;
    let bpf = spec.bytes_per_frame();
    let mut bytes = vec![0u8; STEP_FRAMES * bpf];
    let mut decoded = Vec::with_capacity(STEP_FRAMES * spec.channels as usize);
    let mut mixed = Vec::with_capacity(STEP_FRAMES * req.mix.outputs.len());
    let (mut done, mut at) = (0u64, 0u64);
    for piece in &req.plan {
        let len = match piece {
            Piece::Segment { frames, .. } | Piece::Silence { frames } => *frames,
        };
        // The part of this piece inside the range.
        let (from, to) = (
            range.start.clamp(at, at + len),
            range.end.clamp(at, at + len),
        );
        at += len;
        if from == to {
            continue;
        }
        let (mut src, frames) = match piece {
            Piece::Segment { file, skip, .. } => (
                Some((
                    stitch::open_segment(file, spec, *skip + from - (at - len), to - from)?,
                    file,
                )),
                to - from,
            ),
            Piece::Silence { .. } => (None, to - from),
        };
        let mut left = frames;
        while left > 0 {
            let n = left.min(STEP_FRAMES as u64) as usize;
            let chunk = &mut bytes[..n * bpf];
            match src.as_mut() {
                Some((f, path)) => {
                    f.read_exact(chunk)
                        .map_err(|source| StitchError::ReadSegment {
                            file: path.to_path_buf(),
                            source,
                        })?
                }
                None => chunk.fill(0), // 0 is silence in every format, float too
            }
            decoded.clear();
            convert::decode(spec.format, chunk, &mut decoded);
            if req.mix.is_identity() {
                emit(&decoded)?;
            } else {
                req.mix.apply(&decoded, &mut mixed);
                emit(&mixed)?;
            }
            left -= n as u64;
            done += n as u64;
            progress(done, total);
        }
    }
    Ok(())
}

/// What [`Sink::finish`] gives back.
pub(super) type SinkOutcome = (u64, u64, Vec<u8>, Option<(String, u64)>);

/// The end of the pipeline: peaks, then the encoder's sample kind.
pub(super) struct Sink {
    encoder: Box<dyn Encoder>,
    quantizer: Quantizer,
    peaks: Peaks,
    ints: Vec<i32>,
    channels: usize,
    frames: u64,
}

impl Sink {
    pub(super) fn new(
        encoder: Box<dyn Encoder>,
        quantizer: Quantizer,
        peaks: Peaks,
        channels: u16,
    ) -> Sink {
        Sink {
            encoder,
            quantizer,
            peaks,
            ints: Vec::new(),
            channels: usize::from(channels),
            frames: 0,
        }
    }

    pub(super) fn write(&mut self, s: &[f32]) -> Result<(), RenderError> {
        self.peaks.push(s);
        self.frames += (s.len() / self.channels) as u64;
        match self.encoder.input() {
            SampleKind::Float => {
                self.quantizer.clipped +=
                    s.iter().filter(|x| !(-1.0..=1.0).contains(*x)).count() as u64;
                self.encoder.write(Samples::Float(s))?
            }
            SampleKind::Int(_) => {
                self.quantizer.run(s, &mut self.ints);
                self.encoder.write(Samples::Int(&self.ints))?
            }
        }
        Ok(())
    }

    /// (frames written, clipped samples, peaks JSON, the file's SHA-256 and size when
    /// the encoder took them while writing)
    pub(super) fn finish(self) -> Result<SinkOutcome, CodecError> {
        let hashed = self.encoder.finish_hashed()?;
        let (clipped, peaks) = (self.quantizer.clipped, self.peaks.finish());
        Ok((self.frames, clipped, peaks, hashed))
    }
}

/// SHA-256 (hex) and size of a file, in one sequential read: the headers patched at the
/// end of a render are in it.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}
