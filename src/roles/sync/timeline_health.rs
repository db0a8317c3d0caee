//! The recording's quality timeline on the controller: each timeline event that marks a
//! gap or a fault (overrun, drop-out, disk pause and resume, crash, late start, a segment
//! that became unreadable) becomes one health event tied to the recording, placed where
//! it happened (`details.firstObservedAt` .. `lastObservedAt`) with its frame position and
//! gap length. Delivered once through the outbox: the key is the event's journal row.
//! Device loss and return are sent at once by the capture role (`roles::device_loss`).

use crate::render::timeline_file::format_ms as iso;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Sync, SyncError};
use crate::controller::protocol::{HealthEvent, Severity};
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{JobRow, NewOutboxItem};
use crate::segment::writer::now_ms;

/// How often the timelines are followed (events are rare; the outbox sends them).
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// The one table: which timeline events the controller hears of, under which name.
const TIMELINE_HEALTH: &[(EventKind, &str, Severity)] = &[
    (EventKind::Overrun, "agent.meter.xrun", Severity::Warning),
    (
        EventKind::DropOut,
        "agent.recording_job.drop_out",
        Severity::Warning,
    ),
    (
        EventKind::DiskPause,
        "agent.recording_job.disk_space_exhausted",
        Severity::Critical,
    ),
    (
        EventKind::DiskResume,
        "agent.recording_job.disk_space_exhausted_recovered",
        Severity::Info,
    ),
    (
        EventKind::CrashRecovered,
        "agent.recording_job.crash_recovered",
        Severity::Warning,
    ),
    (
        EventKind::LateStart,
        "agent.recording_job.late_start",
        Severity::Warning,
    ),
    (
        EventKind::SegmentUnreadable,
        "agent.recording_job.segment_unreadable",
        Severity::Critical,
    ),
];

/// Per job, the last timeline row turned into a health event.
#[derive(Default)]
pub(super) struct TimelineFollower {
    last_row: HashMap<String, i64>,
    last_look: Option<Instant>,
}

impl Sync {
    pub(super) fn follow_timelines(&mut self) -> Result<(), SyncError> {
        if self
            .timelines
            .last_look
            .is_some_and(|t| t.elapsed() < FOLLOW_EVERY)
        {
            return Ok(());
        }
        self.timelines.last_look = Some(Instant::now());
        for job in self.controller_jobs()? {
            let after = self.timelines.last_row.get(&job.id).copied().unwrap_or(0);
            let new = self.journal.events_after(&job.id, after)?;
            for (row, ev) in &new {
                if let Some(event) = health_event(&job, *row, ev) {
                    let local_id = event.id.clone().unwrap_or_default();
                    let body = serde_json::to_string(&event).unwrap_or_default();
                    let item =
                        NewOutboxItem::health_event(Some(&job.id), &local_id, body, now_ms());
                    self.journal.enqueue(&item)?;
                }
            }
            if let Some((row, _)) = new.last() {
                self.timelines.last_row.insert(job.id.clone(), *row);
            }
        }
        Ok(())
    }
}

/// The health event for timeline row `row` of `job`, if the controller hears of its kind.
fn health_event(job: &JobRow, row: i64, ev: &TimelineEvent) -> Option<HealthEvent> {
    let (_, kind, severity) = TIMELINE_HEALTH.iter().find(|(k, ..)| *k == ev.kind)?;
    let mut event = HealthEvent::new(*kind, *severity);
    event.id = Some(format!("{}:timeline:{row}", job.id));
    event.recording_id = job.recording_id.clone();
    let rate = job.spec.rate.max(1) as u64;
    let gap_ms = ev.gap_frames.map(|g| g * 1000 / rate);
    // A gap event is journaled when the gap closes: it spans the gap before `at`.
    let first = ev.at_ms - gap_ms.unwrap_or(0) as i64;
    event.opened_at = Some(iso(first));
    let d = &mut event.details;
    d.insert("firstObservedAt".into(), Value::from(iso(first)));
    d.insert("lastObservedAt".into(), Value::from(iso(ev.at_ms)));
    d.insert("frame".into(), Value::from(ev.frame));
    d.insert("timelineEvent".into(), Value::from(ev.kind.name()));
    if let Some(g) = ev.gap_frames {
        d.insert("gapFrames".into(), Value::from(g));
        d.insert("gapMs".into(), Value::from(gap_ms.unwrap_or(0)));
    }
    if !ev.detail.is_empty() {
        d.insert("detail".into(), Value::from(ev.detail.as_str()));
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_events_span_the_gap_and_others_are_not_sent() {
        use crate::core::format::{SampleFormat, StreamSpec};
        let job = JobRow {
            id: "ctl-1".into(),
            source: crate::journal::JobSource::Controller,
            controller_job_id: Some("job_1".into()),
            recording_id: Some("rec_1".into()),
            command_json: "{}".into(),
            backend: "synth".into(),
            device: "sine".into(),
            spec: StreamSpec {
                format: SampleFormat::S16Le,
                rate: 48_000,
                channels: 2,
            },
            duration_frames: None,
            dir: "ctl-1".into(),
            state: crate::core::job::JobState::Capturing,
            end_cause: None,
            created_at_ms: 0,
            started_at_ms: Some(0),
            ended_at_ms: None,
            updated_at_ms: 0,
            captured_frames: 0,
        };
        let ev = TimelineEvent::new(EventKind::CrashRecovered, 96_000, 10_000).with_gap(48_000);
        let e = health_event(&job, 7, &ev).expect("a crash is on the quality timeline");
        assert_eq!(e.kind, "agent.recording_job.crash_recovered");
        assert_eq!(e.id.as_deref(), Some("ctl-1:timeline:7"));
        assert_eq!(e.recording_id.as_deref(), Some("rec_1"));
        assert_eq!(e.details["gapMs"], 1000);
        assert_eq!(e.details["frame"], 96_000);
        assert_eq!(e.details["firstObservedAt"], iso(9_000));
        assert_eq!(e.details["lastObservedAt"], iso(10_000));
        let started = TimelineEvent::new(EventKind::Started, 0, 1);
        assert!(health_event(&job, 1, &started).is_none());
    }
}
