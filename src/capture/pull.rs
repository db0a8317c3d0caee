//! The capture loop shared by every backend that reads its device (alsa, synth, file):
//! read a period, push it into the ring, repeat. Callback backends (cpal) push from their
//! own callback instead.

use std::thread::JoinHandle;

use super::rt::{self, RtPhase};
use super::{CaptureEnd, CaptureHandle, FrameSink, GapCause, StopFlag};

/// What one read from a device gave.
#[derive(Debug)]
pub enum Read {
    /// `n` whole frames were written to the start of the buffer.
    Frames(usize),
    /// The device overran and was recovered in place; about `lost_frames` were dropped.
    Overrun { lost_frames: u64 },
    /// The source delivered nothing for `frames` frames of its time but keeps running.
    DropOut { frames: u64 },
    /// Nothing arrived within the read's bounded wait: check the stop flag and read again.
    Idle,
    /// The stream is over.
    End(CaptureEnd),
}

/// A device read by the capture thread. `read` must return within about a period (or a
/// bounded poll timeout), never allocate or lock in the steady state, and never log.
pub trait PullSource: Send + 'static {
    fn read(&mut self, buf: &mut [u8]) -> Read;

    /// After a stop: frames the device already holds, without waiting (`Idle` when none).
    /// A source that wakes every few periods would otherwise leave them behind.
    fn read_held(&mut self, _buf: &mut [u8]) -> Read {
        Read::Idle
    }

    /// What wakes a blocked `read` when a stop is asked for, if the source can be woken;
    /// without one the stop is seen at the next read's return.
    fn stop_waker(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        None
    }
}

/// Most reads [`run_loop`] makes after a stop to take what the device holds (each takes up
/// to the read size; a device buffer is a few of those).
const HELD_READS: u32 = 16;

/// Spawns the named real-time capture thread that drives `source` into `sink`.
pub fn spawn(
    name: &str,
    mut source: impl PullSource,
    mut sink: FrameSink,
    period_frames: u32,
) -> std::io::Result<CaptureHandle> {
    let stop = StopFlag::new();
    let thread_stop = stop.clone();
    let waker = source.stop_waker().map(|w| stop.on_stop(w));
    // Dropped when the thread ends, however it ends: the stopper's wait returns then.
    let (done, finished) = crossbeam_channel::bounded::<()>(0);
    let thread: JoinHandle<()> = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let _done = done;
        let _waker = waker;
        if !rt::request_realtime_priority(rt::CAPTURE_RT_PRIORITY) {
            log::warn!(
                "capture: SCHED_FIFO {} refused (needs CAP_SYS_NICE or RLIMIT_RTPRIO); running at normal priority",
                rt::CAPTURE_RT_PRIORITY
            );
        }
        // Allocated once, before the loop.
        let mut buf = vec![0u8; period_frames as usize * sink.bytes_per_frame()];
        let end = run_loop(&mut source, &mut sink, &mut buf, &thread_stop);
        sink.end(end);
        drop(source); // closes the device before the stopper is told the thread is done
    })?;
    Ok(CaptureHandle::new(stop, thread).with_finished(finished))
}

fn run_loop(
    source: &mut impl PullSource,
    sink: &mut FrameSink,
    buf: &mut [u8],
    stop: &StopFlag,
) -> CaptureEnd {
    let bpf = sink.bytes_per_frame();
    let mut periods = 0u32;
    let end = loop {
        if stop.is_stopped() {
            break take_held(source, sink, buf);
        }
        match source.read(buf) {
            Read::Frames(n) => sink.push(&buf[..n * bpf]),
            Read::Overrun { lost_frames } => {
                sink.device_dropped(lost_frames, GapCause::DeviceOverrun)
            }
            Read::DropOut { frames } => sink.device_dropped(frames, GapCause::DropOut),
            Read::Idle => {}
            Read::End(end) => break end,
        }
        if periods < rt::WARMUP_PERIODS {
            periods += 1;
            if periods == rt::WARMUP_PERIODS {
                rt::steady_state(RtPhase::SteadyEnter);
            }
        }
    };
    if periods >= rt::WARMUP_PERIODS {
        rt::steady_state(RtPhase::SteadyExit);
    }
    end
}

/// Pushes what the device holds at the stop (audio captured before it was asked for).
fn take_held(source: &mut impl PullSource, sink: &mut FrameSink, buf: &mut [u8]) -> CaptureEnd {
    let bpf = sink.bytes_per_frame();
    for _ in 0..HELD_READS {
        match source.read_held(buf) {
            Read::Frames(n) => {
                sink.push(&buf[..n * bpf]);
                if n * bpf < buf.len() / bpf * bpf {
                    break; // less than asked: the device is empty
                }
            }
            Read::Overrun { lost_frames } => {
                sink.device_dropped(lost_frames, GapCause::DeviceOverrun)
            }
            Read::End(end) => return end,
            Read::DropOut { .. } | Read::Idle => break,
        }
    }
    CaptureEnd::Stopped
}
