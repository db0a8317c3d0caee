//! The producer end of the real-time path. A capture thread owns one [`FrameSink`] and
//! calls only [`FrameSink::push`] / [`FrameSink::device_dropped`] in its steady state:
//! both are wait-free (atomics and a `try_send` into a pre-allocated channel), never
//! allocate and never log.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringbuf::traits::{Consumer as _, Observer as _, Producer as _, Split as _};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::core::format::StreamSpec;

/// Why frames are missing from the ring's stream at some position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The device overran its own buffer (ALSA `EPIPE`): it dropped frames before we read them.
    DeviceOverrun,
    /// The device delivered frames but the ring was full (the writer fell behind).
    RingFull,
    /// The source delivered no audio for a while but kept running (a scripted drop-out).
    DropOut,
}

/// How a capture stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureEnd {
    /// We asked it to stop.
    Stopped,
    /// A finite source (a replayed file) ran out.
    SourceExhausted,
    /// The device went away (unplugged, `ENODEV`, disconnected); reopening later may work.
    DeviceGone(String),
    /// The device failed in a way reopening is unlikely to fix.
    Failed(String),
}

/// Out-of-band news from the capture thread, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureEvent {
    /// `frames` frames of device time are missing just before ring frame `at`.
    Gap {
        at: u64,
        frames: u64,
        cause: GapCause,
    },
    /// The stream ended after ring frame `at` (every earlier frame is in the ring).
    Ended { at: u64, end: CaptureEnd },
}

/// Counters shared by the capture thread (writer) and everyone else (readers).
#[derive(Debug)]
pub struct CaptureStats {
    origin: Instant,
    /// Frames pushed into the ring since the stream started.
    pub frames_pushed: AtomicU64,
    /// Frames lost to device overruns and a full ring.
    pub frames_dropped: AtomicU64,
    /// Number of device overruns recovered in place.
    pub overruns: AtomicU64,
    /// Gap events that could not be queued and were merged into a later one.
    pub events_coalesced: AtomicU64,
    /// Nanoseconds since `origin` when frames last arrived: a stall watchdog reads this.
    last_frames_ns: AtomicU64,
    /// Seqlock over (`frames_pushed`, `last_frames_ns`): odd while a push updates them.
    push_seq: AtomicU64,
    /// Set once the capture thread has left its loop.
    pub ended: AtomicBool,
    /// The consumer's thread, unparked when the stream ends (never for frames: the
    /// consumer wakes on its own deadlines, so the steady state makes no syscall).
    consumer: std::sync::OnceLock<std::thread::Thread>,
}

impl CaptureStats {
    fn new() -> Self {
        CaptureStats {
            origin: Instant::now(),
            frames_pushed: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            events_coalesced: AtomicU64::new(0),
            last_frames_ns: AtomicU64::new(0),
            push_seq: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            consumer: std::sync::OnceLock::new(),
        }
    }

    /// Marks the stream ended and wakes the consumer if it is parked.
    fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
        if let Some(t) = self.consumer.get() {
            t.unpark();
        }
    }

    /// When frames last arrived (the stream's start if none has).
    pub fn last_frames_at(&self) -> Instant {
        self.origin + std::time::Duration::from_nanos(self.last_frames_ns.load(Ordering::Relaxed))
    }

    /// Frames pushed so far and when the last of them arrived, read consistently: the
    /// pair dates the stream (frame N was captured at T), unlike "now", which lags by
    /// however long the reader took to look.
    pub fn pushed_at(&self) -> (u64, Instant) {
        loop {
            let before = self.push_seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let frames = self.frames_pushed.load(Ordering::Acquire);
            let ns = self.last_frames_ns.load(Ordering::Acquire);
            if self.push_seq.load(Ordering::Acquire) == before {
                return (frames, self.origin + std::time::Duration::from_nanos(ns));
            }
        }
    }
}

/// Capacity of the event channel; a gap that does not fit is merged into the next one.
const EVENT_CAPACITY: usize = 256;

/// The capture thread's handle on the ring.
pub struct FrameSink {
    prod: HeapProd<u8>,
    events: Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
    bytes_per_frame: usize,
    /// Frames pushed so far (the ring stream position).
    pos: u64,
    /// A gap we could not queue yet: retried on every push.
    pending_gap: Option<(u64, u64, GapCause)>,
}

/// The consumer end, for the segment writer.
pub struct FrameSource {
    pub cons: HeapCons<u8>,
    pub events: Receiver<CaptureEvent>,
    pub stats: Arc<CaptureStats>,
    pub spec: StreamSpec,
}

impl FrameSource {
    /// Makes the calling thread the one the stream's end unparks (`std::thread::park`).
    pub fn wake_me_at_the_end(&self) {
        let _ = self.stats.consumer.set(std::thread::current());
    }

    /// Whole frames waiting in the ring.
    pub fn frames_available(&self) -> usize {
        self.cons.occupied_len() / self.spec.bytes_per_frame()
    }

    /// Up to `max_frames` whole frames waiting in the ring, read in place: its one or two
    /// contiguous runs, each of whole frames (the ring holds a whole number of frames and
    /// only whole frames are pushed). Follow with [`Self::consume_frames`]: the writer
    /// meters and writes straight from the ring, with no copy out of it.
    pub fn peek_frames(&self, max_frames: usize) -> (&[u8], &[u8]) {
        let want = self.frames_available().min(max_frames) * self.spec.bytes_per_frame();
        let (first, second) = self.cons.as_slices();
        let in_first = first.len().min(want);
        (
            &first[..in_first],
            &second[..(want - in_first).min(second.len())],
        )
    }

    /// Frees `frames` frames at the ring's read end (those [`Self::peek_frames`] gave).
    pub fn consume_frames(&mut self, frames: usize) {
        let bytes = frames * self.spec.bytes_per_frame();
        let skipped = self.cons.skip(bytes);
        debug_assert_eq!(skipped, bytes);
    }

    /// Pops up to `max_frames` whole frames into `buf` (resized as needed); returns frames.
    pub fn pop_frames(&mut self, buf: &mut Vec<u8>, max_frames: usize) -> usize {
        let bpf = self.spec.bytes_per_frame();
        let frames = self.frames_available().min(max_frames);
        buf.resize(frames * bpf, 0);
        let got = self.cons.pop_slice(buf);
        debug_assert_eq!(got, frames * bpf);
        frames
    }
}

/// Fewest frames a ring holds, whatever the budget.
const MIN_RING_FRAMES: usize = 1024;

/// Frames of ring for `seconds` of `spec`, cut to fit `max_bytes` (pure): memory stays
/// flat as channels grow, and the ring's seconds shrink instead (the writer wakes on the
/// ring's fill mark, so a shorter ring only means earlier wake-ups).
pub fn ring_frames(spec: StreamSpec, seconds: f64, max_bytes: usize) -> usize {
    let bpf = spec.bytes_per_frame().max(1);
    let wanted = (f64::from(spec.rate) * seconds).ceil() as usize;
    wanted.min(max_bytes / bpf).max(MIN_RING_FRAMES)
}

/// A ring sized by [`ring_frames`], split into the capture and writer ends.
pub fn ring(spec: StreamSpec, seconds: f64, max_bytes: usize) -> (FrameSink, FrameSource) {
    let bpf = spec.bytes_per_frame();
    let frames = ring_frames(spec, seconds, max_bytes);
    let (prod, cons) = HeapRb::<u8>::new(frames * bpf).split();
    let (tx, rx) = crossbeam_channel::bounded(EVENT_CAPACITY);
    let stats = Arc::new(CaptureStats::new());
    let sink = FrameSink {
        prod,
        events: tx,
        stats: stats.clone(),
        bytes_per_frame: bpf,
        pos: 0,
        pending_gap: None,
    };
    (
        sink,
        FrameSource {
            cons,
            events: rx,
            stats,
            spec,
        },
    )
}

impl FrameSink {
    pub fn bytes_per_frame(&self) -> usize {
        self.bytes_per_frame
    }

    pub fn stats(&self) -> &Arc<CaptureStats> {
        &self.stats
    }

    /// Frames pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Pushes whole frames from `bytes` (a trailing partial frame is ignored). Frames
    /// that do not fit are dropped and reported as a `RingFull` gap. Never blocks.
    pub fn push(&mut self, bytes: &[u8]) {
        let frames = bytes.len() / self.bytes_per_frame;
        if frames == 0 {
            return;
        }
        self.flush_pending_gap();
        let want = frames * self.bytes_per_frame;
        let room = self.prod.vacant_len() / self.bytes_per_frame * self.bytes_per_frame;
        let n = self.prod.push_slice(&bytes[..want.min(room)]);
        let pushed = (n / self.bytes_per_frame) as u64;
        self.pos += pushed;
        let now_ns = self.stats.origin.elapsed().as_nanos() as u64;
        self.stats.push_seq.fetch_add(1, Ordering::AcqRel);
        self.stats.frames_pushed.store(self.pos, Ordering::Release);
        self.stats.last_frames_ns.store(now_ns, Ordering::Release);
        self.stats.push_seq.fetch_add(1, Ordering::AcqRel);
        let lost = frames as u64 - pushed;
        if lost > 0 {
            self.gap(lost, GapCause::RingFull);
        }
    }

    /// Records `frames` frames of device time that never reached us (an overrun, a
    /// drop-out). They become a gap at the current position.
    pub fn device_dropped(&mut self, frames: u64, cause: GapCause) {
        if cause == GapCause::DeviceOverrun {
            self.stats.overruns.fetch_add(1, Ordering::Relaxed);
        }
        self.gap(frames, cause);
    }

    fn gap(&mut self, frames: u64, cause: GapCause) {
        self.stats
            .frames_dropped
            .fetch_add(frames, Ordering::Relaxed);
        match &mut self.pending_gap {
            // Cannot queue more: fold into the pending one (its position is then approximate).
            Some((_, pending, _)) => {
                *pending += frames;
                self.stats.events_coalesced.fetch_add(1, Ordering::Relaxed);
            }
            None => self.pending_gap = Some((self.pos, frames, cause)),
        }
        self.flush_pending_gap();
    }

    fn flush_pending_gap(&mut self) {
        if let Some((at, frames, cause)) = self.pending_gap {
            match self
                .events
                .try_send(CaptureEvent::Gap { at, frames, cause })
            {
                Ok(()) | Err(TrySendError::Disconnected(_)) => self.pending_gap = None,
                Err(TrySendError::Full(_)) => {}
            }
        }
    }

    /// Ends the stream. Runs once, off the steady-state path, so it may block briefly.
    pub fn end(mut self, end: CaptureEnd) {
        if let Some((at, frames, cause)) = self.pending_gap.take() {
            let _ = self.events.send_timeout(
                CaptureEvent::Gap { at, frames, cause },
                std::time::Duration::from_secs(1),
            );
        }
        let _ = self.events.send_timeout(
            CaptureEvent::Ended { at: self.pos, end },
            std::time::Duration::from_secs(1),
        );
        self.stats.mark_ended();
    }
}

/// Lets a callback-driven backend (cpal) end the stream from its owner thread after the
/// callback, which owns the [`FrameSink`], has been dropped.
pub struct EndNotifier {
    events: Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
}

impl FrameSink {
    pub fn end_notifier(&self) -> EndNotifier {
        EndNotifier {
            events: self.events.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl EndNotifier {
    pub fn end(self, end: CaptureEnd) {
        let at = self.stats.frames_pushed.load(Ordering::Acquire);
        let _ = self.events.send_timeout(
            CaptureEvent::Ended { at, end },
            std::time::Duration::from_secs(1),
        );
        self.stats.mark_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::SampleFormat;

    fn spec() -> StreamSpec {
        StreamSpec {
            format: SampleFormat::S16Le,
            rate: 1000,
            channels: 2,
        }
    }

    #[test]
    fn pushes_whole_frames_and_reports_ring_full_as_a_gap() {
        let (mut sink, mut src) = ring(spec(), 1.0, usize::MAX); // 1024 frames minimum
        let period = vec![7u8; 4 * 1000];
        sink.push(&period);
        sink.push(&period); // only 24 frames fit
        assert_eq!(sink.position(), 1024);
        assert_eq!(
            src.events.try_recv().unwrap(),
            CaptureEvent::Gap {
                at: 1024,
                frames: 976,
                cause: GapCause::RingFull
            }
        );
        let mut buf = Vec::new();
        assert_eq!(src.pop_frames(&mut buf, usize::MAX), 1024);
        sink.end(CaptureEnd::Stopped);
        assert_eq!(
            src.events.try_recv().unwrap(),
            CaptureEvent::Ended {
                at: 1024,
                end: CaptureEnd::Stopped
            }
        );
    }

    #[test]
    fn the_ring_is_cut_to_its_byte_budget() {
        let mib = 1024 * 1024;
        let spec = |format, rate, channels| StreamSpec {
            format,
            rate,
            channels,
        };
        // Stereo S16 at 48 kHz: 10 s is 1.9 MB, well under the budget.
        let stereo = spec(SampleFormat::S16Le, 48_000, 2);
        assert_eq!(ring_frames(stereo, 10.0, 64 * mib), 480_000);
        // 128 ch x 96 kHz x S32 is 49 MB/s: the budget holds 1.37 s, never more bytes.
        for channels in [64, 128, 256] {
            let wide = spec(SampleFormat::S32Le, 96_000, channels);
            let frames = ring_frames(wide, 10.0, 64 * mib);
            let bytes = frames * wide.bytes_per_frame();
            assert!(bytes <= 64 * mib, "{channels} ch: {bytes} B");
            assert!(
                bytes > 64 * mib - wide.bytes_per_frame(),
                "{channels} ch: {bytes} B"
            );
        }
        let wide = spec(SampleFormat::S32Le, 96_000, 128);
        let seconds = ring_frames(wide, 10.0, 64 * mib) as f64 / 96_000.0;
        assert!((seconds - 1.365).abs() < 0.001, "{seconds}");
        // A budget below the floor still leaves a working ring.
        assert_eq!(ring_frames(wide, 10.0, 1), 1024);
    }

    #[test]
    fn partial_trailing_frame_is_ignored() {
        let (mut sink, src) = ring(spec(), 1.0, usize::MAX);
        sink.push(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(sink.position(), 1);
        assert_eq!(src.frames_available(), 1);
    }

    #[test]
    fn frames_read_in_place_come_in_order_as_whole_frames_across_the_wrap() {
        let (mut sink, mut src) = ring(spec(), 1.0, usize::MAX); // 1024 frames of 4 bytes
        let frame = |i: u32| (i as u16).to_le_bytes().repeat(2);
        let frames = |r: std::ops::Range<u32>| r.flat_map(frame).collect::<Vec<u8>>();
        sink.push(&frames(0..1000));
        let (first, second) = src.peek_frames(600);
        assert_eq!((first.len(), second.len()), (2400, 0));
        src.consume_frames(600);
        sink.push(&frames(1000..1500)); // 400 left + 500: wraps after 1024 - 1000 = 24 more
        let (first, second) = src.peek_frames(usize::MAX);
        assert_eq!(
            (first.len() % 4, second.len() % 4),
            (0, 0),
            "whole frames each"
        );
        assert_eq!([first, second].concat(), frames(600..1500));
        // Asked for fewer than the first run holds: only those.
        let (first, second) = src.peek_frames(10);
        assert_eq!([first, second].concat(), frames(600..610));
        src.consume_frames(900);
        assert_eq!(src.frames_available(), 0);
    }
}
