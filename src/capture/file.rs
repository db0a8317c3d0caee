//! The `file` backend: replays a WAV file at real-time pace, as if a device delivered it.
//! The file's format, rate and channels must equal the request's (samples stay native).
//! When the file ends the stream ends with `SourceExhausted`.

use std::fs::File;
use std::io::{Read as _, Seek, SeekFrom};
use std::time::Duration;

use super::pacer::Pacer;
use super::pull::{self, PullSource, Read};
use super::{CaptureEnd, CaptureHandle, CaptureRequest, FrameSink, OpenError};
use crate::core::format::StreamSpec;
use crate::segment::wav;

struct FileSource {
    file: File,
    spec: StreamSpec,
    /// Audio bytes left in the data chunk.
    remaining: u64,
    pacer: Pacer,
    max_wait: Duration,
}

impl PullSource for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> Read {
        let bpf = self.spec.bytes_per_frame();
        let frames = (buf.len() / bpf).min((self.remaining / bpf as u64) as usize);
        if frames == 0 {
            return Read::End(CaptureEnd::SourceExhausted);
        }
        if !self.pacer.wait_for(frames as u64, self.max_wait) {
            return Read::Idle;
        }
        let bytes = &mut buf[..frames * bpf];
        if let Err(e) = self.file.read_exact(bytes) {
            // A file cut short under us: it ends here, like a device that went away.
            return Read::End(CaptureEnd::Failed(format!("file read: {e}")));
        }
        self.remaining -= bytes.len() as u64;
        Read::Frames(frames)
    }
}

/// `StartFn` for the file backend: `--device` is the WAV path.
pub fn start(req: &CaptureRequest, sink: FrameSink) -> Result<CaptureHandle, OpenError> {
    let device = || req.device.clone();
    let mut file = File::open(&req.device).map_err(|e| OpenError::NoSuchDevice {
        device: device(),
        detail: format!("cannot open WAV file: {e}"),
    })?;
    let info = wav::parse_header(&mut file).map_err(|e| OpenError::Failed {
        device: device(),
        detail: format!("not a usable WAV file: {e}"),
    })?;
    if info.spec != req.spec {
        return Err(OpenError::Unsupported {
            device: device(),
            wanted: req.spec.to_string(),
            detail: format!("the file holds {}", info.spec),
        });
    }
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Trust the file length over a header a crash left stale (0 or short).
    let available = file_len.saturating_sub(info.data_offset);
    let remaining = if info.declared_data_len == 0 {
        available
    } else {
        info.declared_data_len.min(available)
    };
    file.seek(SeekFrom::Start(info.data_offset))
        .map_err(|e| OpenError::Failed {
            device: device(),
            detail: e.to_string(),
        })?;
    let source = FileSource {
        file,
        spec: req.spec,
        remaining,
        pacer: Pacer::new(req.spec.rate),
        max_wait: req.spec.duration_of(req.period_frames as u64 * 2),
    };
    pull::spawn("edgerec-capture-file", source, sink, req.period_frames).map_err(|e| {
        OpenError::Failed {
            device: device(),
            detail: format!("cannot start capture thread: {e}"),
        }
    })
}
