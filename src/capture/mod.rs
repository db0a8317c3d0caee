//! Capture backends behind one interface, and the real-time path they feed.
//!
//! A backend opens a device and starts a real-time thread that moves periods from the
//! device into a [`FrameSink`] (the producer end of the SPSC ring). Everything a backend
//! can say about its device is one of a few typed outcomes: [`OpenError`] when starting,
//! [`CaptureEvent`]s (gaps, end) while running.

pub mod alsa;
pub mod cpal;
pub mod devices;
pub mod file;
pub mod hotplug;
pub mod pacer;
pub mod pull;
pub mod rt;
pub mod sink;
pub mod stop;
pub mod synth;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use sink::{
    CaptureEnd, CaptureEvent, CaptureStats, EndNotifier, FrameSink, FrameSource, GapCause, ring,
};
pub use stop::{Doorbell, StopFlag, StopHook};

use crate::core::format::StreamSpec;

/// What to open and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureRequest {
    /// Backend-specific device name (ALSA PCM name, cpal device name, synth script, WAV path).
    pub device: String,
    pub spec: StreamSpec,
    /// Frames per device period (the unit the capture thread reads).
    pub period_frames: u32,
    /// Frames of device buffer (ALSA); several periods.
    pub buffer_frames: u32,
}

impl CaptureRequest {
    pub fn new(device: impl Into<String>, spec: StreamSpec) -> Self {
        // ~100 ms periods (about what arecord negotiates: ~10 wake-ups a second).
        let period_frames = (spec.rate / 10).max(32);
        CaptureRequest {
            device: device.into(),
            spec,
            period_frames,
            buffer_frames: buffer_frames(spec, period_frames),
        }
    }
}

/// A device buffer of at least a second and four periods: wide margin against
/// scheduling hiccups at any period.
pub fn buffer_frames(spec: StreamSpec, period_frames: u32) -> u32 {
    period_frames.saturating_mul(4).max(spec.rate)
}

/// Why a stream could not start. Each variant says what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No device by that name: check the name (`edgerec devices`) or plug it in.
    #[error("no such capture device {device:?}: {detail}")]
    NoSuchDevice { device: String, detail: String },
    /// Someone else holds the device: retrying later may work.
    #[error("capture device {device:?} is busy: {detail}")]
    Busy { device: String, detail: String },
    /// The device cannot deliver the requested format, rate or channel count.
    #[error("capture device {device:?} does not support {wanted}: {detail}")]
    Unsupported {
        device: String,
        wanted: String,
        detail: String,
    },
    /// Anything else the device or driver refused.
    #[error("capture device {device:?} failed to open: {detail}")]
    Failed { device: String, detail: String },
}

/// A running capture stream. Dropping it without [`CaptureHandle::stop`] detaches the thread.
pub struct CaptureHandle {
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends, so a stop waits without polling.
    finished: Option<crossbeam_channel::Receiver<()>>,
}

/// The capture thread did not leave within its deadline (a wedged driver call).
#[derive(Debug, thiserror::Error)]
#[error("capture thread did not stop within {0:?}")]
pub struct StopTimeout(pub Duration);

impl CaptureHandle {
    pub fn new(stop: StopFlag, thread: JoinHandle<()>) -> Self {
        CaptureHandle {
            stop,
            thread: Some(thread),
            finished: None,
        }
    }

    /// `finished` disconnects when the thread ends (it holds the only sender).
    pub fn with_finished(mut self, finished: crossbeam_channel::Receiver<()>) -> Self {
        self.finished = Some(finished);
        self
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Asks the thread to stop and waits up to `deadline`. On timeout the thread is left
    /// detached (it holds no lock anyone else needs) and the caller carries on.
    pub fn stop(mut self, deadline: Duration) -> Result<(), StopTimeout> {
        self.stop.stop();
        let until = Instant::now() + deadline;
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        if let Some(finished) = &self.finished {
            if finished.recv_deadline(until) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                return Err(StopTimeout(deadline));
            }
            let _ = thread.join(); // past its last drop but the sender's
            return Ok(());
        }
        while !thread.is_finished() {
            if Instant::now() >= until {
                return Err(StopTimeout(deadline));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
        Ok(())
    }
}

/// Starts a capture stream feeding `sink`.
pub type StartFn = fn(&CaptureRequest, FrameSink) -> Result<CaptureHandle, OpenError>;

/// Every backend, by the name used in configs and on the command line.
pub const BACKENDS: &[(&str, StartFn)] = &[
    ("alsa", alsa::start),
    ("cpal", cpal::start),
    ("synth", synth::start),
    ("file", file::start),
];

/// Looks a backend up by name.
pub fn backend(name: &str) -> Option<StartFn> {
    BACKENDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

pub fn backend_names() -> Vec<&'static str> {
    BACKENDS.iter().map(|(n, _)| *n).collect()
}
