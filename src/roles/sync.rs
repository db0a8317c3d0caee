//! `edgerec sync`: the sync role, the only part that talks to the controller. It claims
//! jobs into the journal, heartbeats them while the capture role's beat and frame count
//! advance, relays stop/cancel into the journal, uploads rendered recordings and delivers
//! the outbox. Every decision about a controller job goes through the job machine
//! (`core::job_machine`); its state is journaled before its actions run.
//!
//! Nothing here can stop or delay capture: the roles share only the journal. Nothing slow
//! can starve a lease either: every controller call runs on a worker lane of its own kind
//! (`lanes`) under its own client timeout, each running job has its own heartbeat lane,
//! and this loop only schedules calls and journals their outcomes.
//!
//! Controller input is data, never a path: a claimed job lives in a directory named by a
//! local id this role makes; the controller's ids are validated and stored as columns.

mod lanes;
mod outbox;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::capture::StopFlag;
use crate::capture::hotplug::{self, HotplugEvent};
use crate::controller::client::{CallError, Client, ClientConfig, ClientError};
use crate::controller::protocol::{
    AudioBackend, Job, JobRejection, JobStatus, NodeConfig, NodeHeartbeat, NodeStatus, Runtime,
};
use crate::core::job::JobState;
use crate::core::job_machine::{self, Action, Event, JobKind, MachineState, RenderedFile, Report};
use crate::journal::{JobRow, JobSource, Journal, JournalError, NewJob, NewOutboxItem, OutboxKind};
use crate::logging::untrusted;
use crate::roles::finalize::{self, RECORDING_FILE};
use crate::segment::writer::now_ms;
use lanes::{Lane, Lanes};

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

/// How often the loop looks at the journal when no call outcome wakes it.
const TICK: Duration = Duration::from_millis(200);
/// Repeats of one kind of failure (call and error kind) within this window are folded.
const FOLD_WINDOW: Duration = Duration::from_secs(60);
/// Most jobs taken from one claim reply; a controller that leases more gets the rest back
/// by lease expiry.
const MAX_JOBS_PER_CLAIM: usize = 64;

/// What a lane's call came back with.
enum Done {
    Node {
        heartbeat: Result<(), CallError>,
        inventory: Option<Result<(), CallError>>,
    },
    Config(Result<NodeConfig, CallError>),
    Claim(Result<Vec<Job>, CallError>),
    /// A job's heartbeat or poll: the controller's view, when it was learned.
    Job {
        local_id: String,
        seen: Option<Box<Job>>,
        failed: Option<(&'static str, CallError)>,
    },
    Outbox(Box<outbox::Sent>),
    Upload(Box<outbox::Uploaded>),
}

/// A job's progress as the sync role last saw it: heartbeats only while it advances.
struct Watch {
    frames: u64,
    advanced_at: Instant,
    polled_at: Option<Instant>,
}

/// A kind of failure already logged: its repeats are counted until the window ends.
struct Folded {
    logged_at: Instant,
    repeats: u64,
}

struct Sync {
    settings: SyncSettings,
    journal: Journal,
    lanes: Lanes<Done>,
    capacity: u32,
    last_node_heartbeat: Option<Instant>,
    last_config: Option<Instant>,
    last_claim: Option<Instant>,
    inventory_sent: bool,
    watches: HashMap<String, Watch>,
    /// Outbox rows handed to a lane and not yet answered.
    in_flight: HashSet<i64>,
    /// By (call, error kind): the first failure of a kind is logged at once.
    trouble_log: HashMap<(&'static str, String), Folded>,
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
        lanes: Lanes::new(client),
        capacity: 1,
        last_node_heartbeat: None,
        last_config: None,
        last_claim: None,
        inventory_sent: false,
        watches: HashMap::new(),
        in_flight: HashSet::new(),
        trouble_log: HashMap::new(),
    };
    let mut last_beat: Option<Instant> = None;
    while !shutdown.is_stopped() {
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
        // Sleep until a call comes back or the next tick; lanes still busy at shutdown
        // end on their own timeouts (the process does not wait for them).
        if let Some((lane, done)) = sync.lanes.next_outcome(TICK)
            && let Err(e) = sync.handle(lane, done)
        {
            log::error!("sync: {e}");
        }
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

/// A directory name for a claimed job, made here: never anything the controller sent.
fn new_local_id() -> String {
    format!("ctl-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

impl Sync {
    /// Schedules what is due; every call goes to its lane, nothing here waits on the
    /// network.
    fn tick(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        if due(self.last_node_heartbeat, self.settings.node_heartbeat_every)
            && !self.lanes.is_busy(&Lane::Node)
        {
            let hb = node_heartbeat();
            let inventory =
                (!self.inventory_sent).then(|| crate::controller::protocol::Inventory {
                    interfaces: interfaces(),
                });
            let submitted = self.lanes.submit(
                Lane::Node,
                Box::new(move |c: &Client| Done::Node {
                    heartbeat: c.node_heartbeat(&hb),
                    inventory: inventory.map(|inv| c.inventory(&inv)),
                }),
            );
            if submitted {
                self.last_node_heartbeat = Some(Instant::now());
            }
        }
        if due(self.last_config, self.settings.config_every)
            && self.lanes.submit(
                Lane::Config,
                Box::new(|c: &Client| Done::Config(c.node_config())),
            )
        {
            self.last_config = Some(Instant::now());
        }
        self.poll_jobs(shutdown)?;
        if !shutdown.is_stopped()
            && due(self.last_claim, self.settings.claim_every)
            && !self.lanes.is_busy(&Lane::Claim)
            && self.free_capacity()? > 0
            && self.lanes.submit(
                Lane::Claim,
                Box::new(|c: &Client| Done::Claim(c.claim_next_group())),
            )
        {
            self.last_claim = Some(Instant::now());
        }
        self.advance_finished_captures()?;
        self.deliver_outbox(shutdown)?;
        Ok(())
    }

    /// Journals one call's outcome.
    fn handle(&mut self, lane: Lane, done: Done) -> Result<(), SyncError> {
        match done {
            Done::Node {
                heartbeat,
                inventory,
            } => {
                if let Err(e) = heartbeat {
                    self.trouble("node heartbeat", &e);
                }
                match inventory {
                    Some(Ok(())) => self.inventory_sent = true,
                    Some(Err(e)) => self.trouble("inventory", &e),
                    None => {}
                }
            }
            Done::Config(Ok(config)) => {
                self.capacity = config.recording_capacity.max_concurrent_recordings.max(1)
            }
            Done::Config(Err(e)) => self.trouble("node config", &e),
            Done::Claim(Ok(jobs)) => self.take_claimed_group(jobs)?,
            Done::Claim(Err(e)) => self.trouble("claim", &e),
            Done::Job {
                local_id,
                seen,
                failed,
            } => {
                if let Some((what, e)) = failed {
                    self.trouble(what, &e);
                }
                if let Some(event) = seen.as_deref().and_then(controller_event) {
                    self.apply(&local_id, event)?;
                }
            }
            Done::Outbox(sent) => self.sent(*sent)?,
            Done::Upload(uploaded) => self.uploaded(*uploaded)?,
        }
        log::trace!("sync: {lane:?} answered");
        Ok(())
    }

    /// Logs controller trouble: the first failure of each kind (call and error kind) at
    /// once, repeats of it folded into one line a minute. Capture is never affected.
    fn trouble(&mut self, what: &'static str, e: &CallError) {
        let retry = if e.is_retryable() {
            "will retry"
        } else {
            "not retried unchanged"
        };
        let text = e.to_string();
        let message = untrusted(&text);
        match self.trouble_log.get_mut(&(what, e.kind())) {
            Some(f) if f.logged_at.elapsed() < FOLD_WINDOW => f.repeats += 1,
            Some(f) => {
                log::warn!(
                    "controller {what}: {message} ({retry}; {} more like it in the last {}s; capture is unaffected)",
                    f.repeats,
                    f.logged_at.elapsed().as_secs()
                );
                *f = Folded {
                    logged_at: Instant::now(),
                    repeats: 0,
                };
            }
            None => {
                log::warn!("controller {what}: {message} ({retry}; capture is unaffected)");
                self.trouble_log.insert(
                    (what, e.kind()),
                    Folded {
                        logged_at: Instant::now(),
                        repeats: 0,
                    },
                );
            }
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
            .filter(|j| is_live(j.state))
            .count() as u32;
        Ok(self.capacity.saturating_sub(busy))
    }

    /// Puts a claimed group into the journal; the capture role picks the jobs up.
    fn take_claimed_group(&mut self, mut jobs: Vec<Job>) -> Result<(), SyncError> {
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
            device: valid.device.clone(),
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
            log::error!(
                "controller sent a job without a usable id (id {}); skipped: {}",
                raw_id.map_or("missing".to_string(), |id| format!("{:?}", untrusted(id))),
                untrusted(&reason)
            );
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
        let local_id = new_local_id();
        let now = now_ms();
        let report = Report::Failed {
            reason: reason.clone(),
        };
        let row = placeholder_job(&local_id, &controller_id, &self.settings.state_dir, now);
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

    /// Hands due heartbeats (and polls) of running jobs to their lanes.
    fn poll_jobs(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        let capture_alive = self.journal.beat("capture")?.is_some_and(|b| {
            now_ms() - b.last_beat_ms <= self.settings.capture_beat_max_age.as_millis() as i64
        });
        let jobs = self.controller_jobs()?;
        let live: HashSet<&str> = jobs
            .iter()
            .filter(|j| is_live(j.state))
            .map(|j| j.id.as_str())
            .collect();
        self.watches.retain(|id, _| live.contains(id.as_str()));
        self.lanes.retire_jobs_except(&|id| live.contains(id));
        for job in jobs.iter().filter(|j| is_live(j.state)) {
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
            if !due(watch.polled_at, self.settings.job_poll_every) {
                continue;
            }
            // Liveness comes from the journal: a capture that stopped beating or advancing
            // gets no heartbeat, and the controller's lease tells the truth about it.
            let grace = if job.state == JobState::Claimed {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(5)
            };
            let heartbeat = capture_alive && watch.advanced_at.elapsed() <= grace;
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

fn is_live(state: JobState) -> bool {
    matches!(
        state,
        JobState::Claimed | JobState::Capturing | JobState::Stopping
    )
}

fn node_heartbeat() -> NodeHeartbeat {
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

impl Sync {
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
                    Action::EnqueueHealthEvent(ev) => {
                        let mut ev = ev.clone();
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

/// The capture interfaces for the inventory, by stable identity.
fn interfaces() -> Vec<crate::controller::protocol::Interface> {
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
