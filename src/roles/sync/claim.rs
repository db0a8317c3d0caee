//! Taking a claimed group into the journal: each valid job under a new local id (its
//! directory's name), each invalid one reported failed or, without a usable id, logged and
//! skipped. The controller's ids are columns, never path parts.

use std::collections::HashMap;
use std::path::Path;

use super::{Sync, SyncError, capture_backend, report_body};
use crate::capture::hotplug;
use crate::controller::client::{CallError, Client};
use crate::controller::protocol::{ChannelMapBundle, HealthEvent, Job, JobRejection, Severity};
use crate::core::job::JobState;
use crate::core::job_machine::{JobKind, MachineState, Report};
use crate::journal::{JobSource, NewJob, NewOutboxItem};
use crate::logging::untrusted;
use crate::render::channel_map::pick_assignment;
use crate::segment::writer::now_ms;

/// Most jobs taken from one claim reply; a controller that leases more gets the rest back
/// by lease expiry.
const MAX_JOBS_PER_CLAIM: usize = 64;

/// Most distinct skipped jobs remembered (so each is logged once, in bounded memory).
const MAX_SKIPPED_REMEMBERED: usize = 1024;

/// Jobs without a usable id already logged, by a hash of what they sent.
#[derive(Default)]
pub(super) struct Skipped(std::collections::HashSet<u64>);

impl Skipped {
    /// True the first time this (id, reason) is seen.
    fn note(&mut self, raw_id: &str, reason: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (raw_id, reason).hash(&mut h);
        if self.0.len() >= MAX_SKIPPED_REMEMBERED {
            self.0.clear();
        }
        self.0.insert(h.finish())
    }
}

/// A claim's answer: the jobs, and the node's channel-map assignments when a job pins no
/// `channelMap` (fetched on the claim lane, right after the claim, so the journaled
/// command already says which map the render uses).
pub(super) struct Claimed {
    jobs: Vec<Job>,
    maps: Option<Result<Vec<ChannelMapBundle>, CallError>>,
}

impl Claimed {
    /// The controller had no job for us.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// The claim lane's call: claim, then fetch the assignments if a job needs them.
pub(super) fn claim_with_maps(c: &Client) -> Result<Claimed, CallError> {
    let jobs = c.claim_next_group()?;
    let needs_map = jobs.iter().any(|j| j.command.channel_map.is_none());
    let maps = needs_map.then(|| c.channel_map_assignments());
    Ok(Claimed { jobs, maps })
}

/// Gives each job that pins no map the one assigned to its interface, else its node's.
/// Returns the ids of the jobs whose lookup failed (they render every channel).
fn assign_maps(claimed: &mut Claimed, node_id: &str) -> Vec<String> {
    let mut failed = Vec::new();
    for job in claimed
        .jobs
        .iter_mut()
        .filter(|j| j.command.channel_map.is_none())
    {
        match &claimed.maps {
            Some(Ok(bundles)) => {
                let device = job.command.capture_device.as_deref().unwrap_or("");
                let iface = job.command.capture_interface_id.as_deref();
                if let Some(map) = pick_assignment(bundles, iface, device, node_id) {
                    job.assign_channel_map(map);
                }
            }
            Some(Err(_)) => failed.extend(job.id.clone()),
            None => {}
        }
    }
    failed
}

/// A directory name for a claimed job, made here: never anything the controller sent.
fn new_local_id() -> String {
    format!("ctl-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

impl Sync {
    /// Puts a claimed group into the journal; the capture role picks the jobs up.
    pub(super) fn take_claimed_group(&mut self, mut claimed: Claimed) -> Result<(), SyncError> {
        let lookup_failed = assign_maps(&mut claimed, self.lanes.node_id());
        if let Some(Err(e)) = &claimed.maps {
            self.trouble("channel-map assignments", e);
        }
        let lookup_error = claimed_error(claimed.maps.as_ref());
        let mut jobs = claimed.jobs;
        if jobs.len() > MAX_JOBS_PER_CLAIM {
            log::error!(
                "controller leased {} jobs in one claim; taking the first {MAX_JOBS_PER_CLAIM}",
                jobs.len()
            );
            jobs.truncate(MAX_JOBS_PER_CLAIM);
        }
        // A capture group shares one device and window: captured once, at the group's
        // channel span, by its first job; each member keeps its own channel subset.
        let span = jobs.iter().filter_map(|j| j.command.capture_channels).max();
        let mut leaders: HashMap<String, String> = HashMap::new();
        let mut claimed = Vec::new();
        for job in jobs {
            let controller_id = job.id.clone().unwrap_or_default();
            let group = job.command.capture_group_id.clone();
            let channels = if group.is_some() { span } else { None };
            // The group's first valid job leads; membership is written with the job, in one
            // transaction, so the capture role never sees a member without its group.
            let leader = group.as_ref().and_then(|g| leaders.get(g).cloned());
            let Some(id) = self.take_claimed(job, channels, leader)? else {
                continue;
            };
            if let Some(group) = group {
                leaders.entry(group).or_insert_with(|| id.clone());
            }
            if lookup_failed.contains(&controller_id) {
                self.map_lookup_failed(&id, lookup_error.clone())?;
            }
            claimed.push(id);
        }
        // Wake the capture role now (after the whole group is in the journal) rather than
        // at its next journal poll.
        if let Some(id) = claimed.first() {
            hotplug::tell_capture(&self.settings.state_dir, hotplug::CLAIM_NEWS, id);
        }
        Ok(())
    }

    /// Rakkr's agent says so when it cannot learn a job's map: a warning on the recording.
    fn map_lookup_failed(&mut self, local_id: &str, error: String) -> Result<(), SyncError> {
        let Some(job) = self.journal.job(local_id)? else {
            return Ok(());
        };
        let mut event = HealthEvent::new(
            "agent.recording_job.channel_map_lookup_failed",
            Severity::Warning,
        );
        event.id = Some(format!("{local_id}-channel-map-lookup"));
        event.recording_id = job.recording_id.clone();
        event.details.insert("error".into(), error.into());
        event.details.insert(
            "recordingJobId".into(),
            job.controller_job_id.clone().unwrap_or_default().into(),
        );
        let body = serde_json::to_string(&event).unwrap_or_default();
        let key = event.id.clone().unwrap_or_default();
        // Not ordered with the job's rows: a warning must never hold up its delivery.
        self.journal
            .enqueue(&NewOutboxItem::health_event(None, &key, body, now_ms()))?;
        Ok(())
    }

    /// Puts a claimed job in the journal under a new local id (the capture role takes it
    /// from there); returns that id when it is a new, valid job. `channels` widens it to
    /// its group's span; `group_leader` is the local id of its group's first job.
    fn take_claimed(
        &mut self,
        job: Job,
        channels: Option<u16>,
        group_leader: Option<String>,
    ) -> Result<Option<String>, SyncError> {
        let valid = match job.validate() {
            Ok(valid) => valid,
            Err(rejection) => {
                self.refuse(job.id.as_deref(), &rejection)?;
                return Ok(None);
            }
        };
        if self.journal.job_by_controller_id(&valid.id)?.is_some() {
            return Ok(None); // claimed again after a restart: we have it already
        }
        let mut spec = valid.stream_spec();
        if let Some(span) = channels {
            spec.channels = spec.channels.max(span);
        }
        let wanted = valid.job.command.capture_backend.as_deref();
        let source = capture_backend::pcm_for(wanted, &valid.device)
            .and_then(|s| capture_backend::check_available(&s, spec).map(|()| s));
        let source = match source {
            Ok(source) => {
                self.node.backend_available(&self.journal, &source.backend);
                source
            }
            Err(reason) => {
                log::error!("job {:?}: {reason}", untrusted(&valid.id));
                let backend = wanted.unwrap_or("alsa").to_ascii_lowercase();
                self.node
                    .backend_unavailable(&self.journal, &backend, &reason);
                self.fail_unclaimed(&valid.id, reason)?;
                return Ok(None);
            }
        };
        let backend = self
            .settings
            .backend_override
            .clone()
            .unwrap_or_else(|| "alsa".to_string());
        let local_id = new_local_id();
        let now = now_ms();
        let new = NewJob {
            id: local_id.clone(),
            source: JobSource::Controller,
            controller_job_id: Some(valid.id.clone()),
            recording_id: Some(valid.recording_id.clone()),
            command_json: serde_json::to_string(&valid.job).unwrap_or_default(),
            backend,
            device: source.device,
            spec,
            duration_frames: Some(spec.frames_in(valid.duration)),
            dir: self.settings.state_dir.join(&local_id),
            state: JobState::Claimed,
            created_at_ms: now,
        };
        let machine = MachineState::new(JobKind::Controller);
        // A group's first job leads itself.
        let leader = group_leader.or_else(|| {
            job.command
                .capture_group_id
                .is_some()
                .then(|| local_id.clone())
        });
        self.journal.atomically(|j| {
            j.create_job(&new)?;
            j.save_machine(&new.id, &machine, now)?;
            if let Some(leader) = &leader {
                j.set_group_leader(&new.id, leader)?;
            }
            Ok(())
        })?;
        log::info!(
            "{local_id}: claimed {} ({spec}, {:?}, device {})",
            valid.id,
            valid.duration,
            untrusted(&valid.device)
        );
        Ok(Some(local_id))
    }

    /// A job that fails validation: reported failed with the reason (once) when its id
    /// can be named in a report, logged and skipped otherwise. Never left `claimed`.
    fn refuse(&mut self, raw_id: Option<&str>, rejection: &JobRejection) -> Result<(), SyncError> {
        let reason = rejection.reason();
        let Some(controller_id) = rejection.job_id.clone() else {
            // Offered again at every claim until its lease expires: said once.
            let first = self.skipped.note(raw_id.unwrap_or(""), &reason);
            let shown = raw_id.map_or("missing".to_string(), |id| format!("{:?}", untrusted(id)));
            if first {
                log::error!(
                    "controller sent a job without a usable id (id {shown}); skipped: {}",
                    untrusted(&reason)
                );
            } else {
                log::debug!("skipped again: a job without a usable id (id {shown})");
            }
            return Ok(());
        };
        if self.journal.job_by_controller_id(&controller_id)?.is_some() {
            return Ok(()); // refused and reported already
        }
        log::error!(
            "job {:?}: refused, reporting it failed: {}",
            untrusted(&controller_id),
            untrusted(&reason)
        );
        self.fail_unclaimed(&controller_id, reason)
    }

    /// Journals a job we will not run as failed with `reason`, its report queued: one
    /// terminal state, one report, no directory.
    fn fail_unclaimed(&mut self, controller_id: &str, reason: String) -> Result<(), SyncError> {
        let local_id = new_local_id();
        let now = now_ms();
        let report = Report::Failed {
            reason: reason.clone(),
        };
        let row = placeholder_job(&local_id, controller_id, &self.settings.state_dir, now);
        self.journal.atomically(|j| {
            j.create_job(&row)?;
            j.set_job_state(&local_id, JobState::Failed, Some(&reason), now)?;
            j.enqueue(&NewOutboxItem::terminal_report(
                &local_id,
                report_body(&report),
                now,
            ))?;
            Ok(())
        })?;
        Ok(())
    }
}

fn claimed_error(maps: Option<&Result<Vec<ChannelMapBundle>, CallError>>) -> String {
    match maps {
        Some(Err(e)) => e.to_string(),
        _ => String::new(),
    }
}

/// A row for a job we refuse: enough to carry its terminal report. The controller's id
/// is only a column; the (never created) directory is named by the local id.
fn placeholder_job(local_id: &str, controller_id: &str, state_dir: &Path, now: i64) -> NewJob {
    NewJob {
        id: local_id.to_string(),
        source: JobSource::Controller,
        controller_job_id: Some(controller_id.to_string()),
        recording_id: None,
        command_json: "{}".into(),
        backend: String::new(),
        device: String::new(),
        spec: crate::core::format::StreamSpec {
            format: crate::core::format::SampleFormat::S16Le,
            rate: 48_000,
            channels: 1,
        },
        duration_frames: None,
        dir: state_dir.join(local_id),
        state: JobState::Claimed,
        created_at_ms: now,
    }
}
