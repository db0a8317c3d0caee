//! What a job says while its device is away: a few log lines (state changes, one summary
//! a minute) and, for a controller's job, one health event when the device goes and one
//! when it comes back, delivered once through the outbox.

use crate::render::timeline_file::format_ms as iso;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controller::protocol::{HealthEvent, Severity};
use crate::journal::{JobRow, JobSource, Journal, NewOutboxItem};
use crate::segment::writer::now_ms;

/// Rakkr's names for a capture device that went away and came back.
pub const DEVICE_LOST_EVENT: &str = "agent.recording_job.capture_device_lost";
pub const DEVICE_RECOVERED_EVENT: &str = "agent.recording_job.capture_device_recovered";

/// One episode of a job's device being away: from the first failure to its return.
pub struct DeviceLoss {
    job: String,
    recording: Option<String>,
    controller_job: bool,
    device: String,
    /// Wall time the episode began: the event's `firstObservedAt`, and its identity.
    since_ms: i64,
    since: Instant,
    /// Timeline frame where the audio stopped.
    frame: u64,
    attempts: u64,
    last_error: String,
    last_summary: Instant,
}

impl DeviceLoss {
    /// Starts an episode: logs it and, for a controller's job, queues the health event.
    pub fn begin(
        journal: &Journal,
        job: &JobRow,
        frame: u64,
        since: Instant,
        detail: &str,
    ) -> DeviceLoss {
        let since_ms = now_ms() - since.elapsed().as_millis() as i64;
        let loss = DeviceLoss {
            job: job.id.clone(),
            recording: job.recording_id.clone(),
            controller_job: job.source == JobSource::Controller,
            device: job.device.clone(),
            since_ms,
            since,
            frame,
            attempts: 0,
            last_error: detail.to_string(),
            last_summary: Instant::now(),
        };
        if frame == 0 {
            log::warn!(
                "{}: device {} not delivering ({detail}); retrying until the job's window ends",
                loss.job,
                loss.device
            );
        } else {
            log::warn!("{}: device lost ({detail}); reopening", loss.job);
        }
        loss.send(journal, DEVICE_LOST_EVENT, Severity::Critical, None);
        loss
    }

    /// The last thing the device or driver said: what a failed job's reason names.
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    pub fn attempt_failed(&mut self, error: &str) {
        self.attempts += 1;
        self.last_error = error.to_string();
        if self.last_summary.elapsed() >= Duration::from_secs(60) {
            log::warn!(
                "{}: device still lost after {:.0} s; {} reopen attempts (last: {error})",
                self.job,
                self.since.elapsed().as_secs_f64(),
                self.attempts
            );
            self.last_summary = Instant::now();
        }
    }

    /// The device delivers again: logs it and queues the recovery event.
    pub fn restored(self, journal: &Journal) {
        log::info!(
            "{}: device restored after {:.3} s, {} reopen attempts",
            self.job,
            self.since.elapsed().as_secs_f64(),
            self.attempts
        );
        self.send(
            journal,
            DEVICE_RECOVERED_EVENT,
            Severity::Info,
            Some(now_ms()),
        );
    }

    fn send(&self, journal: &Journal, kind: &str, severity: Severity, resolved_ms: Option<i64>) {
        if !self.controller_job {
            return; // a local job has no one to tell; its timeline says it all
        }
        let mut event = HealthEvent::new(kind, severity);
        // Same episode, same id: re-queueing after a crash is a no-op in the outbox.
        let local_id = format!("{}:{kind}:{}", self.job, self.since_ms);
        event.id = Some(local_id.clone());
        event.recording_id = self.recording.clone();
        event.opened_at = Some(iso(self.since_ms));
        let details = &mut event.details;
        details.insert("device".into(), Value::from(self.device.as_str()));
        details.insert("frame".into(), Value::from(self.frame));
        details.insert("firstObservedAt".into(), Value::from(iso(self.since_ms)));
        details.insert("lastError".into(), Value::from(self.last_error.as_str()));
        if let Some(resolved) = resolved_ms {
            details.insert("lastObservedAt".into(), Value::from(iso(resolved)));
            details.insert(
                "gapMs".into(),
                Value::from((resolved - self.since_ms).max(0)),
            );
        }
        let body = serde_json::to_string(&event).unwrap_or_default();
        let item = NewOutboxItem::health_event(Some(&self.job), &local_id, body, now_ms());
        if let Err(e) = journal.enqueue(&item) {
            // The timeline keeps the facts; the controller only misses the live view.
            log::warn!("{}: queueing health event {kind}: {e}", self.job);
        }
    }
}
