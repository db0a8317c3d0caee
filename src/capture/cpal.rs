//! The `cpal` backend: portable capture through cpal's callback API.
//!
//! cpal's `Stream` may be `!Send`, so it lives on an owner thread (`edgerec-capture-cpal`)
//! that builds it, reports the result to [`start`] (bounded wait), then polls every 10 ms
//! for the stop flag or a "device gone" verdict from the error callback, drops the stream
//! and ends the capture through an [`EndNotifier`](super::EndNotifier).
//!
//! The data callback (cpal's real-time thread) only pushes the callback's bytes into the
//! [`FrameSink`]: wait-free, no allocation. Device loss arrives as one
//! `DeviceNotAvailable`; under PulseAudio it is a storm of backend errors instead, so more
//! than [`STORM_ERRORS`] errors within a second count as the device gone too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, ErrorKind, StreamConfig};
use crossbeam_channel::RecvTimeoutError;

use super::rt::{self, RtPhase};
use super::{CaptureEnd, CaptureHandle, CaptureRequest, FrameSink, GapCause, OpenError, StopFlag};
use crate::core::format::SampleFormat;

/// Name of the thread that owns the cpal stream.
pub const THREAD_NAME: &str = "edgerec-capture-cpal";

/// How long [`start`] waits for the owner thread to build and start the stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Passed to cpal as the stream's timeout (its ALSA host uses it as the poll timeout).
const STREAM_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest the owner thread parks between looks (a stop and a verdict wake it at once).
const OWNER_LOOK: Duration = Duration::from_secs(1);
/// More errors than this within [`STORM_WINDOW`] mean the device is gone.
pub const STORM_ERRORS: u32 = 50;
const STORM_WINDOW: Duration = Duration::from_secs(1);

/// The cpal sample format carrying exactly our format's bytes, if there is one.
pub fn cpal_format(f: SampleFormat) -> Option<cpal::SampleFormat> {
    match f {
        SampleFormat::S16Le => Some(cpal::SampleFormat::I16),
        // cpal's I24 is ALSA S24_LE: 24 bits low-justified in 4 bytes, as ours.
        SampleFormat::S24Le => Some(cpal::SampleFormat::I24),
        SampleFormat::S32Le => Some(cpal::SampleFormat::I32),
        SampleFormat::FloatLe => Some(cpal::SampleFormat::F32),
        SampleFormat::S24Le3 => None,
    }
}

/// Our format for a cpal sample format, if we have one.
pub fn our_format(f: cpal::SampleFormat) -> Option<SampleFormat> {
    SampleFormat::ALL
        .into_iter()
        .find(|ours| cpal_format(*ours) == Some(f))
}

/// Why the error callback decided the stream is over (stored in [`Shared::gone`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Gone {
    No = 0,
    NotAvailable = 1,
    Invalidated = 2,
    HostUnavailable = 3,
    Storm = 4,
}

impl Gone {
    fn from_u8(v: u8) -> Gone {
        match v {
            1 => Gone::NotAvailable,
            2 => Gone::Invalidated,
            3 => Gone::HostUnavailable,
            4 => Gone::Storm,
            _ => Gone::No,
        }
    }

    fn detail(self) -> String {
        match self {
            Gone::No => "stopped".into(),
            Gone::NotAvailable => "cpal: DeviceNotAvailable".into(),
            Gone::Invalidated => "cpal: StreamInvalidated".into(),
            Gone::HostUnavailable => "cpal: HostUnavailable".into(),
            Gone::Storm => {
                format!("cpal: error storm (more than {STORM_ERRORS} errors within 1 s)")
            }
        }
    }
}

/// State the callbacks and the owner thread share: atomics, and the owner's doorbell
/// (rung by the error callback, never by the data callback).
#[derive(Default)]
struct Shared {
    gone: AtomicU8,
    wake: super::Doorbell,
    /// Errors reported by cpal since the start (every kind).
    errors: AtomicU64,
    /// Set by the error callback on an xrun; the data callback reports the gap.
    xrun: AtomicBool,
}

/// Finds the device, builds and starts the stream on the owner thread, and returns once it
/// runs (or with the reason it could not).
pub fn start(req: &CaptureRequest, sink: FrameSink) -> Result<CaptureHandle, OpenError> {
    let device = req.device.clone();
    let Some(format) = cpal_format(req.spec.format) else {
        return Err(OpenError::Unsupported {
            device,
            wanted: req.spec.to_string(),
            detail: "cpal has no packed 24-bit (S24_3LE) sample format; use the alsa backend"
                .into(),
        });
    };
    let stop = StopFlag::new();
    let (tx, rx) = crossbeam_channel::bounded::<Result<(), OpenError>>(1);
    let owner_stop = stop.clone();
    let req_owned = req.clone();
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.to_string())
        .spawn(move || owner(req_owned, format, sink, owner_stop, tx))
        .map_err(|e| OpenError::Failed {
            device: device.clone(),
            detail: format!("cannot spawn the cpal owner thread: {e}"),
        })?;
    match rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(Ok(())) => Ok(CaptureHandle::new(stop, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(RecvTimeoutError::Timeout) => {
            // Leave the thread detached: it drops the stream as soon as it sees the flag.
            stop.stop();
            Err(OpenError::Failed {
                device,
                detail: format!("cpal did not open the stream within {OPEN_TIMEOUT:?}"),
            })
        }
        Err(RecvTimeoutError::Disconnected) => Err(OpenError::Failed {
            device,
            detail: "the cpal owner thread died while opening".into(),
        }),
    }
}

/// The owner thread: build, report, watch, tear down, end.
fn owner(
    req: CaptureRequest,
    format: cpal::SampleFormat,
    sink: FrameSink,
    stop: StopFlag,
    tx: crossbeam_channel::Sender<Result<(), OpenError>>,
) {
    let notifier = sink.end_notifier();
    let shared = Arc::new(Shared::default());
    let stream = match build(&req, format, sink, &shared) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    if let Err(e) = stream.play() {
        let _ = tx.send(Err(open_error(&req, "play", &e, None)));
        return;
    }
    if tx.send(Ok(())).is_err() {
        // `start` gave up waiting: nobody will read this stream.
        drop(stream);
        notifier.end(CaptureEnd::Stopped);
        return;
    }
    // Parked until a stop or the error callback's verdict rings it.
    let bell = shared.clone();
    let _hook = stop.on_stop(move || bell.wake.ring());
    let gone = loop {
        if stop.is_stopped() {
            break Gone::No;
        }
        let g = Gone::from_u8(shared.gone.load(Ordering::Acquire));
        if g != Gone::No {
            break g;
        }
        shared.wake.wait_timeout(OWNER_LOOK);
    };
    // Dropping the stream joins cpal's worker thread, and with it the callback and the sink.
    drop(stream);
    notifier.end(match gone {
        Gone::No => CaptureEnd::Stopped,
        g => CaptureEnd::DeviceGone(g.detail()),
    });
}

/// Finds `req.device` among cpal's input devices and builds the input stream.
fn build(
    req: &CaptureRequest,
    format: cpal::SampleFormat,
    sink: FrameSink,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, OpenError> {
    let host = cpal::default_host();
    let devices = host
        .input_devices()
        .map_err(|e| open_error(req, "list devices", &e, None))?;
    let wanted = req.device.as_str();
    let Some(device) = devices.into_iter().find(|d| {
        d.id()
            .is_ok_and(|id| id.id() == wanted || id.to_string() == wanted)
            || d.description().is_ok_and(|desc| desc.name() == wanted)
    }) else {
        return Err(OpenError::NoSuchDevice {
            device: req.device.clone(),
            detail: "not among cpal's input devices (see `edgerec devices`)".into(),
        });
    };
    let fixed = StreamConfig {
        channels: req.spec.channels,
        sample_rate: req.spec.rate,
        buffer_size: BufferSize::Fixed(req.period_frames),
    };
    // Our period first; if the device refuses that size, its default period. The callbacks
    // own the sink, so a failed attempt hands it back through `back` for the next one.
    let mut sink = Some(sink);
    let mut last = None;
    for config in [
        fixed,
        StreamConfig {
            buffer_size: BufferSize::Default,
            ..fixed
        },
    ] {
        let Some(s) = sink.take() else { break };
        let (data, err, back) = callbacks(s, req.spec.rate, shared.clone());
        match device.build_input_stream_raw(config, format, data, err, Some(STREAM_TIMEOUT)) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                let retry = e.kind() == ErrorKind::UnsupportedConfig;
                last = Some(e);
                if !retry {
                    break;
                }
                sink = back.lock().ok().and_then(|mut s| s.take());
            }
        }
    }
    let e = last.unwrap_or_else(|| cpal::Error::new(ErrorKind::Other));
    Err(open_error(req, "build_input_stream", &e, Some(&device)))
}

type DataFn = Box<dyn FnMut(&cpal::Data, &cpal::InputCallbackInfo) + Send + 'static>;
type ErrFn = Box<dyn FnMut(cpal::Error) + Send + 'static>;
type SinkBack = Arc<std::sync::Mutex<Option<FrameSink>>>;

/// The data and error callbacks. If the stream is never built the data callback is dropped
/// unused, and its guard puts the sink into `SinkBack` so a second attempt can use it.
fn callbacks(sink: FrameSink, rate: u32, shared: Arc<Shared>) -> (DataFn, ErrFn, SinkBack) {
    let back: SinkBack = Arc::new(std::sync::Mutex::new(None));
    let mut cb = DataCallback {
        sink: Some(sink),
        back: back.clone(),
        shared: shared.clone(),
        rate,
        calls: 0,
        last_capture: None,
    };
    let data: DataFn =
        Box::new(move |data: &cpal::Data, info: &cpal::InputCallbackInfo| cb.on_data(data, info));
    let mut storm = Storm {
        window_start: Instant::now(),
        count: 0,
    };
    let err: ErrFn = Box::new(move |e: cpal::Error| {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        let verdict = match e.kind() {
            ErrorKind::DeviceNotAvailable => Gone::NotAvailable,
            ErrorKind::StreamInvalidated => Gone::Invalidated,
            ErrorKind::HostUnavailable => Gone::HostUnavailable,
            kind => {
                if kind == ErrorKind::Xrun {
                    shared.xrun.store(true, Ordering::Release);
                }
                if storm.hit(Instant::now()) {
                    Gone::Storm
                } else {
                    Gone::No
                }
            }
        };
        if verdict != Gone::No {
            let _ = shared.gone.compare_exchange(
                Gone::No as u8,
                verdict as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            shared.wake.ring();
        }
    });
    (data, err, back)
}

/// Counts errors in a sliding one-second window.
struct Storm {
    window_start: Instant,
    count: u32,
}

impl Storm {
    /// Records one error at `now`; true when the window holds more than [`STORM_ERRORS`].
    fn hit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) > STORM_WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count > STORM_ERRORS
    }
}

/// Runs on cpal's real-time thread.
struct DataCallback {
    sink: Option<FrameSink>,
    back: SinkBack,
    shared: Arc<Shared>,
    rate: u32,
    calls: u32,
    /// Capture instant and frames of the previous callback, to size an xrun's gap.
    last_capture: Option<(cpal::StreamInstant, u64)>,
}

impl DataCallback {
    fn on_data(&mut self, data: &cpal::Data, info: &cpal::InputCallbackInfo) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        // `Data::bytes` is the callback's buffer as raw bytes, in the device's format.
        let bytes = data.bytes();
        let frames = (bytes.len() / sink.bytes_per_frame()) as u64;
        let capture = info.timestamp().capture;
        if self.shared.xrun.swap(false, Ordering::AcqRel) {
            // cpal recovered an overrun without saying how much was lost: estimate it from
            // the capture timestamps (time between the two callbacks minus what arrived).
            let lost = match self.last_capture {
                Some((prev, prev_frames)) => {
                    let d = capture.duration_since(prev);
                    let elapsed = (d.as_nanos() * self.rate as u128 / 1_000_000_000) as u64;
                    elapsed.saturating_sub(prev_frames)
                }
                None => 0,
            };
            sink.device_dropped(lost, GapCause::DeviceOverrun);
        }
        sink.push(bytes);
        self.last_capture = Some((capture, frames));
        if self.calls < rt::WARMUP_PERIODS {
            self.calls += 1;
            if self.calls == rt::WARMUP_PERIODS {
                rt::steady_state(RtPhase::SteadyEnter);
            }
        }
    }
}

impl Drop for DataCallback {
    fn drop(&mut self) {
        if self.calls == 0
            && let Some(sink) = self.sink.take()
            && let Ok(mut slot) = self.back.lock()
        {
            *slot = Some(sink);
        }
    }
}

/// Maps a cpal error while opening to what the caller should do.
fn open_error(
    req: &CaptureRequest,
    op: &str,
    e: &cpal::Error,
    device: Option<&cpal::Device>,
) -> OpenError {
    let device_name = req.device.clone();
    let detail = format!("{op}: {:?}: {e}", e.kind());
    match e.kind() {
        ErrorKind::DeviceNotAvailable => OpenError::NoSuchDevice {
            device: device_name,
            detail,
        },
        ErrorKind::DeviceBusy => OpenError::Busy {
            device: device_name,
            detail,
        },
        ErrorKind::UnsupportedConfig | ErrorKind::InvalidInput => {
            let offers = device
                .and_then(|d| d.supported_input_configs().ok())
                .map(|ranges| {
                    let list: Vec<String> = ranges
                        .map(|r| {
                            format!(
                                "{:?} {}-{} Hz {} ch",
                                r.sample_format(),
                                r.min_sample_rate(),
                                r.max_sample_rate(),
                                r.channels()
                            )
                        })
                        .collect();
                    format!("; device offers {}", list.join(", "))
                })
                .unwrap_or_default();
            OpenError::Unsupported {
                device: device_name,
                wanted: req.spec.to_string(),
                detail: format!("{detail}{offers}"),
            }
        }
        _ => OpenError::Failed {
            device: device_name,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_map_exactly_or_not_at_all() {
        for f in SampleFormat::ALL {
            match cpal_format(f) {
                Some(c) => {
                    assert_eq!(our_format(c), Some(f));
                    assert_eq!(c.sample_size(), f.bytes_per_sample(), "{f}");
                }
                None => assert_eq!(f, SampleFormat::S24Le3),
            }
        }
    }

    #[test]
    fn a_storm_is_more_than_fifty_errors_in_a_second() {
        let t0 = Instant::now();
        let mut s = Storm {
            window_start: t0,
            count: 0,
        };
        for i in 0..STORM_ERRORS {
            assert!(!s.hit(t0 + Duration::from_millis(i as u64 * 10)));
        }
        assert!(s.hit(t0 + Duration::from_millis(600)));
        // Spread out errors never add up.
        let mut s = Storm {
            window_start: t0,
            count: 0,
        };
        for i in 0..200u64 {
            assert!(!s.hit(t0 + Duration::from_millis(i * 100)));
        }
    }
}
