//! The gaps on a job's timeline that the runner owns: the leading gap of a job that has
//! captured nothing yet, the job's start (frame 0), and a gap still open when the job ends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{JobCapture, RunError, timeline_position};
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::JournalError;
use crate::roles::device_loss::DeviceLoss;
use crate::segment::writer::{self, GapSince, ResumeGap, WriterProgress};

impl JobCapture<'_> {
    /// A job with nothing captured yet starts with a gap from its window's opening: the
    /// first frame closes it (`late_start`), so frame 0 stays the window's start.
    pub(super) fn begin_gap_if_none(&mut self, what: &str, detail: &str) -> Result<(), RunError> {
        if self.pending_gap.is_some() {
            return Ok(());
        }
        let (timeline_pos, _) = timeline_position(self.journal, &self.job.id)?;
        let window_start = self.job.created_at_ms;
        let since = Instant::now()
            .checked_sub(Duration::from_millis(
                (writer::now_ms() - window_start).max(0) as u64,
            ))
            .unwrap_or_else(Instant::now);
        self.pending_gap = Some(ResumeGap {
            since: GapSince::WallMs(window_start),
            kind: EventKind::LateStart,
            detail: format!("{what} at the start of the job: {detail}"),
        });
        self.loss = Some(DeviceLoss::begin(
            self.journal,
            self.job,
            timeline_pos,
            (since, Instant::now()),
            detail,
            &mut self.flaps,
        ));
        Ok(())
    }

    /// Puts the job's start (the wall time of timeline frame 0) in the journal, once: the
    /// window's opening when the job began with a gap, else the first frame's time as the
    /// writer refined it over the run's first second.
    pub(super) fn note_start(
        &mut self,
        progress: &WriterProgress,
        leading_gap: Option<GapSince>,
    ) -> Result<(), JournalError> {
        let origin = progress.origin_wall_ms.load(Ordering::Acquire) as i64;
        if origin == 0 {
            return Ok(());
        }
        let start = match leading_gap {
            Some(GapSince::WallMs(window_start)) => window_start,
            _ => origin,
        };
        match self.started_at_ms {
            None => {
                let ev = TimelineEvent::new(EventKind::Started, 0, start);
                let written = self.write(|j, id| {
                    j.atomically(|j| {
                        j.set_job_started(id, start)?;
                        j.add_event(id, &ev).map(drop)
                    })
                })?;
                if written.is_none() {
                    return Ok(()); // no room yet: tried again at the next look
                }
            }
            Some(_) => return Ok(()),
        }
        self.started_at_ms = Some(start);
        Ok(())
    }

    /// A gap still open when the job ends: the device never came back (or a crash gap
    /// was never closed by a frame). The timeline says why; the recording ends at its
    /// last captured frame, never padded past it.
    pub(super) fn close_open_gap(&mut self, timeline_pos: u64) -> Result<(), JournalError> {
        let Some(gap) = self.pending_gap.take() else {
            return Ok(());
        };
        if self.started_at_ms.is_none() {
            return Ok(()); // nothing captured: the job's failure says it all
        }
        let away_ms = match gap.since {
            GapSince::Monotonic(since) => since.elapsed().as_millis() as i64,
            GapSince::WallMs(since) => writer::now_ms() - since,
        };
        let kind = if gap.kind == EventKind::CrashRecovered {
            EventKind::CrashRecovered
        } else {
            EventKind::DeviceStillLost
        };
        let detail = format!(
            "capture stopped at frame {timeline_pos} and did not resume before the job ended \
             ({:.1} s later; last: {})",
            away_ms.max(0) as f64 / 1000.0,
            self.last_error.as_deref().unwrap_or(&gap.detail)
        );
        log::warn!("{}: {detail}", self.job.id);
        let ev = TimelineEvent::new(kind, timeline_pos, writer::now_ms()).with_detail(&detail);
        self.write(|j, id| j.add_event(id, &ev)).map(drop)
    }
}
