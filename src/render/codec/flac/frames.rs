//! FLAC frames encoded on the box's cores: a small pool of workers, each taking a batch of
//! whole blocks and giving back the batch's frame bytes; the caller writes batches in the
//! order it sent them. At most two batches per worker are in flight, so memory stays
//! bounded; sample and byte buffers go back and forth instead of being allocated per batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::config;
use flacenc::error::Verified;
use flacenc::source::{Fill, FrameBuf};

use crate::render::codec::CodecError;

/// Blocks per batch: enough that a hand-off costs nothing against the encoding.
pub const BATCH_BLOCKS: usize = 16;
/// Workers at most, whatever the core count (a recorder has 2 to 4).
const MAX_WORKERS: usize = 4;

/// A batch to encode: interleaved samples of whole blocks (the stream's last may be short).
struct Job {
    seq: u64,
    first_frame: usize,
    samples: Vec<i32>,
    bytes: Vec<u8>,
}

/// An encoded batch: the frames' bytes back to back, each frame's (bytes, block frames).
pub struct Batch {
    pub bytes: Vec<u8>,
    pub frames: Vec<(u32, u16)>,
    samples: Vec<i32>,
}

type Outcome = (u64, Result<Batch, CodecError>);

pub struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Outcome>,
    workers: Vec<JoinHandle<()>>,
    sent: u64,
    next: u64,
    early: BTreeMap<u64, Batch>,
    spare_samples: Vec<Vec<i32>>,
    spare_bytes: Vec<Vec<u8>>,
    channels: usize,
    block: usize,
}

impl Pool {
    /// Starts the workers; they inherit the calling thread's (render) priority.
    pub fn new(
        cfg: Verified<config::Encoder>,
        info: StreamInfo,
        channels: usize,
        block: usize,
    ) -> Result<Pool, CodecError> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS);
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(n);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Outcome>(2 * n);
        let shared = Arc::new((cfg, info));
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, tx, shared) = (jobs_rx.clone(), done_tx.clone(), Arc::clone(&shared));
            let worker = std::thread::Builder::new()
                .name(format!("render-flac-{i}"))
                .spawn(move || work(&rx, &tx, &shared.0, &shared.1, channels, block))
                .map_err(CodecError::Io)?;
            workers.push(worker);
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            done: done_rx,
            workers,
            sent: 0,
            next: 0,
            early: BTreeMap::new(),
            spare_samples: Vec::new(),
            spare_bytes: Vec::new(),
            channels,
            block,
        })
    }

    /// Samples a batch holds.
    pub fn batch_len(&self) -> usize {
        BATCH_BLOCKS * self.block * self.channels
    }

    /// An empty sample buffer to fill (recycled when one came back).
    pub fn buffer(&mut self) -> Vec<i32> {
        let len = self.batch_len();
        self.spare_samples
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(len))
    }

    /// Queues `samples` as frames from `first_frame` on; returns the batches now due, in
    /// order, once too many are in flight (`f` writes each and gets its buffers back).
    pub fn send(
        &mut self,
        first_frame: usize,
        samples: Vec<i32>,
        f: &mut dyn FnMut(&Batch) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let bytes = self.spare_bytes.pop().unwrap_or_default();
        let job = Job {
            seq: self.sent,
            first_frame,
            samples,
            bytes,
        };
        let gone = || CodecError::Encode("FLAC workers stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        self.sent += 1;
        while self.sent - self.next > 2 * self.workers.len() as u64 {
            self.write_next(f)?;
        }
        Ok(())
    }

    /// Waits for every batch sent and writes them in order.
    pub fn drain(
        &mut self,
        f: &mut dyn FnMut(&Batch) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        while self.next < self.sent {
            self.write_next(f)?;
        }
        Ok(())
    }

    fn write_next(
        &mut self,
        f: &mut dyn FnMut(&Batch) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        while !self.early.contains_key(&self.next) {
            let (seq, outcome) = self
                .done
                .recv()
                .map_err(|_| CodecError::Encode("a FLAC worker stopped".into()))?;
            self.early.insert(seq, outcome?);
        }
        let Some(mut batch) = self.early.remove(&self.next) else {
            return Ok(()); // present: checked just above
        };
        self.next += 1;
        f(&batch)?;
        batch.samples.clear();
        batch.bytes.clear();
        self.spare_samples.push(batch.samples);
        self.spare_bytes.push(batch.bytes);
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None; // workers see the channel closed and end
        while self.done.recv().is_ok() {}
        for w in self.workers.drain(..) {
            let _ = w.join(); // a panicked worker already reported through `done`
        }
    }
}

fn work(
    jobs: &Receiver<Job>,
    done: &Sender<Outcome>,
    cfg: &Verified<config::Encoder>,
    info: &StreamInfo,
    channels: usize,
    block: usize,
) {
    let mut fb = match FrameBuf::with_size(channels, block) {
        Ok(fb) => fb,
        Err(e) => {
            let _ = done.send((0, Err(CodecError::Encode(e.to_string()))));
            return;
        }
    };
    let mut sink = ByteSink::new();
    for job in jobs {
        let seq = job.seq;
        let outcome = encode(job, cfg, info, &mut fb, &mut sink, channels, block);
        if done.send((seq, outcome)).is_err() {
            return;
        }
    }
}

fn encode(
    job: Job,
    cfg: &Verified<config::Encoder>,
    info: &StreamInfo,
    fb: &mut FrameBuf,
    sink: &mut ByteSink,
    channels: usize,
    block: usize,
) -> Result<Batch, CodecError> {
    let err = |e: &dyn std::fmt::Display| CodecError::Encode(e.to_string());
    let mut batch = Batch {
        bytes: job.bytes,
        frames: Vec::with_capacity(BATCH_BLOCKS),
        samples: job.samples,
    };
    for (i, samples) in batch.samples.chunks(block * channels).enumerate() {
        fb.fill_interleaved(samples).map_err(|e| err(&e))?;
        let frame = flacenc::encode_fixed_size_frame(cfg, fb, job.first_frame + i, info)
            .map_err(|e| err(&e))?;
        sink.clear();
        frame.write(sink).map_err(|e| err(&e))?;
        batch.bytes.extend_from_slice(sink.as_slice());
        let len = u32::try_from(sink.as_slice().len()).map_err(|e| err(&e))?;
        batch.frames.push((len, (samples.len() / channels) as u16));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flacenc::error::Verify;

    #[test]
    fn batches_come_back_in_order_and_equal_a_serial_encode() {
        let (ch, block) = (2, 256);
        let cfg = super::super::encoder_config(block).into_verified().unwrap();
        let info = StreamInfo::new(48_000, ch, 16).unwrap();
        // A chirp in each channel, distinct, over 37.5 batches: many more than in flight.
        let frames = block * (BATCH_BLOCKS * 37 + 8) + 100;
        let signal: Vec<i32> = (0..frames * ch)
            .map(|i| {
                let t = (i / ch) as f64;
                let f = 0.001 + t * 1e-7 + (i % ch) as f64 * 0.01;
                ((t * f).sin() * 12_000.0) as i32
            })
            .collect();
        let mut serial = Vec::new();
        let mut fb = FrameBuf::with_size(ch, block).unwrap();
        let mut sink = ByteSink::new();
        for (n, s) in signal.chunks(block * ch).enumerate() {
            fb.fill_interleaved(s).unwrap();
            let frame = flacenc::encode_fixed_size_frame(&cfg, &fb, n, &info).unwrap();
            sink.clear();
            frame.write(&mut sink).unwrap();
            serial.extend_from_slice(sink.as_slice());
        }

        let mut pool = Pool::new(cfg, info, ch, block).unwrap();
        let mut out = Vec::new();
        let mut counted = 0usize;
        let mut write = |b: &Batch| {
            out.extend_from_slice(&b.bytes);
            counted += b.frames.iter().map(|&(_, f)| usize::from(f)).sum::<usize>();
            Ok(())
        };
        let mut first = 0;
        for s in signal.chunks(pool.batch_len()) {
            let mut buf = pool.buffer();
            buf.extend_from_slice(s);
            pool.send(first, buf, &mut write).unwrap();
            first += s.len().div_ceil(block * ch);
        }
        pool.drain(&mut write).unwrap();
        assert_eq!(counted, frames);
        assert!(out == serial, "pooled bytes differ from the serial encode");
    }

    type Pair = fn(i32, i32) -> [i32; 2];

    /// One block of the channels `pair(common, own)` gives (`common`: a tone with noise
    /// to share, `own`: quieter noise of its own), encoded with the estimated stereo mode
    /// and with flacenc's search over all four: (assignment, estimated size, searched).
    fn both_ways(pair: impl Fn(i32, i32) -> [i32; 2]) -> (String, usize, usize) {
        let block = 4096;
        let mut seed = 7u32;
        let mut noise = move |amp: i32| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 16) as i32 - 32_768) * amp / 32_768
        };
        let signal: Vec<i32> = (0..block)
            .flat_map(|t| {
                let tone = ((t as f64 * 0.031).sin() * 9000.0) as i32;
                let common = tone + noise(2000);
                pair(common, noise(1000))
            })
            .collect();
        let info = StreamInfo::new(48_000, 2, 16).unwrap();
        let mut fb = FrameBuf::with_size(2, block).unwrap();
        fb.fill_interleaved(&signal).unwrap();
        let size = |estimate: bool| {
            let mut cfg = super::super::encoder_config(block);
            cfg.stereo_coding.estimate = estimate;
            let cfg = cfg.into_verified().unwrap();
            let frame = flacenc::encode_fixed_size_frame(&cfg, &fb, 0, &info).unwrap();
            let mut sink = ByteSink::new();
            frame.write(&mut sink).unwrap();
            let mode = format!("{:?}", frame.header().channel_assignment());
            (mode, sink.as_slice().len())
        };
        let ((mode, estimated), (_, searched)) = (size(true), size(false));
        (mode, estimated, searched)
    }

    #[test]
    fn estimated_stereo_mode_fits_the_channels_and_costs_little() {
        let cases: [(&str, Pair); 4] = [
            ("LeftSide", |c, n| [c, c + n]), // the right has more of its own
            ("MidSide", |c, n| [c + n / 2, c - n / 2]), // each its half, opposed
            ("RightSide", |c, n| [c + n, c]),
            ("Independent", |c, n| [c, n * 8]), // nothing shared
        ];
        for (want, pair) in cases {
            let (mode, estimated, searched) = both_ways(pair);
            assert!(mode.starts_with(want), "{want}: picked {mode}");
            assert!(
                estimated as f64 <= searched as f64 * 1.02,
                "{want}: {estimated} bytes estimated against {searched} searched"
            );
        }
    }
}
