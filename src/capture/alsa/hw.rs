//! Opening the PCM and setting its hardware parameters, with every refusal mapped to an
//! [`OpenError`] saying what the caller should do; and what a device offers ([`caps_of`]).

use std::ffi::CString;

use ::alsa::pcm::{Access, Format, HwParams, PCM};
use ::alsa::{Direction, ValueOr};

use crate::capture::devices::DeviceCaps;
use crate::capture::{CaptureRequest, OpenError};
use crate::core::format::SampleFormat;

/// Standard rates [`probe`](super::probe) tests individually (a device may offer a set, not a range).
const STANDARD_RATES: [u32; 11] = [
    8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
];

/// Opens `device` for non-blocking capture, mapping refusals to [`OpenError`].
pub(super) fn open_pcm(device: &str) -> Result<PCM, OpenError> {
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
pub(super) fn set_hw_params(pcm: &PCM, req: &CaptureRequest) -> Result<(u32, u32), OpenError> {
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
pub(super) fn caps_of(pcm: &PCM) -> ::alsa::Result<DeviceCaps> {
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
pub(super) fn classify(device: &str, op: &str, e: ::alsa::Error) -> OpenError {
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
}
