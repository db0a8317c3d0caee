//! Running jobs' heartbeats (or polls) on their own lanes, while the capture role's beat
//! and the job's frames say the capture is alive: the controller's lease tells the truth.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::lanes::Lane;
use super::{Done, Sync, SyncError, due};
use crate::capture::StopFlag;
use crate::controller::client::{CallError, Client};
use crate::core::job::JobState;
use crate::journal::{JobRow, JobSource};
use crate::segment::writer::now_ms;

/// A job's progress as the sync role last saw it: heartbeats only while it advances.
pub(super) struct Watch {
    frames: u64,
    advanced_at: Instant,
    pub(super) polled_at: Option<Instant>,
}

impl Sync {
    pub(super) fn controller_jobs(&self) -> Result<Vec<JobRow>, SyncError> {
        Ok(self
            .journal
            .non_terminal_jobs()?
            .into_iter()
            .filter(|j| j.source == JobSource::Controller)
            .collect())
    }

    pub(super) fn free_capacity(&self) -> Result<u32, SyncError> {
        let busy = self
            .controller_jobs()?
            .iter()
            .filter(|j| is_live(j.state))
            .count() as u32;
        Ok(self.capacity.saturating_sub(busy))
    }

    /// Hands due heartbeats (and polls) of running jobs to their lanes.
    pub(super) fn poll_jobs(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        let busy_max = self.settings.capture_beat_max_age.as_millis() as i64;
        let capture_alive = self.journal.beat("capture")?.is_some_and(|b| {
            now_ms() - b.last_beat_ms
                <= crate::roles::capture::beat_max_age_ms(&b.progress, busy_max)
        });
        let jobs = self.controller_jobs()?;
        let live: HashSet<&str> = jobs
            .iter()
            .filter(|j| is_leased(j.state))
            .map(|j| j.id.as_str())
            .collect();
        self.watches.retain(|id, _| live.contains(id.as_str()));
        self.lanes.retire_jobs_except(&|id| live.contains(id));
        for job in jobs.iter().filter(|j| is_leased(j.state)) {
            if shutdown.is_stopped() {
                break;
            }
            let lane = Lane::Job(job.id.clone());
            if self.lanes.is_busy(&lane) {
                continue; // its last call has not come back: it holds only this job
            }
            // A group member advances with its leader's capture.
            let frames = match self.journal.group_leader(&job.id)? {
                Some(leader) if leader != job.id => self
                    .journal
                    .job(&leader)?
                    .map_or(job.captured_frames, |l| l.captured_frames),
                _ => job.captured_frames,
            };
            let watch = self.watches.entry(job.id.clone()).or_insert(Watch {
                frames,
                advanced_at: Instant::now(),
                polled_at: None,
            });
            if frames != watch.frames {
                watch.frames = frames;
                watch.advanced_at = Instant::now();
            }
            if !due(
                Instant::now(),
                watch.polled_at,
                self.settings.job_poll_every,
            ) {
                continue;
            }
            // Liveness comes from the journal: a capture that stopped beating or advancing
            // gets no heartbeat, and the controller's lease tells the truth about it.
            let grace = if job.state == JobState::Claimed {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(5)
            };
            let heartbeat = match job.state {
                // Rendered by the capture role: alive while it beats.
                JobState::Captured | JobState::Rendering => capture_alive,
                // Delivered by this role, whose upload retries are bounded.
                JobState::Cached | JobState::Uploading => true,
                _ => capture_alive && watch.advanced_at.elapsed() <= grace,
            };
            let controller_id = job
                .controller_job_id
                .clone()
                .unwrap_or_else(|| job.id.clone());
            let local_id = job.id.clone();
            let task = Box::new(move |c: &Client| job_call(c, local_id, &controller_id, heartbeat));
            if self.lanes.submit(lane, task)
                && let Some(w) = self.watches.get_mut(&job.id)
            {
                w.polled_at = Some(Instant::now());
            }
        }
        Ok(())
    }
}

/// A job's heartbeat (a poll when it is not advancing, or after a 409), on its lane.
fn job_call(c: &Client, local_id: String, controller_id: &str, heartbeat: bool) -> Done {
    let poll = |local_id: String| match c.get_job(controller_id) {
        Ok(job) => Done::Job {
            local_id,
            seen: Some(Box::new(job)),
            failed: None,
        },
        Err(e) => Done::Job {
            local_id,
            seen: None,
            failed: Some(("job poll", e)),
        },
    };
    if !heartbeat {
        return poll(local_id);
    }
    match c.job_heartbeat(controller_id) {
        Ok(seen) => Done::Job {
            local_id,
            seen: Some(Box::new(seen)),
            failed: None,
        },
        Err(CallError::Conflict(_)) => poll(local_id),
        Err(e) => Done::Job {
            local_id,
            seen: None,
            failed: Some(("job heartbeat", e)),
        },
    }
}

/// The controller's lease must be kept from the claim until the upload is answered: a
/// long render or a chunked upload outlasts the 30 s lease.
fn is_leased(state: JobState) -> bool {
    !state.is_terminal()
}

pub(super) fn is_live(state: JobState) -> bool {
    matches!(
        state,
        JobState::Claimed | JobState::Capturing | JobState::Stopping
    )
}
