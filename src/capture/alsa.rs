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

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use ::alsa::pcm::{Access, Format, HwParams, PCM, State};
use ::alsa::poll::{Descriptors as _, Flags};
use ::alsa::{Direction, ValueOr};
use libc::c_int;

use super::devices::DeviceCaps;
use super::pull::{self, PullSource, Read};
use super::{CaptureEnd, CaptureHandle, CaptureRequest, FrameSink, OpenError};
use crate::core::format::SampleFormat;

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

/// Standard rates [`probe`] tests individually (a device may offer a set, not a range).
const STANDARD_RATES: [u32; 11] = [
    8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
];

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

/// Opens `device` for non-blocking capture, mapping refusals to [`OpenError`].
fn open_pcm(device: &str) -> Result<PCM, OpenError> {
    let Ok(name) = CString::new(device) else {
        return Err(OpenError::NoSuchDevice {
            device: device.to_string(),
            detail: "the name contains a NUL byte".into(),
        });
    };
    // alsa-lib prints its own reason for a refused open ("Unknown PCM x") to stderr, once
    // per attempt: a reopen loop would flood the serial console. Caught for this thread
    // and put into the error instead.
    let lib_says = ::alsa::Output::local_error_handler().ok();
    PCM::open(&name, Direction::Capture, true).map_err(|e| {
        let (errno, device) = (e.errno(), device.to_string());
        let mut detail = format!("open: {}", errno_name(errno));
        let said = lib_says.map(|o| o.borrow().to_string()).unwrap_or_default();
        if let Some(line) = said.lines().rev().find(|l| !l.trim().is_empty()) {
            detail.push_str(&format!(" (alsa-lib: {})", line.trim()));
        }
        match errno {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => OpenError::NoSuchDevice { device, detail },
            libc::EBUSY | libc::EAGAIN => OpenError::Busy { device, detail },
            _ => OpenError::Failed { device, detail },
        }
    })
}

/// The ALSA format for one of ours.
pub fn alsa_format(f: SampleFormat) -> Format {
    match f {
        SampleFormat::S16Le => Format::S16LE,
        SampleFormat::S24Le3 => Format::S243LE,
        SampleFormat::S24Le => Format::S24LE,
        SampleFormat::S32Le => Format::S32LE,
        SampleFormat::FloatLe => Format::FloatLE,
    }
}

/// Periods the device buffer must hold at least: the one the thread wakes for, and two of
/// room for a late read (arecord asks for four, but it is not a real-time thread).
const MIN_PERIODS_PER_BUFFER: u32 = 3;

/// Pure: the period to ask for, `requested` unless the device `buffer` cannot hold
/// [`MIN_PERIODS_PER_BUFFER`] of it. The device then takes the nearest it offers: 100 ms
/// exactly in a 1 s buffer; 114 ms in fakemic's 341 ms one, whose periods divide it (a
/// quarter of it, the old rule, was 85 ms: 11.7 wake-ups a second instead of 8.8).
pub fn period_within(requested: u32, buffer: u32) -> u32 {
    requested.min(buffer / MIN_PERIODS_PER_BUFFER).max(1)
}

/// Sets access, format, channels, exact rate, period and buffer; returns the (period,
/// buffer) the device accepted.
fn set_hw_params(pcm: &PCM, req: &CaptureRequest) -> Result<(u32, u32), OpenError> {
    let device = req.device.as_str();
    let spec = req.spec;
    let hwp = HwParams::any(pcm).map_err(|e| classify(device, "hw params", e))?;
    // No resampling in alsa-lib's plug layer: the rate must be one the hardware runs at.
    let _ = hwp.set_rate_resample(false);
    let unsupported = |what: String, e: ::alsa::Error| -> OpenError {
        if e.errno() != libc::EINVAL {
            return classify(device, "hw params", e);
        }
        let offers = caps_of(pcm)
            .map(|c| format!("; device offers {c}"))
            .unwrap_or_default();
        OpenError::Unsupported {
            device: device.to_string(),
            wanted: spec.to_string(),
            detail: format!("{what} not offered{offers}"),
        }
    };
    hwp.set_access(Access::RWInterleaved)
        .map_err(|e| unsupported("interleaved read/write access".into(), e))?;
    hwp.set_format(alsa_format(spec.format))
        .map_err(|e| unsupported(format!("format {}", spec.format), e))?;
    hwp.set_channels(spec.channels as u32)
        .map_err(|e| unsupported(format!("{} channels", spec.channels), e))?;
    hwp.set_rate(spec.rate, ValueOr::Nearest)
        .map_err(|e| unsupported(format!("rate {} Hz", spec.rate), e))?;
    // The buffer first, then the period asked for, cut to fit a small buffer.
    let buffer = req.buffer_frames.max(req.period_frames * 2) as ::alsa::pcm::Frames;
    let buffer = hwp
        .set_buffer_size_near(buffer)
        .map_err(|e| unsupported(format!("a buffer near {buffer} frames"), e))?;
    let buffer_u32 = u32::try_from(buffer.max(0)).unwrap_or(u32::MAX);
    let period = ::alsa::pcm::Frames::from(period_within(req.period_frames, buffer_u32));
    hwp.set_period_size_near(period, ValueOr::Nearest)
        .map_err(|e| unsupported(format!("a period near {period} frames"), e))?;
    pcm.hw_params(&hwp)
        .map_err(|e| unsupported(spec.to_string(), e))?;
    drop(hwp);

    let cur = pcm
        .hw_params_current()
        .map_err(|e| classify(device, "hw params", e))?;
    let got = (cur.get_rate(), cur.get_format(), cur.get_channels());
    let (rate, format, channels) = match got {
        (Ok(r), Ok(f), Ok(c)) => (r, f, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Err(classify(device, "hw params", e));
        }
    };
    if rate != spec.rate || format != alsa_format(spec.format) || channels != spec.channels as u32 {
        return Err(OpenError::Unsupported {
            device: device.to_string(),
            wanted: spec.to_string(),
            detail: format!("device settled on {format} {rate} Hz {channels} ch"),
        });
    }
    let period = cur
        .get_period_size()
        .map_err(|e| classify(device, "hw params", e))?;
    let buffer = cur
        .get_buffer_size()
        .map_err(|e| classify(device, "hw params", e))?;
    Ok((period.max(1) as u32, buffer.max(1) as u32))
}

/// What an open PCM offers: our formats it accepts, its rate and channel ranges.
fn caps_of(pcm: &PCM) -> ::alsa::Result<DeviceCaps> {
    let hwp = HwParams::any(pcm)?;
    let _ = hwp.set_rate_resample(false);
    let _ = hwp.set_access(Access::RWInterleaved);
    let formats = SampleFormat::ALL
        .into_iter()
        .filter(|f| hwp.test_format(alsa_format(*f)).is_ok())
        .collect();
    let rates = STANDARD_RATES
        .into_iter()
        .filter(|r| hwp.test_rate(*r).is_ok())
        .collect();
    Ok(DeviceCaps {
        formats,
        rate_min: hwp.get_rate_min()?,
        rate_max: hwp.get_rate_max()?,
        rates,
        channels_min: hwp.get_channels_min()?,
        channels_max: hwp.get_channels_max()?,
    })
}

/// Maps an errno from configuring `device` to what the caller should do.
fn classify(device: &str, op: &str, e: ::alsa::Error) -> OpenError {
    let (errno, device) = (e.errno(), device.to_string());
    let detail = format!("{op}: {}", errno_name(errno));
    match errno {
        libc::ENOENT | libc::ENODEV | libc::ENXIO | libc::EBADFD => {
            OpenError::NoSuchDevice { device, detail }
        }
        libc::EBUSY | libc::EAGAIN => OpenError::Busy { device, detail },
        _ => OpenError::Failed { device, detail },
    }
}

/// The symbolic name of an errno the ALSA paths produce (`ENODEV`), else `errno N`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::EBADFD => "EBADFD",
        libc::ESTRPIPE => "ESTRPIPE",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOTSUP => "ENOTSUP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_asked_for_is_kept_while_the_buffer_holds_three_of_them() {
        // (requested, device buffer) at 48 kHz -> period asked of the device
        let table = [
            (4800, 48_000, 4800), // 100 ms in a 1 s buffer
            (4800, 16_384, 4800), // 100 ms in fakemic's 341 ms (it settles on 5461)
            (4800, 12_000, 4000), // a 250 ms buffer: a third of it
            (960, 2_048, 682),    // 20 ms in a 43 ms buffer
            (4800, 2, 1),         // never zero
        ];
        for (requested, buffer, want) in table {
            assert_eq!(
                period_within(requested, buffer),
                want,
                "{requested}/{buffer}"
            );
        }
    }

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
