//! The disk pause: below the spool's reserve mark the writer stops writing (the segment
//! closes valid) and drops frames; above the resume mark it writes again, and the frames
//! dropped meanwhile are the pause's gap on the timeline.

use std::sync::atomic::Ordering;

use super::{Writer, WriterError, now_ms};
use crate::core::disk_budget::DiskAction;
use crate::core::timeline::{EventKind, TimelineEvent};

impl Writer {
    pub(super) fn check_disk(&mut self) -> Result<(), WriterError> {
        let Some(guard) = self.spool.as_mut() else {
            return Ok(());
        };
        let spec = &self.cfg.spec;
        let write_rate = u64::from(spec.rate) * spec.bytes_per_frame() as u64;
        match guard.check(&self.journal, write_rate) {
            DiskAction::Pause => self.pause_writing("free space below the reserve mark"),
            DiskAction::Resume => self.resume_writing("free space above the resume mark"),
            DiskAction::Write | DiskAction::StayPaused => Ok(()),
        }
    }

    /// Stops writing: the segment closes valid, the journal records where.
    pub(super) fn pause_writing(&mut self, why: &str) -> Result<(), WriterError> {
        if self.disk_pause.is_some() {
            return Ok(());
        }
        // Paused first: a journal write below that finds the disk full comes back here.
        self.disk_pause = Some((self.timeline_pos, 0));
        self.close_segment()?;
        let ev =
            TimelineEvent::new(EventKind::DiskPause, self.timeline_pos, now_ms()).with_detail(why);
        self.add_event(&ev)?;
        log::warn!(
            "{}: writing paused at frame {}: {why}",
            self.cfg.job_id,
            self.timeline_pos
        );
        self.disk_pause = Some((self.timeline_pos, 0));
        Ok(())
    }

    /// Closes a disk pause: the frames dropped meanwhile are its gap.
    pub(super) fn resume_writing(&mut self, why: &str) -> Result<(), WriterError> {
        let Some((at, frames)) = self.disk_pause.take() else {
            return Ok(());
        };
        let ev = TimelineEvent::new(EventKind::DiskResume, at, now_ms())
            .with_detail(why)
            .with_gap(frames);
        self.add_event(&ev)?;
        log::warn!(
            "{}: writing resumed; {frames} frames were not written ({why})",
            self.cfg.job_id
        );
        Ok(())
    }

    /// While paused for disk space: the ring is drained unwritten (the device stays
    /// happy), and the frames become the pause's gap.
    pub(super) fn drop_available(&mut self) -> Result<u64, WriterError> {
        let want = self
            .writable_limit()
            .min(self.source.frames_available() as u64);
        if want == 0 {
            return Ok(0);
        }
        if !self.origin_known {
            self.first_frames_arrived()?;
            return Ok(1);
        }
        let (first, second) = self.source.peek_frames(want as usize);
        self.meter.feed(first);
        self.meter.feed(second);
        let got = ((first.len() + second.len()) / self.cfg.spec.bytes_per_frame()) as u64;
        self.source.consume_frames(got as usize);
        self.ring_pos += got;
        self.timeline_pos += got;
        self.progress
            .timeline_frames
            .store(self.timeline_pos, Ordering::Release);
        if let Some(pause) = self.disk_pause.as_mut() {
            pause.1 += got;
        }
        Ok(got)
    }
}
