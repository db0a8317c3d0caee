//! Streaming fixed-ratio resampling (rubato's FFT resampler): interleaved frames in,
//! interleaved frames out, the resampler's delay trimmed, and exactly
//! `round(in_frames × out_rate / in_rate)` frames out in all. With two or more channels
//! on a box with two cores, the channels are split in two groups and the second group
//! runs on a helper thread: rubato filters each channel on its own, so the output is
//! the same sample for sample.

use crossbeam_channel::{Receiver, Sender, bounded};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

/// Input frames per resampler call.
const CHUNK: usize = 1024;
/// Calls per hand-off to the helper thread: one round trip per 32 Ki frames, not per call.
const BATCH_CALLS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz: {detail}")]
    Construct { from: u32, to: u32, detail: String },
    #[error("resampling: {0}")]
    Process(String),
}

/// Frames a `frames`-long input becomes at the new rate.
pub fn output_frames(frames: u64, from: u32, to: u32) -> u64 {
    let (from, to) = (u128::from(from.max(1)), u128::from(to));
    ((u128::from(frames) * to + from / 2) / from) as u64
}

/// One rubato resampler over a group of channels.
struct Group {
    fft: Fft<f32>,
    channels: usize,
    out: Vec<f32>,
}

impl Group {
    fn new(from: u32, to: u32, channels: usize) -> Result<Group, ResampleError> {
        let fft = Fft::<f32>::new(
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
        let out = vec![0.0; fft.output_frames_max() * channels];
        Ok(Group { fft, channels, out })
    }

    /// One call per entry of `partials` over consecutive `CHUNK`-frame pieces of `input`
    /// (interleaved, this group's channels); what they produce is appended to `out`.
    fn run(
        &mut self,
        input: &[f32],
        partials: &[Option<usize>],
        out: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        let err = |e: &dyn std::fmt::Display| ResampleError::Process(e.to_string());
        let step = CHUNK * self.channels;
        for (piece, partial) in input.chunks_exact(step).zip(partials) {
            let frames_out = self.fft.output_frames_next();
            let inp = InterleavedSlice::new(piece, self.channels, CHUNK).map_err(|e| err(&e))?;
            let mut outp = InterleavedSlice::new_mut(
                &mut self.out[..frames_out * self.channels],
                self.channels,
                frames_out,
            )
            .map_err(|e| err(&e))?;
            let indexing = partial.map(|n| Indexing {
                partial_len: Some(n),
                ..Default::default()
            });
            let (_, produced) = self
                .fft
                .process_into_buffer(&inp, &mut outp, indexing.as_ref())
                .map_err(|e| err(&e))?;
            out.extend_from_slice(&self.out[..produced * self.channels]);
        }
        Ok(())
    }
}

/// A batch for the helper: its channels' input, the calls, and a buffer for the output.
struct Batch {
    input: Vec<f32>,
    partials: Vec<Option<usize>>,
    out: Vec<f32>,
    result: Result<(), ResampleError>,
}

/// The second channel group, on its own thread (it inherits the render's nice level).
struct Helper {
    to: Option<Sender<Batch>>,
    from: Receiver<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The buffers travel with each batch and come back: no allocation per batch.
    spare: Option<Batch>,
}

impl Helper {
    fn spawn(mut group: Group) -> Result<Helper, ResampleError> {
        let (to, inbox) = bounded::<Batch>(1);
        let (outbox, from) = bounded::<Batch>(1);
        let thread = std::thread::Builder::new()
            .name("render-resample".into())
            .spawn(move || {
                for mut b in inbox {
                    b.out.clear();
                    b.result = group.run(&b.input, &b.partials, &mut b.out);
                    if outbox.send(b).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| ResampleError::Process(format!("starting a resampler thread: {e}")))?;
        let spare = Batch {
            input: Vec::new(),
            partials: Vec::new(),
            out: Vec::new(),
            result: Ok(()),
        };
        Ok(Helper {
            to: Some(to),
            from,
            thread: Some(thread),
            spare: Some(spare),
        })
    }

    fn send(&mut self, fill: impl FnOnce(&mut Batch)) -> Result<(), ResampleError> {
        let mut b = self.spare.take().ok_or_else(gone)?;
        fill(&mut b);
        self.to
            .as_ref()
            .ok_or_else(gone)?
            .send(b)
            .map_err(|_| gone())
    }

    fn receive(&mut self) -> Result<&Batch, ResampleError> {
        let b = self.from.recv().map_err(|_| gone())?;
        Ok(self.spare.insert(b))
    }
}

/// Channels `range` of interleaved `src` (`ch` channels) into `dst`, interleaved.
fn pick(src: &[f32], ch: usize, range: std::ops::Range<usize>, dst: &mut Vec<f32>) {
    let (n, w) = (src.len() / ch, range.len());
    dst.clear();
    dst.resize(n * w, 0.0);
    if w == 1 {
        // Stereo's case: a strided copy, not a slice copy per sample.
        for (d, frame) in dst.iter_mut().zip(src.chunks_exact(ch)) {
            *d = frame[range.start];
        }
    } else {
        for (d, frame) in dst.chunks_exact_mut(w).zip(src.chunks_exact(ch)) {
            d.copy_from_slice(&frame[range.clone()]);
        }
    }
}

/// Frames of `a` (`wa` channels) and `b` (`wb`) side by side into `out`.
fn weave(a: &[f32], b: &[f32], (wa, wb): (usize, usize), out: &mut Vec<f32>) {
    let n = a.len() / wa;
    out.clear();
    out.resize(n * (wa + wb), 0.0);
    if (wa, wb) == (1, 1) {
        for ((o, &x), &y) in out.chunks_exact_mut(2).zip(a).zip(b) {
            o[0] = x;
            o[1] = y;
        }
    } else {
        let frames = a.chunks_exact(wa).zip(b.chunks_exact(wb));
        for (o, (x, y)) in out.chunks_exact_mut(wa + wb).zip(frames) {
            o[..wa].copy_from_slice(x);
            o[wa..].copy_from_slice(y);
        }
    }
}

fn gone() -> ResampleError {
    ResampleError::Process("the resampler thread stopped".into())
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.to = None; // closes its inbox: the thread returns
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // it only runs rubato: a panic there is already reported
        }
    }
}

pub struct Resampler {
    /// The first `split` channels, resampled on the calling thread.
    a: Group,
    /// The other channels, when they run beside it.
    helper: Option<Helper>,
    split: usize,
    channels: usize,
    from: u32,
    to: u32,
    /// Input frames waiting for a full batch (all channels, interleaved).
    pending: Vec<f32>,
    a_in: Vec<f32>,
    a_out: Vec<f32>,
    /// A batch's output, all channels interleaved.
    out: Vec<f32>,
    /// Output frames still to drop (the resampler's delay).
    to_trim: usize,
    frames_in: u64,
    frames_out: u64,
}

impl Resampler {
    /// Splits the channels over two threads when there are two channels and two cores.
    pub fn new(from: u32, to: u32, channels: u16) -> Result<Resampler, ResampleError> {
        Resampler::with_threads(from, to, channels, super::pipeline::render_cores() >= 2)
    }

    pub fn with_threads(
        from: u32,
        to: u32,
        channels: u16,
        two: bool,
    ) -> Result<Resampler, ResampleError> {
        let channels = usize::from(channels.max(1));
        let split = if two && channels >= 2 {
            channels.div_ceil(2)
        } else {
            channels
        };
        let a = Group::new(from, to, split)?;
        let helper = match channels - split {
            0 => None,
            rest => Some(Helper::spawn(Group::new(from, to, rest)?)?),
        };
        Ok(Resampler {
            to_trim: a.fft.output_delay(),
            a,
            helper,
            split,
            channels,
            from,
            to,
            pending: Vec::with_capacity(BATCH_CALLS * CHUNK * channels),
            a_in: Vec::new(),
            a_out: Vec::new(),
            out: Vec::new(),
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
        let batch = BATCH_CALLS * CHUNK * self.channels;
        while !input.is_empty() {
            let take = (batch - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == batch {
                self.run(&[None; BATCH_CALLS], emit)?;
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
        let waiting = self.pending.len() / self.channels;
        let mut calls = vec![None; waiting / CHUNK];
        calls.push(Some(waiting % CHUNK));
        self.pending
            .resize(calls.len() * CHUNK * self.channels, 0.0);
        self.run(&calls, emit)?;
        // The delay, in whole calls, with room to spare: never loop forever.
        let per_call = self.a.fft.output_frames_next().max(1);
        let mut left = 4 + (self.to_trim + CHUNK) / per_call;
        while self.frames_out < target && left > 0 {
            left -= 1;
            self.pending.resize(CHUNK * self.channels, 0.0);
            self.run(&[Some(0)], emit)?;
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

    /// Resamples `pending` (one `CHUNK` per call), trims the delay, emits, and empties it.
    fn run<E: From<ResampleError>>(
        &mut self,
        partials: &[Option<usize>],
        emit: &mut impl FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.out.clear();
        match self.helper.as_mut() {
            None => self.a.run(&self.pending, partials, &mut self.out)?,
            Some(helper) => {
                let (ch, split) = (self.channels, self.split);
                let pending = &self.pending;
                helper.send(|b| {
                    pick(pending, ch, split..ch, &mut b.input);
                    b.partials.clear();
                    b.partials.extend_from_slice(partials);
                })?;
                pick(&self.pending, ch, 0..split, &mut self.a_in);
                self.a_out.clear();
                let mine = self.a.run(&self.a_in, partials, &mut self.a_out);
                let theirs = helper.receive()?; // always collect it, even after an error
                mine?;
                theirs
                    .result
                    .as_ref()
                    .map_err(|e| ResampleError::Process(e.to_string()))?;
                let rest = ch - split;
                if self.a_out.len() / split != theirs.out.len() / rest {
                    return Err(ResampleError::Process("channel groups out of step".into()).into());
                }
                weave(&self.a_out, &theirs.out, (split, rest), &mut self.out);
            }
        }
        self.pending.clear();
        let produced = self.out.len() / self.channels;
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
mod tests;
