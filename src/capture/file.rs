//! (being written)
use super::{CaptureHandle, CaptureRequest, FrameSink, OpenError};

pub fn start(req: &CaptureRequest, _sink: FrameSink) -> Result<CaptureHandle, OpenError> {
    Err(OpenError::Failed { device: req.device.clone(), detail: "alsa backend not built yet".into() })
}
