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

    /// Hands the rendered recording to the upload lane; its answer comes back through
    /// [`Sync::uploaded`].
    fn start_upload(&mut self, row: OutboxRow) -> Result<(), SyncError> {
        let (job, controller_id) = self.controller_id(&row)?;
        let Some(job) = job else {
            return self.settle(
                &row,
                Delivery::GiveUp("job no longer in the journal".into()),
            );
        };
        if job.state.is_terminal() {
            return self.settle(&row, Delivery::GiveUp("the job has ended".into()));
        }
        let acked: HashSet<u32> = self
            .journal
            .uploads(&job.id)?
            .into_iter()
            .filter(|u| u.acknowledged_at_ms.is_some())
            .map(|u| u.chunk)
            .collect();
        let sending = match LiveChunk::parse(&row.body) {
            // A chunk rendered while the job captures: its own row.
            Some(live) if acked.contains(&live.chunk) => {
                return self.settle(&row, Delivery::Done);
            }
            Some(live) => match live.sending(&job, &acked) {
                Some(sending) => sending,
                None => {
                    let why = format!("chunk {} is not in chunks.json", live.chunk);
                    return self.settle(&row, Delivery::GiveUp(why));
                }
            },
            None => {
                let Ok(file) = serde_json::from_str::<RenderedFile>(&row.body) else {
                    return self.settle(&row, Delivery::GiveUp("unreadable upload row".into()));
                };
                if let Err(e) = self.apply(&job.id, Event::UploadStarted) {
                    return self.settle(&row, Delivery::Retry(e.to_string()));
                }
                if let Some(why) = enhancement_failure(&job.dir) {
                    self.enhancement_failed(&job, None, &why)?;
                }
                next_sending(&job, &file, &acked)
            }
        };
        if let Some(why) = &sending.enhancement_error {
            self.enhancement_failed(&job, Some(sending.chunk_index()), why)?;
        }
        let recording_id = job.recording_id.clone().unwrap_or_default();
        let id = row.id;
        let job_id = job.id.clone();
        // The bytes: a chunk's file, or the whole render (its file, or the WAV streamed
        // from the segments, hashed at finalize).
        let body: Box<dyn UploadBody> = match (&sending.chunk, deliverable(&job.dir)) {
            (None, Some(d)) if sending.rendition != Some(Rendition::Enhanced) => d.body(),
            _ => Box::new(FileBody(sending.path.clone())),
        };
        let job_dir = job.dir.clone();
        let task = Box::new(move |c: &Client| {
            let request = UploadRequest {
                body: &*body,
                job_id: &controller_id,
                file_name: &sending.file_name,
                mime_type: &sending.mime_type,
                duration_seconds: sending.duration_seconds,
                rendition: sending.rendition,
                chunk: sending.chunk.map(|(i, _)| i),
                chunk_total: sending.chunk_total(),
            };
            let result = c.put_cache_file(&recording_id, &request);
            // 409: learn why from the job itself; the verdict decides, not the 409.
            let verdict = match &result {
                Err(CallError::Conflict(_)) => c.get_job(&controller_id).ok(),
                _ => None,
            };
            Done::Upload(Box::new(Uploaded {
                row,
                job_id,
                job_dir,
                sending,
                result,
                verdict,
            }))
        });
        self.hand_over(Lane::Upload, task, &[id]);
        Ok(())
    }

    /// An upload's answer, through the machine; an accepted upload is journaled with the
    /// checksum the controller stored.
    pub(super) fn uploaded(&mut self, up: Uploaded) -> Result<(), SyncError> {
        self.in_flight.remove(&up.row.id);
        let job_id = up.job_id.as_str();
        let (event, delivery) = match up.result {
            Ok(cached) => {
                log::info!(
                    "{job_id}: uploaded {}{} ({} bytes, {})",
                    untrusted(&up.sending.file_name),
                    up.sending
                        .rendition
                        .map_or(String::new(), |r| format!(" ({})", r.as_str())),
                    cached.size,
                    untrusted(&cached.checksum)
                );
                // The client checked the controller's checksum against the bytes it sent.
                let sha = cached.sha256_hex().unwrap_or_default();
                // Relative to the job's directory, like segment paths; a WAV streamed from
                // the segments as the view it was made from (never the controller's file
                // name: controller data is not a path).
                let name = match up.sending.path.is_dir() {
                    true => Path::new(crate::render::job::RENDER_FILE),
                    false => relative(&up.job_dir, &up.sending.path),
                };
                let chunk = up.sending.upload_row();
                self.journal.atomically(|j| {
                    j.record_upload(job_id, chunk, name, cached.size, &sha)?;
                    j.acknowledge_upload(job_id, chunk, now_ms())?;
                    Ok(())
                })?;
                let raw = up.sending.rendition == Some(Rendition::Raw);
                if up.sending.chunk.is_some() && !raw {
                    self.chunk_uploaded(job_id, &up.sending, &cached)?;
                }
                // A live chunk's row is done with its primary (its raw one goes first).
                if up.sending.is_live() && !raw {
                    return self.settle(&up.row, Delivery::Done);
                }
                if up.sending.is_partial() {
                    // More chunks to go: the row stays due, the next tick sends the next.
                    self.journal.reset_attempts(up.row.id)?;
                    return Ok(());
                }
                self.retention.soon = true;
                (
                    Event::UploadAccepted {
                        checksum_matches: true,
                    },
                    Delivery::Done,
                )
            }
            Err(CallError::ChecksumMismatch { sent, stored }) => {
                log::error!(
                    "{job_id}: controller stored {} for {}, we sent {sent}; sending it again",
                    untrusted(&stored),
                    untrusted(&up.sending.file_name)
                );
                // A chunk before the last did not complete the job; the last one did.
                let event = if up.sending.is_partial() {
                    Event::ChunkChecksumMismatch
                } else {
                    Event::UploadAccepted {
                        checksum_matches: false,
                    }
                };
                // A chunk sent while capturing is retried on its own row; once the job
                // is rendered, the machine re-issues the job's own row, which sends it.
                let capturing = self.journal.job(job_id)?.is_some_and(|j| {
                    matches!(
                        j.state,
                        JobState::Capturing
                            | JobState::Stopping
                            | JobState::Captured
                            | JobState::Rendering
                    )
                });
                let delivery = match up.sending.is_live() && capturing {
                    true => Delivery::Retry(format!("checksum {stored} is not ours")),
                    false => Delivery::Done,
                };
                (event, delivery)
            }
            Err(CallError::Conflict(body)) => {
                let verdict = up.verdict.as_ref().and_then(controller_event);
                log::warn!(
                    "{job_id}: upload refused (409 {}); verdict {verdict:?}",
                    untrusted(&body.error)
                );
                (
                    verdict.unwrap_or(Event::UploadRefused409),
                    Delivery::GiveUp(format!("409 {}", body.error)),
                )
            }
            Err(e) => {
                let retryable = e.is_retryable() && up.row.attempts + 1 < MAX_UPLOAD_ATTEMPTS;
                if retryable {
                    self.trouble("upload", &e);
                } else if e.is_retryable() {
                    log::error!(
                        "{job_id}: giving up the upload after {MAX_UPLOAD_ATTEMPTS} tries: {e}"
                    );
                }
                let delivery = if retryable {
                    Delivery::Retry(e.to_string())
                } else {
                    Delivery::GiveUp(e.to_string())
                };
                (
                    Event::UploadFailed {
                        retryable,
                        detail: e.to_string(),
                    },
                    delivery,
                )
            }
        };
        if let Err(e) = self.apply(job_id, event) {
            log::error!("{job_id}: {e}");
        }
        self.settle(&up.row, delivery)
    }

    /// Rakkr's `enhancement_failed` warning: the job asked for an enhanced rendition that
    /// could not be made (of its `chunk`), so the raw render is its primary. Once per job
    /// or chunk (its key).
    fn enhancement_failed(
        &mut self,
        job: &JobRow,
        chunk: Option<u32>,
        why: &str,
    ) -> Result<(), SyncError> {
        let mut event =
            HealthEvent::new("agent.recording_job.enhancement_failed", Severity::Warning);
        let key = match chunk {
            Some(k) => format!("{}-chunk-{k}-enhancement-failed", job.id),
            None => format!("{}-enhancement-failed", job.id),
        };
        event.id = Some(key.clone());
        event.recording_id = job.recording_id.clone();
        event.details.insert("reason".into(), why.into());
        if let Some(k) = chunk {
            event.details.insert("chunk".into(), k.into());
        }
        let body = serde_json::to_string(&event).unwrap_or_default();
        self.journal
            .enqueue(&NewOutboxItem::health_event(None, &key, body, now_ms()))?;
        Ok(())
    }

    /// Rakkr's `chunk_uploaded` health event, once per chunk (keyed by job and index).
    fn chunk_uploaded(
        &mut self,
        job_id: &str,
        sending: &Sending,
        cached: &CachedFile,
    ) -> Result<(), SyncError> {
        let Some(job) = self.journal.job(job_id)? else {
            return Ok(());
        };
        let mut event = HealthEvent::new("agent.recording_job.chunk_uploaded", Severity::Info);
        let key = format!("{job_id}-chunk-{}-uploaded", sending.chunk_index());
        event.id = Some(key.clone());
        event.recording_id = job.recording_id.clone();
        let details = &mut event.details;
        details.insert("chunk".into(), sending.chunk_index().into());
        details.insert("checksum".into(), cached.checksum.clone().into());
        details.insert("durationSeconds".into(), sending.duration_seconds.into());
        details.insert("fileName".into(), sending.file_name.clone().into());
        let body = serde_json::to_string(&event).unwrap_or_default();
        // Not ordered behind the job's upload row: it goes out as the chunk lands.
        self.journal
            .enqueue(&NewOutboxItem::health_event(None, &key, body, now_ms()))?;
        Ok(())
    }
}
