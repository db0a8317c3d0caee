//! `edgerec sync`: the sync role, the only part that talks to the controller. It claims
//! jobs into the journal, heartbeats them while the capture role's beat and frame count
//! advance, relays stop/cancel into the journal, uploads rendered recordings and delivers
//! the outbox. Every decision about a controller job goes through the job machine
//! (`core::job_machine`); its state is journaled before its actions run.
//!
//! Nothing here can stop or delay capture: the roles share only the journal, and a
//! controller that is down, slow or answering garbage only delays this loop, whose every
//! call is bounded by the client's timeouts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::capture::StopFlag;
use crate::capture::hotplug::{self, HotplugEvent};
use crate::controller::client::{CallError, Client, ClientConfig, ClientError, UploadRequest};
use crate::controller::protocol::{
    AudioBackend, HealthEvent, Job, JobStatus, NodeHeartbeat, NodeStatus, Runtime, Severity,
};
use crate::core::backoff::Backoff;
use crate::core::job::JobState;
use crate::core::job_machine::{self, Action, Event, JobKind, MachineState, RenderedFile, Report};
use crate::journal::{
    JobRow, JobSource, Journal, JournalError, NewJob, NewOutboxItem, OutboxKind, OutboxRow,
};
use crate::roles::finalize::{self, RECORDING_FILE};
use crate::segment::writer::now_ms;

/// The sync role's settings.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub state_dir: PathBuf,
    pub client: ClientConfig,
    /// Capture backend for claimed jobs when the job's own (`alsa`) should not be used:
    /// `synth` for demos and tests.
    pub backend_override: Option<String>,
    pub node_heartbeat_every: Duration,
    pub job_poll_every: Duration,
    pub claim_every: Duration,
    pub config_every: Duration,
    /// The capture role's beat must be younger than this for jobs to be heartbeated.
    pub capture_beat_max_age: Duration,
}

impl SyncSettings {
    pub fn new(state_dir: PathBuf, client: ClientConfig) -> Self {
        SyncSettings {
            state_dir,
            client,
            backend_override: None,
            node_heartbeat_every: Duration::from_secs(5),
            job_poll_every: Duration::from_secs(2),
            claim_every: Duration::from_secs(5),
            config_every: Duration::from_secs(60),
            capture_beat_max_age: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("controller client: {0}")]
    Client(#[from] ClientError),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A job's progress as the sync role last saw it: heartbeats only while it advances.
struct Watch {
    frames: u64,
    advanced_at: Instant,
    polled_at: Option<Instant>,
}

struct Sync {
    settings: SyncSettings,
    journal: Journal,
    client: Client,
    capacity: u32,
    last_node_heartbeat: Option<Instant>,
    last_config: Option<Instant>,
    last_claim: Option<Instant>,
    inventory_sent: bool,
    watches: HashMap<String, Watch>,
    /// One line per kind of controller trouble, not one per call.
    last_error_logged: HashMap<&'static str, Instant>,
}

pub fn run(settings: SyncSettings, shutdown: &StopFlag) -> Result<(), SyncError> {
    std::fs::create_dir_all(&settings.state_dir).map_err(|source| SyncError::StateDir {
        path: settings.state_dir.clone(),
        source,
    })?;
    let journal = Journal::open(&finalize::journal_path(&settings.state_dir))?;
    let client = Client::new(settings.client.clone())?;
    let started = now_ms();
    let boot = crate::roles::capture::boot_id();
    let mut sync = Sync {
        settings,
        journal,
        client,
        capacity: 1,
        last_node_heartbeat: None,
        last_config: None,
        last_claim: None,
        inventory_sent: false,
        watches: HashMap::new(),
        last_error_logged: HashMap::new(),
    };
    let mut last_beat: Option<Instant> = None;
    crate::roles::notify::ready("sync");
    while !shutdown.is_stopped() {
        crate::roles::notify::alive("sync");
        // The sync beat only tells `edgerec status` when the controller was last tried.
        if due(last_beat, Duration::from_secs(5)) {
            last_beat = Some(Instant::now());
            sync.journal
                .write_beat("sync", std::process::id(), &boot, started, now_ms(), "")?;
        }
        if let Err(e) = sync.tick(shutdown) {
            // A journal error is local trouble: say it, and try again next tick.
            log::error!("sync: {e}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    log::info!("sync: stopped");
    Ok(())
}

fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= every)
}

fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 1_000_000) as f64 / 1_000_000.0
}

impl Sync {
    fn tick(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        if due(self.last_node_heartbeat, self.settings.node_heartbeat_every) {
            self.last_node_heartbeat = Some(Instant::now());
            let hb = self.node_heartbeat();
            if let Err(e) = self.client.node_heartbeat(&hb) {
                self.trouble("node heartbeat", &e);
            }
        }
        if !self.inventory_sent {
            let inventory = crate::controller::protocol::Inventory {
                interfaces: interfaces(),
            };
            match self.client.inventory(&inventory) {
                Ok(()) => self.inventory_sent = true,
                Err(e) => self.trouble("inventory", &e),
            }
        }
        if due(self.last_config, self.settings.config_every) {
            self.last_config = Some(Instant::now());
            match self.client.node_config() {
                Ok(config) => {
                    self.capacity = config.recording_capacity.max_concurrent_recordings.max(1)
                }
                Err(e) => self.trouble("node config", &e),
            }
        }
        self.poll_jobs(shutdown)?;
        if !shutdown.is_stopped()
            && due(self.last_claim, self.settings.claim_every)
            && self.free_capacity()? > 0
        {
            self.last_claim = Some(Instant::now());
            self.claim()?;
        }
        self.advance_finished_captures()?;
        self.deliver_outbox(shutdown)?;
        Ok(())
    }

    /// Logs controller trouble at most once a minute per kind; capture is never affected.
    fn trouble(&mut self, what: &'static str, e: &CallError) {
        let now = Instant::now();
        if self
            .last_error_logged
            .get(what)
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            let retry = if e.is_retryable() {
                "will retry"
            } else {
                "not retried unchanged"
            };
            log::warn!("controller {what}: {e} ({retry}; capture is unaffected)");
            self.last_error_logged.insert(what, now);
        }
    }

    fn node_heartbeat(&self) -> NodeHeartbeat {
        NodeHeartbeat {
            agent_version: format!("edgerec/{}", env!("CARGO_PKG_VERSION")),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            ip_addresses: Vec::new(),
            status: NodeStatus::Online,
            runtime: Some(Runtime {
                architecture: Some(std::env::consts::ARCH.to_string()),
                audio_backends: vec![AudioBackend::Alsa],
                kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string()),
                os_name: Some(std::env::consts::OS.to_string()),
                uptime_seconds: std::fs::read_to_string("/proc/uptime")
                    .ok()
                    .and_then(|s| s.split('.').next().and_then(|n| n.parse().ok())),
            }),
            interfaces: None,
        }
    }

    fn controller_jobs(&self) -> Result<Vec<JobRow>, SyncError> {
        Ok(self
            .journal
            .non_terminal_jobs()?
            .into_iter()
            .filter(|j| j.source == JobSource::Controller)
            .collect())
    }

    fn free_capacity(&self) -> Result<u32, SyncError> {
        let busy = self
            .controller_jobs()?
            .iter()
            .filter(|j| {
                matches!(
                    j.state,
                    JobState::Claimed | JobState::Capturing | JobState::Stopping
                )
            })
            .count() as u32;
        Ok(self.capacity.saturating_sub(busy))
    }

    /// Claims the next job group into the journal; the capture role picks the jobs up.
    fn claim(&mut self) -> Result<(), SyncError> {
        let jobs = match self.client.claim_next_group() {
            Ok(jobs) => jobs,
            Err(e) => {
                self.trouble("claim", &e);
                return Ok(());
            }
        };
        // A capture group shares one device and window: captured once, at the group's
        // channel span, by its first job; each member keeps its own channel subset.
        let span = jobs.iter().filter_map(|j| j.command.capture_channels).max();
        let mut leaders: HashMap<String, String> = HashMap::new();
        let mut claimed = Vec::new();
        for job in jobs {
            let group = job.command.capture_group_id.clone();
            let channels = if group.is_some() { span } else { None };
            // The group's first valid job leads; membership is written with the job, in one
            // transaction, so the capture role never sees a member without its group.
            let leader = group
                .as_ref()
                .map(|g| leaders.get(g).cloned().or_else(|| job.id.clone()));
            let Some(id) = self.take_claimed(job, channels, leader.flatten())? else {
                continue;
            };
            if let Some(group) = group {
                leaders.entry(group).or_insert_with(|| id.clone());
            }
            claimed.push(id);
        }
        // Wake the capture role now (after the whole group is in the journal) rather than
        // at its next journal poll.
        if let Some(id) = claimed.first() {
            let wake = HotplugEvent {
                action: "claimed".into(),
                devpath: id.clone(),
            };
            if let Err(e) = hotplug::notify(&self.settings.state_dir, &wake) {
                log::debug!("waking the capture role: {e}");
            }
        }
        Ok(())
    }

    /// Puts a claimed job in the journal (the capture role takes it from there); returns
    /// its id when it is a new, valid job. `channels` widens it to its group's span.
    fn take_claimed(
        &mut self,
        job: Job,
        channels: Option<u16>,
        group_leader: Option<String>,
    ) -> Result<Option<String>, SyncError> {
        let now = now_ms();
        let valid = match job.validate() {
            Ok(valid) => valid,
            Err(rejection) => {
                // Never crash on a bad job: report it failed with the reason, once.
                let Some(id) = rejection.job_id.clone() else {
                    log::error!(
                        "controller sent a job without an id: {}",
                        rejection.reason()
                    );
                    return Ok(None);
                };
                log::error!("{id}: refused: {}", rejection.reason());
                let report = Report::Failed {
                    reason: rejection.reason(),
                };
                self.journal.atomically(|j| {
                    j.create_job(&placeholder_job(&id, &self.settings.state_dir, now))?;
                    j.set_job_state(&id, JobState::Failed, Some(&rejection.reason()), now)?;
                    j.enqueue(&NewOutboxItem::terminal_report(
                        &id,
                        report_body(&report),
                        now,
                    ))?;
                    Ok(())
                })?;
                return Ok(None);
            }
        };
        let mut spec = valid.stream_spec();
        if let Some(span) = channels {
            spec.channels = spec.channels.max(span);
        }
        let backend = self
            .settings
            .backend_override
            .clone()
            .unwrap_or_else(|| "alsa".to_string());
        let new = NewJob {
            id: valid.id.clone(),
            source: JobSource::Controller,
            controller_job_id: Some(valid.id.clone()),
            recording_id: Some(valid.recording_id.clone()),
            command_json: serde_json::to_string(&valid.job).unwrap_or_default(),
            backend,
            device: valid.device.clone(),
            spec,
            duration_frames: Some(spec.frames_in(valid.duration)),
            dir: self.settings.state_dir.join(&valid.id),
            state: JobState::Claimed,
            created_at_ms: now,
        };
        let machine = MachineState::new(JobKind::Controller);
        let created = self.journal.atomically(|j| {
            if j.job(&new.id)?.is_some() {
                return Ok(false); // claimed again after a restart: we have it already
            }
            j.create_job(&new)?;
            j.save_machine(&new.id, &machine, now)?;
            if let Some(leader) = &group_leader {
                j.set_group_leader(&new.id, leader)?;
            }
            Ok(true)
        })?;
        if created {
            log::info!(
                "{}: claimed ({spec}, {:?}, device {})",
                valid.id,
                valid.duration,
                valid.device
            );
        }
        Ok(created.then_some(valid.id))
    }

    /// Heartbeats running jobs and learns the controller's view of them.
    fn poll_jobs(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        let capture_alive = self.journal.beat("capture")?.is_some_and(|b| {
            now_ms() - b.last_beat_ms <= self.settings.capture_beat_max_age.as_millis() as i64
        });
        for job in self.controller_jobs()? {
            if shutdown.is_stopped() {
                break;
            }
            if !matches!(
                job.state,
                JobState::Claimed | JobState::Capturing | JobState::Stopping
            ) {
                self.watches.remove(&job.id);
                continue;
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
            if !due(watch.polled_at, self.settings.job_poll_every) {
                continue;
            }
            watch.polled_at = Some(Instant::now());
            // Liveness comes from the journal: a capture that stopped beating or advancing
            // gets no heartbeat, and the controller's lease tells the truth about it.
            let grace = if job.state == JobState::Claimed {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(5)
            };
            let advancing = watch.advanced_at.elapsed() <= grace;
            let controller_id = job
                .controller_job_id
                .clone()
                .unwrap_or_else(|| job.id.clone());
            let seen = if capture_alive && advancing {
                match self.client.job_heartbeat(&controller_id) {
                    Ok(seen) => Some(seen),
                    Err(CallError::Conflict(_)) => self.get_job(&controller_id),
                    Err(e) => {
                        self.trouble("job heartbeat", &e);
                        None
                    }
                }
            } else {
                self.get_job(&controller_id)
            };
            if let Some(event) = seen.as_ref().and_then(controller_event) {
                self.apply(&job.id, event)?;
            }
        }
        Ok(())
    }

    fn get_job(&mut self, controller_id: &str) -> Option<Job> {
        match self.client.get_job(controller_id) {
            Ok(job) => Some(job),
            Err(e) => {
                self.trouble("job poll", &e);
                None
            }
        }
    }

    /// Jobs the capture role handed over (`cached`): catch the machine up with what the
    /// capture role did, then render's result decides: upload, or keep and report.
    fn advance_finished_captures(&mut self) -> Result<(), SyncError> {
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
            let recording = job.dir.join(RECORDING_FILE);
            let has_audio = recording.exists();
            let cause = job.end_cause.clone().unwrap_or_default();
            let mut events = Vec::new();
            if matches!(machine.state, JobState::Claimed) {
                events.push(Event::Start);
            }
            if matches!(machine.state, JobState::Claimed | JobState::Capturing) {
                if cause.starts_with("device_mismatch") || cause.starts_with("device_failed") {
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
            if has_audio {
                match hash_file(&recording) {
                    Ok((sha256, bytes)) => {
                        events.push(Event::RenderStarted);
                        events.push(Event::Rendered(RenderedFile {
                            path: recording.clone(),
                            sha256,
                            bytes,
                        }));
                    }
                    Err(e) => events.push(Event::RenderFailed {
                        detail: format!("reading {}: {e}", recording.display()),
                    }),
                }
            }
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
    fn apply(&mut self, job_id: &str, event: Event) -> Result<JobState, SyncError> {
        let Some(job) = self.journal.job(job_id)? else {
            return Ok(JobState::Failed);
        };
        if job.state.is_terminal() {
            return Ok(job.state);
        }
        let before = self.machine(&job)?;
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
                        ev.recording_id = ev.recording_id.or_else(|| recording_id.clone());
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
                    Action::DropUpload => {
                        j.abandon_pending(
                            job_id,
                            OutboxKind::Upload,
                            "the controller ended the job",
                            now,
                        )?;
                    }
                    Action::FlagLocalRecording { reason } => {
                        log::warn!(
                            "{job_id}: recording kept in the local library, flagged: {reason}"
                        );
                    }
                    Action::StartCapture | Action::StopCapture | Action::Render => {}
                }
            }
            Ok(true)
        })?;
        if moved && after.state != before.state {
            log::info!("{job_id}: {} -> {} ({event:?})", before.state, after.state);
        }
        Ok(if moved { after.state } else { job.state })
    }

    /// Delivers due outbox rows, oldest first, a bounded number per tick.
    fn deliver_outbox(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        for _ in 0..16 {
            if shutdown.is_stopped() {
                return Ok(());
            }
            let Some(row) = self.journal.next_due(now_ms())? else {
                return Ok(());
            };
            let outcome = self.deliver(&row);
            let now = now_ms();
            match outcome {
                Delivery::Done => {
                    self.journal.mark_delivered(row.id, now)?;
                }
                Delivery::Retry(why) => {
                    let delay = Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
                        .with_attempt(row.attempts)
                        .next_delay(jitter());
                    self.journal
                        .mark_failed(row.id, &why, now + delay.as_millis() as i64)?;
                    return Ok(()); // the controller is in trouble: leave the rest for later
                }
                Delivery::GiveUp(why) => {
                    log::warn!("outbox row {} ({}) abandoned: {why}", row.id, row.kind);
                    self.journal.mark_abandoned(row.id, &why, now)?;
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, row: &OutboxRow) -> Delivery {
        let job = row
            .job_id
            .as_deref()
            .and_then(|id| self.journal.job(id).ok().flatten());
        let controller_id = job
            .as_ref()
            .and_then(|j| j.controller_job_id.clone())
            .or_else(|| row.job_id.clone())
            .unwrap_or_default();
        match row.kind {
            OutboxKind::HealthEvent => {
                let Ok(ev) = serde_json::from_str::<HealthEvent>(&row.body) else {
                    return Delivery::GiveUp("unreadable health event".into());
                };
                self.classify(self.client.health_event(&ev), "health event")
            }
            OutboxKind::TerminalReport => {
                let Ok(report) = serde_json::from_str::<Report>(&row.body) else {
                    return Delivery::GiveUp("unreadable terminal report".into());
                };
                let result = match report.post() {
                    Some((job_machine::TerminalPost::Cancelled, reason)) => {
                        self.client.post_cancelled(&controller_id, reason)
                    }
                    Some((job_machine::TerminalPost::Failed, reason)) => {
                        self.client.post_failed(&controller_id, reason)
                    }
                    None => Ok(()),
                };
                match result {
                    // A different terminal state already holds: the controller decided.
                    Err(CallError::NotFound(body)) => {
                        log::info!(
                            "{controller_id}: controller already ended the job ({}); report not needed",
                            body.error
                        );
                        Delivery::Done
                    }
                    other => self.classify(other, "terminal report"),
                }
            }
            OutboxKind::Upload => match job {
                Some(job) => self.upload(row, &job),
                None => Delivery::GiveUp("job no longer in the journal".into()),
            },
            OutboxKind::JobHeartbeat => Delivery::Done, // heartbeats are sent live, never queued
        }
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

    /// PUTs the rendered recording; its answer goes back through the machine.
    fn upload(&mut self, row: &OutboxRow, job: &JobRow) -> Delivery {
        let Ok(file) = serde_json::from_str::<RenderedFile>(&row.body) else {
            return Delivery::GiveUp("unreadable upload row".into());
        };
        if let Err(e) = self.apply(&job.id, Event::UploadStarted) {
            return Delivery::Retry(e.to_string());
        }
        let recording_id = job.recording_id.clone().unwrap_or_default();
        let controller_id = job
            .controller_job_id
            .clone()
            .unwrap_or_else(|| job.id.clone());
        let file_name = output_file_name(job);
        let duration_seconds = hound::WavReader::open(&file.path)
            .map(|r| r.duration() as f64 / r.spec().sample_rate.max(1) as f64)
            .unwrap_or(0.0);
        let request = UploadRequest {
            path: &file.path,
            job_id: &controller_id,
            file_name: &file_name,
            mime_type: "audio/wav",
            duration_seconds,
            rendition: None,
            chunk: None,
            chunk_total: None,
        };
        let result = self.client.put_cache_file(&recording_id, &request);
        let (event, delivery) = match result {
            Ok(cached) => {
                log::info!(
                    "{}: uploaded {} ({} bytes, {})",
                    job.id,
                    file_name,
                    cached.size,
                    cached.checksum
                );
                (
                    Some(Event::UploadAccepted {
                        checksum_matches: true,
                    }),
                    Delivery::Done,
                )
            }
            Err(CallError::ChecksumMismatch { sent, stored }) => {
                log::error!("{}: controller stored {stored}, we sent {sent}", job.id);
                (
                    Some(Event::UploadAccepted {
                        checksum_matches: false,
                    }),
                    Delivery::Done,
                )
            }
            Err(CallError::Conflict(body)) => {
                // 409: learn why from the job itself; the verdict decides, not the 409.
                let verdict = self
                    .get_job(&controller_id)
                    .as_ref()
                    .and_then(controller_event);
                log::warn!(
                    "{}: upload refused (409 {}); verdict {verdict:?}",
                    job.id,
                    body.error
                );
                (
                    Some(verdict.unwrap_or(Event::UploadRefused409)),
                    Delivery::GiveUp(format!("409 {}", body.error)),
                )
            }
            Err(e) if e.is_retryable() => {
                self.trouble("upload", &e);
                (
                    Some(Event::UploadFailed {
                        retryable: true,
                        detail: e.to_string(),
                    }),
                    Delivery::Retry(e.to_string()),
                )
            }
            Err(e) => (
                Some(Event::UploadFailed {
                    retryable: false,
                    detail: e.to_string(),
                }),
                Delivery::GiveUp(e.to_string()),
            ),
        };
        if let Some(event) = event
            && let Err(e) = self.apply(&job.id, event)
        {
            log::error!("{}: {e}", job.id);
        }
        delivery
    }
}

enum Delivery {
    Done,
    Retry(String),
    GiveUp(String),
}

/// What the controller's view of a job means for the machine, if anything.
fn controller_event(job: &Job) -> Option<Event> {
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
fn health_event(alert: &job_machine::Alert) -> HealthEvent {
    let severity = match alert.level {
        job_machine::AlertLevel::Warning => Severity::Warning,
        job_machine::AlertLevel::Critical => Severity::Critical,
    };
    let mut ev = HealthEvent::new(alert.kind.clone(), severity);
    ev.details = alert.details.clone();
    ev
}

fn report_body(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

/// The name the controller asked for, or the local one.
fn output_file_name(job: &JobRow) -> String {
    serde_json::from_str::<serde_json::Value>(&job.command_json)
        .ok()
        .and_then(|v| v["command"]["outputFileName"].as_str().map(str::to_string))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| RECORDING_FILE.to_string())
}

/// SHA-256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

/// A row for a job we refuse: enough to carry its terminal report.
fn placeholder_job(id: &str, state_dir: &Path, now: i64) -> NewJob {
    NewJob {
        id: id.to_string(),
        source: JobSource::Controller,
        controller_job_id: Some(id.to_string()),
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
        dir: state_dir.join(id),
        state: JobState::Claimed,
        created_at_ms: now,
    }
}

/// The capture interfaces for the inventory, by stable identity.
pub(crate) fn interfaces() -> Vec<crate::controller::protocol::Interface> {
    crate::capture::devices::list()
        .into_iter()
        .filter(|d| d.backend == "alsa")
        .take(64)
        .map(|d| {
            let channels = d.caps.as_ref().map_or(0, |c| c.channels_max).min(256) as u16;
            crate::controller::protocol::Interface {
                alias: d.description.clone(),
                backend: AudioBackend::Alsa,
                channel_count: channels,
                channels: (1..=channels)
                    .map(|i| crate::controller::protocol::ChannelInfo {
                        alias: format!("ch{i}"),
                        index: i,
                    })
                    .collect(),
                hardware_path: None,
                sample_rates: d
                    .caps
                    .as_ref()
                    .map(|c| c.rates.iter().copied().take(16).collect())
                    .unwrap_or_default(),
                serial_number: None,
                system_name: d.name.clone(),
                system_ref: Some(d.identity.clone()),
            }
        })
        .collect()
}

#[allow(dead_code)]
fn _severity_used(_: Severity) {}
