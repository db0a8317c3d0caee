//! Delivering the outbox from the sync loop: terminal reports and health events go to the
//! outbox lane one at a time, uploads to the upload lane; the loop journals each answer
//! when it comes back (the journal stays the truth: a row is delivered only once the
//! controller said so, an upload acknowledged only with the controller's checksum).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lanes::Lane;
use super::sending::{LiveChunk, Sending, next_sending, relative};
use super::{Done, Sync, SyncError, controller_event, jitter};
use crate::capture::StopFlag;
use crate::controller::client::{
    CallError, Client, FileBody, Rendition, UploadBody, UploadRequest,
};
use crate::controller::protocol::{CachedFile, HealthEvent, Job, Severity};
use crate::core::backoff::Backoff;
use crate::core::job::JobState;
use crate::core::job_machine::{self, Event, RenderedFile, Report};
use crate::journal::NewOutboxItem;
use crate::journal::{JobRow, OutboxKind, OutboxRow};
use crate::logging::untrusted;
use crate::render::enhance::job::enhancement_failure;
use crate::render::job::deliverable;
use crate::segment::writer::now_ms;

mod upload;

/// Due rows looked at per tick.
const DUE_ROWS_PER_TICK: u32 = 32;

/// Failed tries of one upload (of one chunk: an acknowledged chunk starts the count again)
/// before the job ends `failed` with its audio kept: with the 1 s .. 60 s backoff, about
/// a quarter of an hour of a controller that answers but will not take the file.
const MAX_UPLOAD_ATTEMPTS: u32 = 20;

/// A terminal report or health event, answered.
pub(super) struct Sent {
    row: OutboxRow,
    what: &'static str,
    result: Result<(), CallError>,
}

/// An upload, answered; on a 409, the job as the controller then described it.
pub(super) struct Uploaded {
    row: OutboxRow,
    job_id: String,
    job_dir: PathBuf,
    sending: Sending,
    result: Result<CachedFile, CallError>,
    verdict: Option<Job>,
}

enum Delivery {
    Done,
    Retry(String),
    GiveUp(String),
}

impl Sync {
    /// Hands due outbox rows to their lanes, oldest first, skipping rows in flight.
    pub(super) fn deliver_outbox(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        if self.lane_taken(&Lane::Outbox) && self.lane_taken(&Lane::Upload) {
            return Ok(());
        }
        for row in self.journal.due_rows(now_ms(), DUE_ROWS_PER_TICK)? {
            if shutdown.is_stopped() {
                return Ok(());
            }
            if self.in_flight.contains(&row.id) {
                continue;
            }
            match row.kind {
                OutboxKind::JobHeartbeat => {
                    // Heartbeats are sent live, never queued.
                    self.journal.mark_delivered(row.id, now_ms())?;
                }
                OutboxKind::Upload if !self.lane_taken(&Lane::Upload) => {
                    self.start_upload(row)?;
                }
                OutboxKind::TerminalReport | OutboxKind::HealthEvent
                    if !self.lane_taken(&Lane::Outbox) =>
                {
                    self.start_delivery(row)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn controller_id(&self, row: &OutboxRow) -> Result<(Option<JobRow>, String), SyncError> {
        let job = match row.job_id.as_deref() {
            Some(id) => self.journal.job(id)?,
            None => None,
        };
        let controller_id = job
            .as_ref()
            .and_then(|j| j.controller_job_id.clone())
            .or_else(|| row.job_id.clone())
            .unwrap_or_default();
        Ok((job, controller_id))
    }

    fn start_delivery(&mut self, row: OutboxRow) -> Result<(), SyncError> {
        let (_, controller_id) = self.controller_id(&row)?;
        let id = row.id;
        let task: Box<dyn FnOnce(&Client) -> Done + Send> = match row.kind {
            OutboxKind::HealthEvent => {
                let Ok(ev) = serde_json::from_str::<HealthEvent>(&row.body) else {
                    return self.settle(&row, Delivery::GiveUp("unreadable health event".into()));
                };
                Box::new(move |c: &Client| {
                    Done::Outbox(Box::new(Sent {
                        result: c.health_event(&ev),
                        what: "health event",
                        row,
                    }))
                })
            }
            _ => {
                let Ok(report) = serde_json::from_str::<Report>(&row.body) else {
                    return self
                        .settle(&row, Delivery::GiveUp("unreadable terminal report".into()));
                };
                Box::new(move |c: &Client| {
                    let result = match report.post() {
                        Some((job_machine::TerminalPost::Cancelled, reason)) => {
                            c.post_cancelled(&controller_id, reason)
                        }
                        Some((job_machine::TerminalPost::Failed, reason)) => {
                            c.post_failed(&controller_id, reason)
                        }
                        None => Ok(()),
                    };
                    Done::Outbox(Box::new(Sent {
                        result,
                        what: "terminal report",
                        row,
                    }))
                })
            }
        };
        self.hand_over(Lane::Outbox, task, &[id]);
        Ok(())
    }

    /// Submits `task`; inside a batch it waits for the commit (`Sync::batched`), so
    /// nothing is sent before what led to it is durable.
    fn hand_over(
        &mut self,
        lane: Lane,
        task: Box<dyn FnOnce(&Client) -> Done + Send>,
        ids: &[i64],
    ) {
        if self.journal.in_batch() {
            self.held_back.push((lane, task, ids.to_vec()));
        } else if self.lanes.submit(lane, task) {
            self.in_flight.extend(ids);
        }
    }

    /// Submits the handovers held back for the batch that just committed.
    pub(super) fn release_held_back(&mut self) {
        for (lane, task, ids) in std::mem::take(&mut self.held_back) {
            self.hand_over(lane, task, &ids);
        }
    }

    /// Whether `lane` has a call out, or one waiting for the batch's commit.
    fn lane_taken(&self, lane: &Lane) -> bool {
        self.lanes.is_busy(lane) || self.held_back.iter().any(|(l, ..)| l == lane)
    }

    /// A terminal report's or health event's answer.
    pub(super) fn sent(&mut self, sent: Sent) -> Result<(), SyncError> {
        self.in_flight.remove(&sent.row.id);
        let delivery = match sent.result {
            // A different terminal state already holds: the controller decided.
            Err(CallError::NotFound(body)) if sent.row.kind == OutboxKind::TerminalReport => {
                log::info!(
                    "{}: controller already ended the job ({}); report not needed",
                    sent.row.job_id.as_deref().unwrap_or("-"),
                    untrusted(&body.error)
                );
                Delivery::Done
            }
            other => self.classify(other, sent.what),
        };
        self.settle(&sent.row, delivery)
    }

    fn classify(&mut self, result: Result<(), CallError>, what: &'static str) -> Delivery {
        match result {
            Ok(()) => Delivery::Done,
            Err(e) if e.is_retryable() => {
                self.trouble(what, &e);
                Delivery::Retry(e.to_string())
            }
            Err(e) => Delivery::GiveUp(e.to_string()),
        }
    }

    /// Journals what became of a row.
    fn settle(&mut self, row: &OutboxRow, delivery: Delivery) -> Result<(), SyncError> {
        let now = now_ms();
        match delivery {
            Delivery::Done => {
                self.journal.mark_delivered(row.id, now)?;
            }
            Delivery::Retry(why) => {
                let delay = Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
                    .with_attempt(row.attempts)
                    .next_delay(jitter());
                self.journal
                    .mark_failed(row.id, &why, now + delay.as_millis() as i64)?;
            }
            Delivery::GiveUp(why) => {
                log::warn!(
                    "outbox row {} ({}) abandoned: {}",
                    row.id,
                    row.kind,
                    untrusted(&why)
                );
                self.journal.mark_abandoned(row.id, &why, now)?;
            }
        }
        Ok(())
    }
}
