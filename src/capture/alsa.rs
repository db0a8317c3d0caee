//! The `alsa` backend: direct alsa-lib capture with exact hardware parameters.
//!
//! [`start`] opens the PCM and sets its parameters on the calling thread (so every refusal
//! comes back synchronously as an [`OpenError`]), then moves it into the shared real-time
//! loop ([`pull::spawn`]). The PCM is opened non-blocking: each read polls the PCM's
//! descriptors once, for at most a few periods, so a wedged device never wedges the thread
//! and the stop flag is always seen; a stop also writes an eventfd in that poll, so the
//! thread leaves at once rather than at its next wake-up.
//!
//! Every errno the device can return while running is turned, where it happens, into one
//! of the loop's outcomes: frames, idle (nothing yet), an overrun recovered in place (with an
//! estimate of the frames lost), the device gone (`ENODEV`, disconnected: reopen later), or
//! a failure.
//!
//! - this file: the running PCM ([`AlsaSource`]), read by the real-time loop.
//! - `hw`: opening it and setting its hardware parameters; what a device offers.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use ::alsa::pcm::{PCM, State};
use ::alsa::poll::{Descriptors as _, Flags};
use libc::c_int;

use super::devices::DeviceCaps;
use super::pull::{self, PullSource, Read};
use super::{CaptureEnd, CaptureHandle, CaptureRequest, FrameSink, OpenError};

mod hw;

pub use hw::{alsa_format, errno_name, period_within};
use hw::{caps_of, classify, open_pcm, set_hw_params};

/// Name of the real-time capture thread.
pub const THREAD_NAME: &str = "edgerec-capture-alsa";

/// Longest a single read waits for the device before reporting [`Read::Idle`] (a stalled
/// device, a stop asked for meanwhile): above the default wake interval (two ~85–100 ms
/// periods), so a healthy stream never times out, and far inside the 2 s stop deadline.
const MAX_WAIT_MS: u32 = 400;
/// Shortest wait, so tiny periods do not turn the loop into a spin.
const MIN_WAIT_MS: u32 = 10;
/// Tries of `snd_pcm_resume` after a suspend before falling back to `prepare`.
const RESUME_TRIES: u32 = 20;

/// Opens the device named in `req` and starts capturing into `sink` on a named real-time
/// thread.
pub fn start(req: &CaptureRequest, sink: FrameSink) -> Result<CaptureHandle, OpenError> {
    let source = AlsaSource::open(req)?;
    // Room for twice what a wake-up brings, so a late wake-up still drains the device in
    // one read (which anchors the overrun loss estimate, see `AlsaSource`).
    let read_frames = source.wake_frames() * 2;
    pull::spawn(THREAD_NAME, source, sink, read_frames).map_err(|e| OpenError::Failed {
        device: req.device.clone(),
        detail: format!("cannot spawn the capture thread: {e}"),
    })
}

/// What a device offers, as far as `probe` can see without configuring it.
pub fn probe(device: &str) -> Result<DeviceCaps, OpenError> {
    let pcm = open_pcm(device)?;
    caps_of(&pcm).map_err(|e| classify(device, "probe", e))
}

/// An opened, configured and started ALSA capture PCM, read by the capture loop.
///
/// Overrun accounting: `anchor` is an instant at which every frame the device had captured
/// was either read by us or counted in `read_since_anchor` (the stream start, a recovery, or
/// a read that took all the device said it held, i.e. drained the buffer). On an overrun the
/// frames lost are the device time elapsed since `anchor` until capture restarts, minus the
/// frames read since then. Re-anchoring on every drained read keeps clock drift out of it.
pub struct AlsaSource {
    pcm: PCM,
    rate: u32,
    period_frames: u32,
    buffer_frames: u32,
    wake_frames: u32,
    bytes_per_frame: usize,
    wait_ms: u32,
    /// The PCM's poll descriptors, fetched once at open (no allocation per read), then
    /// the stop eventfd (last).
    fds: Vec<libc::pollfd>,
    /// Written once by a stop, so the thread leaves its wait at once.
    stop_fd: Arc<OwnedFd>,
    anchor: Instant,
    read_since_anchor: u64,
}

impl AlsaSource {
    /// Opens `req.device` non-blocking for capture, sets exact hardware parameters, software
    /// parameters, and starts the stream. Blocking only for as long as alsa-lib takes to open.
    pub fn open(req: &CaptureRequest) -> Result<AlsaSource, OpenError> {
        let device = req.device.as_str();
        let pcm = open_pcm(device)?;
        let (period, buffer) = set_hw_params(&pcm, req)?;
        let wake = wake_frames(period, buffer, req.spec.rate);
        let sw = || -> ::alsa::Result<()> {
            let swp = pcm.sw_params_current()?;
            swp.set_avail_min(wake as ::alsa::pcm::Frames)?;
            swp.set_start_threshold(1)?;
            pcm.sw_params(&swp)
        };
        sw().map_err(|e| classify(device, "sw params", e))?;
        let bytes_per_frame = req.spec.bytes_per_frame();
        let wake_ms = (wake as u64 * 1000 / req.spec.rate.max(1) as u64) as u32;
        let wait_ms = (wake_ms * 2).clamp(MIN_WAIT_MS, MAX_WAIT_MS);
        if pcm.state_raw() != State::Prepared as c_int {
            pcm.prepare().map_err(|e| classify(device, "prepare", e))?;
        }
        let mut fds = pcm
            .get()
            .map_err(|e| classify(device, "poll descriptors", e))?;
        let stop_fd = Arc::new(eventfd().map_err(|e| OpenError::Failed {
            device: device.to_string(),
            detail: format!("eventfd: {e}"),
        })?);
        fds.push(libc::pollfd {
            fd: stop_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        pcm.start().map_err(|e| classify(device, "start", e))?;
        Ok(AlsaSource {
            pcm,
            rate: req.spec.rate,
            period_frames: period,
            buffer_frames: buffer,
            wake_frames: wake,
            bytes_per_frame,
            wait_ms,
            fds,
            stop_fd,
            anchor: Instant::now(),
            read_since_anchor: 0,
        })
    }

    /// The period the device accepted (near the requested one).
    pub fn period_frames(&self) -> u32 {
        self.period_frames
    }

    /// The device buffer the device accepted (near the requested one).
    pub fn buffer_frames(&self) -> u32 {
        self.buffer_frames
    }

    /// Frames the device holds when the capture thread wakes (its `avail_min`).
    pub fn wake_frames(&self) -> u32 {
        self.wake_frames
    }

    /// How long one read waits at most before returning [`Read::Idle`].
    pub fn wait_ms(&self) -> u32 {
        self.wait_ms
    }

    /// Device time elapsed since the anchor, in frames, minus what we read since then.
    fn frames_lost_since_anchor(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.anchor);
        let device_frames = (elapsed.as_nanos() * self.rate as u128 / 1_000_000_000) as u64;
        device_frames.saturating_sub(self.read_since_anchor)
    }

    fn reanchor(&mut self, now: Instant) {
        self.anchor = now;
        self.read_since_anchor = 0;
    }

    /// One non-blocking read of what the device holds, up to `buf`. Asks for exactly what
    /// the device said it holds: asking for more makes alsa-lib chase a pointer that moves
    /// with time, a frame or two per round (hundreds of rounds a read on a timer-paced
    /// device). A read that takes all of it drained the device as of the query.
    fn read_now(&mut self, buf: &mut [u8]) -> Read {
        let avail = match self.pcm.avail_update() {
            Ok(a) => a.max(0) as usize,
            Err(e) => return self.on_error("avail", e),
        };
        let queried = Instant::now();
        let room = buf.len() / self.bytes_per_frame;
        let want = avail.min(room);
        if want == 0 {
            return Read::Idle;
        }
        // `io_bytes` is a borrow plus a flag: no allocation.
        let got = self
            .pcm
            .io_bytes()
            .readi(&mut buf[..want * self.bytes_per_frame]);
        match got {
            Ok(0) => Read::Idle,
            Ok(n) => {
                if avail <= room && n == want {
                    // We took everything the device had: it is drained as of the query.
                    self.reanchor(queried);
                } else {
                    self.read_since_anchor += n as u64;
                }
                Read::Frames(n)
            }
            Err(e) => self.on_error("read", e),
        }
    }

    /// Turns an errno from `op` into the loop's outcome. Allocates only on the End paths.
    fn on_error(&mut self, op: &'static str, err: ::alsa::Error) -> Read {
        match err.errno() {
            libc::EAGAIN => Read::Idle,
            libc::EPIPE => self.recover(false),
            libc::ESTRPIPE => self.recover(true),
            _ => self.end(op, err.errno()),
        }
    }

    /// Recovers an overrun (`EPIPE`) or a suspend (`ESTRPIPE`) in place and reports the loss.
    fn recover(&mut self, suspended: bool) -> Read {
        if suspended {
            let mut resumed = false;
            for _ in 0..RESUME_TRIES {
                match self.pcm.resume() {
                    Ok(()) => {
                        resumed = true;
                        break;
                    }
                    // Still resuming: a rare path, sleeping here is fine.
                    Err(e) if e.errno() == libc::EAGAIN => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(_) => break, // ENOSYS and friends: prepare instead
                }
            }
            if !resumed && let Err(e) = self.pcm.prepare() {
                return self.end("prepare", e.errno());
            }
        } else if let Err(e) = self.pcm.prepare() {
            return self.end("prepare", e.errno());
        }
        // Capture needs an explicit start after prepare (or after resume left it PREPARED).
        if self.pcm.state_raw() != State::Running as c_int
            && let Err(e) = self.pcm.start()
            && e.errno() != libc::EBUSY
        {
            return self.end("start", e.errno());
        }
        let now = Instant::now();
        let lost_frames = self.frames_lost_since_anchor(now);
        self.reanchor(now);
        Read::Overrun { lost_frames }
    }

    /// After a poll timed out (or reported an error): act on the PCM's state, since a state
    /// change does not always come with POLLERR.
    fn on_timeout(&mut self) -> Read {
        let state = self.pcm.state_raw();
        if state == State::Disconnected as c_int {
            self.end("wait", libc::ENODEV)
        } else if state == State::XRun as c_int {
            self.recover(false)
        } else if state == State::Suspended as c_int {
            self.recover(true)
        } else {
            Read::Idle
        }
    }

    /// The stream is over: stop the hardware and say why. Off the steady-state path.
    fn end(&mut self, op: &'static str, errno: i32) -> Read {
        let _ = self.pcm.drop();
        let detail = format!("{op}: {}", errno_name(errno));
        match errno {
            libc::ENODEV | libc::EBADFD | libc::ENXIO | libc::ENOENT | libc::ESHUTDOWN => {
                Read::End(CaptureEnd::DeviceGone(detail))
            }
            _ => Read::End(CaptureEnd::Failed(detail)),
        }
    }
}

impl PullSource for AlsaSource {
    fn read(&mut self, buf: &mut [u8]) -> Read {
        // One bounded poll of the PCM's descriptors (not `snd_pcm_wait`: it re-polls with a
        // fresh timeout after every wake-up that brings no frames, so a timer-driven device
        // that stalls keeps it waiting forever).
        match ::alsa::poll::poll(&mut self.fds, self.wait_ms as c_int) {
            Ok(0) => return self.on_timeout(),
            Ok(_) => {}
            Err(e) if e.errno() == libc::EINTR => return Read::Idle,
            Err(e) => return self.end("poll", e.errno()),
        }
        let (pcm_fds, stop) = self.fds.split_at(self.fds.len() - 1);
        if stop[0].revents != 0 {
            return Read::Idle; // a stop: the loop sees the flag
        }
        let revents = match self.pcm.revents(pcm_fds) {
            Ok(r) => r,
            Err(e) => return self.on_error("poll", e),
        };
        if revents.intersects(Flags::ERR | Flags::HUP | Flags::NVAL) {
            // An xrun, a suspend or a disconnect: the state says which.
            let state = self.pcm.state_raw();
            if state == State::Disconnected as c_int || revents.intersects(Flags::HUP | Flags::NVAL)
            {
                return self.end("read", libc::ENODEV);
            }
            if state == State::XRun as c_int || state == State::Suspended as c_int {
                return self.on_timeout();
            }
        }
        // Read even a wake-up without POLLIN (less than avail_min): a timer-paced plugin
        // may tick a frame early and not again for a whole wake-up interval, which at two
        // periods of a four-period buffer would be an overrun.
        self.read_now(buf)
    }

    fn stop_waker(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        let fd = self.stop_fd.clone();
        Some(Box::new(move || {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to an eventfd we own.
            let _ = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }))
    }

    fn read_held(&mut self, buf: &mut [u8]) -> Read {
        if self.pcm.state_raw() != State::Running as c_int {
            return Read::Idle;
        }
        self.read_now(buf)
    }
}

/// Most audio a wake-up lets the device hold, in ms: what an unplug takes with it (the
/// frames captured but not read yet leave with the device), as at one ~85-100 ms period.
const MAX_HELD_MS: u32 = 100;

/// Frames the device must hold before the capture thread wakes (pure): two periods when
/// they fit in [`MAX_HELD_MS`] and the buffer holds at least four (half the wake-ups, and
/// two periods of buffer left for a late wake-up, which a SCHED_FIFO thread sees in
/// microseconds to a few ms); else one. At the shipped ~100 ms period that is one period:
/// waking less often there would let an unplug take up to 200 ms of audio.
pub fn wake_frames(period: u32, buffer: u32, rate: u32) -> u32 {
    let two = period.saturating_mul(2);
    if buffer / 4 >= period && u64::from(two) * 1000 <= u64::from(MAX_HELD_MS) * u64::from(rate) {
        two
    } else {
        period
    }
}

/// A non-blocking eventfd.
fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_wakes_every_two_periods_only_when_they_are_short_and_the_buffer_deep() {
        // (period, buffer) at 48 kHz -> frames per wake-up
        let table = [
            (480, 16384, 960),   // 10 ms: two periods, 20 ms
            (960, 16384, 1920),  // 20 ms: two, 40 ms
            (2400, 48000, 4800), // 50 ms: two, exactly 100 ms
            (4096, 16384, 4096), // 85 ms: one (two would be 170 ms)
            (4800, 16384, 4800), // the shipped 100 ms on fakemic: one
            (4800, 48000, 4800), // 100 ms: one
            (960, 3840, 1920),   // four periods of buffer: two still leave two
            (960, 3000, 960),    // under four periods: one
            (1, 4, 2),
        ];
        for (period, buffer, want) in table {
            assert_eq!(
                wake_frames(period, buffer, 48_000),
                want,
                "{period}/{buffer}"
            );
        }
    }
}
