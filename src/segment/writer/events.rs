//! The capture stream's events, applied in stream order: a gap closes the segment and
//! moves the timeline past it; the stream's end ends the writer.

use std::sync::atomic::Ordering;

use super::{Writer, WriterEnd, WriterError, now_ms};
use crate::capture::{CaptureEvent, GapCause};
use crate::core::timeline::{EventKind, TimelineEvent};

impl Writer {
    pub(super) fn apply_due_events(&mut self) -> Result<Option<WriterEnd>, WriterError> {
        while let Some(ev) = self.pending.front() {
            let at = match ev {
                CaptureEvent::Gap { at, .. } | CaptureEvent::Ended { at, .. } => *at,
            };
            if at > self.ring_pos {
                return Ok(None);
            }
            match self.pending.pop_front().expect("front exists") {
                CaptureEvent::Gap { frames, cause, .. } => self.apply_gap(frames, cause)?,
                CaptureEvent::Ended { end, .. } => return Ok(Some(WriterEnd::Capture(end))),
            }
        }
        Ok(None)
    }

    /// A gap closes the run: the next segment starts after it on the timeline.
    fn apply_gap(&mut self, frames: u64, cause: GapCause) -> Result<(), WriterError> {
        self.close_segment()?;
        self.clock.restart_window(self.ring_pos);
        let (kind, detail) = match cause {
            GapCause::DeviceOverrun => (EventKind::Overrun, "device overrun (EPIPE), recovered"),
            GapCause::RingFull => (EventKind::Overrun, "ring full: writer fell behind"),
            GapCause::DropOut => (EventKind::DropOut, "source delivered no audio"),
        };
        let frames = match self.cfg.stop_at {
            Some(stop) => frames.min(stop.saturating_sub(self.timeline_pos)),
            None => frames,
        };
        let ev = TimelineEvent::new(kind, self.timeline_pos, now_ms())
            .with_detail(detail)
            .with_gap(frames);
        self.add_event(&ev)?;
        log::warn!(
            "{}: {} frames missing at frame {} ({detail})",
            self.cfg.job_id,
            frames,
            self.timeline_pos
        );
        self.timeline_pos += frames;
        self.progress
            .timeline_frames
            .store(self.timeline_pos, Ordering::Release);
        Ok(())
    }
}
