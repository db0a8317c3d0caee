//! The sync role's side of the job machine: it feeds each controller job the facts the
//! capture role journaled and the controller's answers, journals the new state with its
//! journal-write actions, and maps the machine's own terms onto the wire (health events,
//! report bodies).

use super::{Sync, SyncError};
use crate::capture::hotplug;
use crate::controller::protocol::{HealthEvent, Job, JobStatus, Severity};
use crate::core::job::JobState;
use crate::core::job_machine::{self, Action, Event, JobKind, MachineState, RenderedFile, Report};
use crate::journal::{JobRow, Journal, JournalError, NewOutboxItem, OutboxKind};
use crate::render::job::RenderOutcome;
use crate::segment::writer::now_ms;

impl Sync {
    /// Jobs the capture role handed over (`cached`): catch the machine up with what the
    /// capture role did, then render's result decides: upload, or keep and report.
    pub(super) fn advance_finished_captures(&mut self) -> Result<(), SyncError> {
        for job in self.controller_jobs()? {
            if job.state != JobState::Cached {
                continue;
            }
            let machine = self.machine(&job)?;
            if matches!(machine.state, JobState::Cached | JobState::Uploading)
                && machine.recording.is_some()
            {
                continue; // already handed to the outbox
            }
            let cause = job.end_cause.clone().unwrap_or_default();
            // The file the job asked for, as finalize rendered it (or why it could not); a
            // job the capture role gave up on has no trustworthy render to upload.
            let outcome = if cause.starts_with(crate::roles::capture::GAVE_UP) {
                RenderOutcome::Missing
            } else {
                crate::render::job::render_outcome(&job.dir)
            };
            let has_audio = outcome != RenderOutcome::Missing;
            let mut events = Vec::new();
            if matches!(machine.state, JobState::Claimed) {
                events.push(Event::Start);
            }
            if matches!(machine.state, JobState::Claimed | JobState::Capturing) {
                if crate::roles::runner::cause_is_capture_failure(&cause) {
                    events.push(Event::CaptureFailed {
                        detail: cause.clone(),
                    });
                } else if !cause.starts_with("stop_requested") {
                    events.push(Event::DurationReached);
                }
            }
            if matches!(
                machine.state,
                JobState::Claimed | JobState::Capturing | JobState::Stopping
            ) {
                events.push(Event::Captured { has_audio });
            }
            events.extend(render_events(&outcome));
            for event in events {
                if self.apply(&job.id, event)?.is_terminal() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The machine state of `job`: journaled facts, with the state the journal row says
    /// (the capture role moves states too).
    fn machine(&self, job: &JobRow) -> Result<MachineState, SyncError> {
        let mut m = self
            .journal
            .load_machine(&job.id)?
            .unwrap_or_else(|| MachineState::at(job.state, JobKind::Controller));
        // The capture role's `cached` means "captured and rendered": the machine catches up
        // through its own events, so keep the machine's state for that step.
        if job.state != JobState::Cached || m.state.is_terminal() {
            m.state = job.state;
        }
        Ok(m)
    }

    /// Runs one event through the machine: the new state, its facts and its journal
    /// actions are written in one transaction before anything else happens.
    pub(super) fn apply(&mut self, job_id: &str, event: Event) -> Result<JobState, SyncError> {
        let Some(job) = self.journal.job(job_id)? else {
            return Ok(JobState::Failed);
        };
        if job.state.is_terminal() {
            return Ok(job.state);
        }
        let before = self.machine(&job)?;
        self.apply_from(&job, before, event)
    }

    /// [`Sync::apply`] from a given machine state (the saved one, when following the
    /// capture role's facts as they happen).
    pub(super) fn apply_from(
        &mut self,
        job: &JobRow,
        before: MachineState,
        event: Event,
    ) -> Result<JobState, SyncError> {
        let job_id = job.id.as_str();
        let (after, actions) = match job_machine::transition(&before, &event) {
            Ok(next) => next,
            Err(illegal) => {
                log::debug!("{job_id}: {illegal}");
                return Ok(before.state);
            }
        };
        if after == before && actions.is_empty() {
            return Ok(after.state);
        }
        let now = now_ms();
        let recording_id = job.recording_id.clone();
        let moved = self.journal.atomically(|j| {
            let row_state = job.state;
            let target = after.state;
            // The capture role's `cached` is ahead of the machine's catch-up states.
            let writes_state = target != row_state
                && !(row_state == JobState::Cached
                    && !target.is_terminal()
                    && !matches!(target, JobState::Uploading));
            if writes_state {
                let cause = if target.is_terminal() {
                    after.end_cause.as_deref()
                } else {
                    None
                };
                if !j.set_job_state_if(job_id, row_state, target, cause, now)? {
                    return Ok(false); // the capture role moved first: try again next tick
                }
            }
            j.save_machine(job_id, &after, now)?;
            for action in actions.iter().filter(|a| a.is_journal_write()) {
                journal_action(j, job_id, recording_id.as_deref(), action, now)?;
            }
            Ok(true)
        })?;
        if moved && after.state != before.state {
            log::info!("{job_id}: {} -> {} ({event:?})", before.state, after.state);
        }
        // The capture role reads a stop from the journal; tell it there is one.
        if moved && actions.iter().any(|a| matches!(a, Action::StopCapture)) {
            hotplug::tell_capture(&self.settings.state_dir, hotplug::STOP_NEWS, job_id);
        }
        Ok(if moved { after.state } else { job.state })
    }
}

/// Applies one of a transition's journal-write actions inside its transaction: outbox
/// rows (reports, health events, uploads), a dropped upload, a flag in the log.
fn journal_action(
    j: &Journal,
    job_id: &str,
    recording_id: Option<&str>,
    action: &Action,
    now: i64,
) -> Result<(), JournalError> {
    match action {
        Action::EnqueueReport(report) if report.post().is_some() => {
            j.enqueue(&NewOutboxItem::terminal_report(
                job_id,
                report_body(report),
                now,
            ))?;
        }
        Action::EnqueueReport(_) => {}
        Action::EnqueueHealthEvent(alert) => {
            let mut ev = health_event(alert);
            ev.recording_id = ev.recording_id.or_else(|| recording_id.map(str::to_string));
            let local_id = ev
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            ev.id = Some(local_id.clone());
            let body = serde_json::to_string(&ev).unwrap_or_default();
            j.enqueue(&NewOutboxItem::health_event(
                Some(job_id),
                &local_id,
                body,
                now,
            ))?;
        }
        Action::Upload { file, attempt } => {
            let body = serde_json::to_string(file).unwrap_or_default();
            j.enqueue(&NewOutboxItem::upload(job_id, *attempt, body, now))?;
        }
        Action::UploadChunk { index } => {
            let body = super::sending::LiveChunk { chunk: *index }.body();
            j.enqueue(&NewOutboxItem::chunk_upload(job_id, *index, body, now))?;
        }
        Action::DropUpload => {
            j.abandon_pending(
                job_id,
                OutboxKind::Upload,
                "the controller ended the job",
                now,
            )?;
        }
        Action::FlagLocalRecording { reason } => {
            log::warn!("{job_id}: recording kept in the local library, flagged: {reason}");
        }
        Action::StartCapture | Action::StopCapture | Action::Render => {}
    }
    Ok(())
}

/// What the controller's view of a job means for the machine, if anything.
pub(super) fn controller_event(job: &Job) -> Option<Event> {
    let reason = job.failure_reason.clone().unwrap_or_default();
    match job.status.as_ref()? {
        JobStatus::StopRequested => Some(Event::StopRequested),
        JobStatus::Cancelled => Some(Event::CancelledByController { reason }),
        JobStatus::Failed if reason == "lease_expired" => Some(Event::LeaseLost),
        JobStatus::Failed => Some(Event::FailedOnController { reason }),
        JobStatus::Completed => Some(Event::CompletedOnController),
        _ => None,
    }
}

/// The job machine's alert as the protocol's health event.
pub(super) fn health_event(alert: &job_machine::Alert) -> HealthEvent {
    let severity = match alert.level {
        job_machine::AlertLevel::Warning => Severity::Warning,
        job_machine::AlertLevel::Critical => Severity::Critical,
    };
    let mut ev = HealthEvent::new(alert.kind.clone(), severity);
    ev.details = alert.details.clone();
    ev
}

pub(super) fn report_body(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

/// What the render's outcome means for the machine: the file (hashed) or why there is none.
fn render_events(outcome: &RenderOutcome) -> Vec<Event> {
    match outcome {
        RenderOutcome::Missing => Vec::new(),
        RenderOutcome::Refused(detail) => vec![
            Event::RenderStarted,
            Event::RenderFailed {
                detail: detail.clone(),
            },
        ],
        RenderOutcome::Ready(d) => match d.hash() {
            Ok((sha256, bytes)) => vec![
                Event::RenderStarted,
                Event::Rendered(RenderedFile {
                    path: d.path.clone(),
                    sha256,
                    bytes,
                }),
            ],
            Err(e) => vec![Event::RenderFailed {
                detail: format!("reading {}: {e}", d.path.display()),
            }],
        },
    }
}
