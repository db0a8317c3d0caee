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
//!
//! - this file: the loop ([`run`]): schedule calls on lanes, journal what they answer.
//! - `machine`: feeding each job's machine, and mapping its terms onto the wire.
//! - `claim`, `follow`, `outbox`, `node`: claiming jobs, following the capture role,
//!   delivering the outbox and uploads, the node's heartbeat; `lanes`: the worker lanes.
//! - `jobs`: running jobs' heartbeats; `trouble`: controller failures in the log.

mod capture_backend;
mod claim;
mod follow;
mod idle_round;
mod jobs;
mod lanes;
mod machine;
mod meter;
mod meter_watch;
pub(crate) mod node;
pub(crate) mod node_health;
mod outbox;
mod retention;
mod sending;
mod timeline_health;
mod trouble;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capture::StopFlag;
use crate::controller::client::{CallError, Client, ClientConfig, ClientError};
use crate::controller::protocol::{Job, NodeConfig};
use crate::core::disk_budget::BudgetMarks;
use crate::journal::{JobRow, Journal, JournalError};
use crate::roles::finalize::{self, RECORDING_FILE};
use crate::segment::writer::now_ms;
use idle_round::{due, half_due};
use jobs::Watch;
use lanes::{Lane, Lanes};
use machine::{controller_event, report_body};
use trouble::FailureLog;

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
    /// The capture role's beat must be younger than this for jobs to be heartbeated (or
    /// than its own cadence and a slack, when it says it beats more slowly).
    pub capture_beat_max_age: Duration,
    /// The spool's marks, for the node's disk-pressure events.
    pub disk: BudgetMarks,
    /// The Prometheus textfile to keep current, if any.
    pub metrics_textfile: Option<PathBuf>,
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
            disk: BudgetMarks::default(),
            metrics_textfile: None,
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

/// How often the loop looks at the journal while a job is live or the outbox holds rows:
/// what the capture role journals (a finished capture, an outbox row) waits at most this
/// long. With neither, the loop sleeps until its next scheduled call (a call's outcome
/// and a shutdown wake it earlier), at most [`IDLE_TICK`].
const TICK: Duration = Duration::from_secs(1);
const IDLE_TICK: Duration = Duration::from_secs(5);
/// The sync role's beat (a run file `edgerec status` reads).
const SYNC_BEAT_EVERY: Duration = Duration::from_secs(5);
/// What a lane's call came back with.
enum Done {
    /// An idle round ([`idle_round`]): each call that went, and the claim when it found
    /// no job or failed (jobs come back at once, as a `Claim`).
    Node {
        heartbeat: Option<Result<(), CallError>>,
        inventory: Option<Result<(), CallError>>,
        claim: idle_round::ClaimOutcome,
        /// When the heartbeat was answered (wall ms): the loop may hear it later.
        answered_ms: i64,
    },
    Config(Result<NodeConfig, CallError>),
    Claim(Result<claim::Claimed, CallError>),
    /// A job's heartbeat or poll: the controller's view, when it was learned.
    Job {
        local_id: String,
        seen: Option<Box<Job>>,
        failed: Option<(&'static str, CallError)>,
    },
    Outbox(Box<outbox::Sent>),
    Upload(Box<outbox::Uploaded>),
    Meter(Vec<Result<(), CallError>>),
}

impl Done {
    /// An idle round that found no job and had no trouble: nothing to journal before the
    /// next round.
    fn is_quiet(&self) -> bool {
        matches!(
            self,
            Done::Node {
                heartbeat: Some(Ok(())),
                inventory: None | Some(Ok(())),
                claim: None | Some(Ok(_)),
                ..
            }
        )
    }
}

struct Sync {
    settings: SyncSettings,
    journal: Journal,
    lanes: Lanes<Done>,
    capacity: u32,
    last_node_heartbeat: Option<Instant>,
    last_config: Option<Instant>,
    last_claim: Option<Instant>,
    /// A claim is out (on the node lane or its own) and has not been answered.
    claim_out: bool,
    inventory_sent: bool,
    watches: HashMap<String, Watch>,
    /// Outbox rows handed to a lane and not yet answered.
    in_flight: HashSet<i64>,
    trouble_log: FailureLog,
    skipped: claim::Skipped,
    retention: retention::Retention,
    /// Per job, the newest meter snapshot handed to the meter lane.
    meter_sent: HashMap<String, i64>,
    timelines: timeline_health::TimelineFollower,
    /// Per job, the last meter condition change queued as a health event.
    meter_seq: HashMap<String, u64>,
    /// Per job, the capture time of the last listen chunk handed to the meter lane.
    listen_sent: HashMap<String, i64>,
    /// The node config asks for enhanced live-listen chunks (`monitorEnhancement`).
    monitor_enhanced: bool,
    node: node_health::NodeWatch,
    devices: node::InventoryWatch,
    /// Calls handed over inside a batch, submitted once it commits.
    held_back: Vec<(Lane, lanes::Task<Done>, Vec<i64>)>,
    /// Chunks rendered while capturing that the machine has heard of (job, chunk).
    chunks_fed: HashSet<(String, u32)>,
}

pub fn run(settings: SyncSettings, shutdown: &StopFlag) -> Result<(), SyncError> {
    std::fs::create_dir_all(&settings.state_dir).map_err(|source| SyncError::StateDir {
        path: settings.state_dir.clone(),
        source,
    })?;
    crate::journal::run_files::prepare_run_dir_logged(&settings.state_dir);
    let journal = Journal::open(&finalize::journal_path(&settings.state_dir))?;
    let client = Client::new(settings.client.clone())?;
    let started = now_ms();
    let boot = crate::roles::capture::boot_id();
    let node = node_health::NodeWatch::start(&settings.state_dir, settings.disk, &journal, started);
    // A quiet idle round waits for the loop's next round instead of waking it.
    let lanes = Lanes::new(client).quiet_when(Done::is_quiet);
    let devices = node::InventoryWatch::new(&settings.state_dir, lanes.waker());
    meter_watch::start(&settings.state_dir, lanes.waker());
    let mut sync = Sync {
        settings,
        journal,
        lanes,
        capacity: 1,
        last_node_heartbeat: None,
        last_config: None,
        last_claim: None,
        claim_out: false,
        inventory_sent: false,
        watches: HashMap::new(),
        in_flight: HashSet::new(),
        trouble_log: FailureLog::default(),
        skipped: claim::Skipped::default(),
        retention: retention::Retention::default(),
        meter_sent: HashMap::new(),
        timelines: Default::default(),
        meter_seq: HashMap::new(),
        listen_sent: HashMap::new(),
        monitor_enhanced: false,
        node,
        devices,
        held_back: Vec::new(),
        chunks_fed: HashSet::new(),
    };
    let mut last_beat: Option<Instant> = None;
    let _wake_on_stop = shutdown.on_stop(sync.lanes.waker());
    crate::roles::notify::ready("sync");
    while !shutdown.is_stopped() {
        crate::roles::notify::alive("sync");
        // The sync beat only tells `edgerec status` when the controller was last tried;
        // it rides along with the round's node heartbeat.
        let now = Instant::now();
        let heartbeat_due = due(
            now,
            sync.last_node_heartbeat,
            sync.settings.node_heartbeat_every,
        );
        if due(now, last_beat, SYNC_BEAT_EVERY)
            || (heartbeat_due && half_due(now, last_beat, SYNC_BEAT_EVERY))
        {
            last_beat = Some(now);
            let pid = std::process::id();
            if let Err(e) = sync
                .journal
                .write_beat("sync", pid, &boot, started, now_ms(), "")
            {
                log::warn!("sync: {e}"); // a run file: said, never the role's end
            }
        }
        if let Err(e) = sync.tick(shutdown, now) {
            // A journal error is local trouble: say it, and try again next tick.
            log::error!("sync: {e}");
        }
        // Sleep until a call comes back or the next tick; lanes still busy at shutdown
        // end on their own timeouts (the process does not wait for them).
        let next_call = sync.until_next_call(last_beat);
        let wait = match sync.idle() {
            Ok(true) => next_call,
            _ => next_call.min(TICK),
        };
        let wait = crate::roles::notify::quiet_at_most().map_or(wait, |q| wait.min(q));
        if let Some((lane, done)) = sync.lanes.next_outcome(wait)
            && let Err(e) = sync.handle(lane, done)
        {
            log::error!("sync: {e}");
        }
    }
    log::info!("sync: stopped");
    Ok(())
}

fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 1_000_000) as f64 / 1_000_000.0
}

impl Sync {
    /// Nothing to follow: no job that is not over, no outbox row waiting, no call out.
    fn idle(&self) -> Result<bool, SyncError> {
        Ok(self.in_flight.is_empty()
            && self.watches.is_empty()
            && self.journal.non_terminal_jobs()?.is_empty()
            && self.journal.pending_count()? == 0)
    }

    /// Until the next node heartbeat, claim, config fetch, job poll or beat is due.
    fn until_next_call(&self, last_beat: Option<Instant>) -> Duration {
        let s = &self.settings;
        // A lane with a call out is woken by its outcome, not by its schedule.
        let left = |lane: Option<Lane>, last: Option<Instant>, every: Duration| match lane {
            Some(lane) if self.lanes.is_busy(&lane) => IDLE_TICK,
            _ => last.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed())),
        };
        // A claim waits for free capacity, which a job's end brings (its outcome or a tick),
        // and for the answer to the one out.
        let claim = match self.free_capacity() {
            Ok(free) if free > 0 && !self.claim_out => left(None, self.last_claim, s.claim_every),
            _ => IDLE_TICK,
        };
        [
            left(
                Some(Lane::Node),
                self.last_node_heartbeat,
                s.node_heartbeat_every,
            ),
            claim,
            left(Some(Lane::Config), self.last_config, s.config_every),
            left(None, last_beat, SYNC_BEAT_EVERY),
        ]
        .into_iter()
        .chain(
            self.watches
                .iter()
                .map(|(id, w)| left(Some(Lane::Job(id.clone())), w.polled_at, s.job_poll_every)),
        )
        .fold(IDLE_TICK, Duration::min)
        .max(Duration::from_millis(50))
    }

    /// Schedules what is due; every call goes to its lane, nothing here waits on the
    /// network.
    /// `now` dates the round's calls as the loop dated the beat: same instant, one wake-up.
    fn tick(&mut self, shutdown: &StopFlag, now: Instant) -> Result<(), SyncError> {
        if self.devices.hotplugged() {
            // The inventory goes now, with a heartbeat, not at the next one.
            self.inventory_sent = false;
            self.last_node_heartbeat = None;
        }
        self.poll_jobs(shutdown)?;
        self.journaled_pass(shutdown)?;
        self.idle_round(shutdown, now)?;
        self.sweep_retention()?;
        Ok(())
    }

    /// The pass's journal writes (machine steps, catch-up health events, outbox rows, an
    /// upload's start) in one commit; the outbox's calls are handed to their lanes after
    /// it, so nothing is sent before it is durable. Nothing in here waits on the network.
    fn journaled_pass(&mut self, shutdown: &StopFlag) -> Result<(), SyncError> {
        self.batched(|s| {
            s.follow_captures()?;
            s.follow_chunks()?;
            s.meter()?;
            s.follow_timelines()?;
            s.advance_finished_captures()?;
            s.deliver_outbox(shutdown)
        })
    }

    /// Runs `f` with its journal writes in one commit (a unit that failed is rolled back
    /// alone and its error returned).
    fn batched(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        self.journal.begin_batch();
        let pass = f(self);
        if let Err(e) = self.journal.end_batch() {
            // Rolled back: what the followers think they queued was not, so they look again
            // (queueing is idempotent by key), and the calls it would have led to wait.
            self.timelines = Default::default();
            self.meter_seq.clear();
            self.held_back.clear();
            self.chunks_fed.clear();
            return Err(e.into());
        }
        self.release_held_back();
        pass
    }

    /// Journals one call's outcome.
    fn handle(&mut self, lane: Lane, done: Done) -> Result<(), SyncError> {
        match done {
            Done::Node {
                heartbeat,
                inventory,
                claim,
                answered_ms,
            } => {
                if let Some(claim) = claim {
                    self.claimed(claim)?;
                }
                if let Some(heartbeat) = heartbeat {
                    self.heartbeat_answered(heartbeat, answered_ms);
                }
                match inventory {
                    Some(Ok(())) => self.inventory_sent = true,
                    Some(Err(e)) => self.trouble("inventory", &e),
                    None => {}
                }
            }
            Done::Config(Ok(config)) => {
                self.capacity = config.recording_capacity.max_concurrent_recordings.max(1);
                self.retention.policies = config.recorder_cache_policies;
                let wants = crate::render::enhance::listen::monitor_wants_enhanced(
                    config.monitor_enhancement.as_ref(),
                );
                if wants != self.monitor_enhanced {
                    log::info!(
                        "live listen: enhanced rendition {}",
                        if wants { "on" } else { "off" }
                    );
                }
                self.monitor_enhanced = wants;
            }
            Done::Config(Err(e)) => self.trouble("node config", &e),
            Done::Claim(claim) => self.claimed(claim)?,
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
            // An answer's writes (acknowledgement, machine step, row settled) commit once.
            Done::Outbox(sent) => self.batched(|s| s.sent(*sent))?,
            Done::Meter(results) => {
                for e in results.into_iter().filter_map(Result::err) {
                    self.trouble("meter frame or listen chunk", &e);
                }
            }
            Done::Upload(uploaded) => self.batched(|s| s.uploaded(*uploaded))?,
        }
        log::trace!("sync: {lane:?} answered");
        Ok(())
    }
}

/// The name the controller asked for, or the local one.
fn output_file_name(job: &JobRow) -> String {
    serde_json::from_str::<serde_json::Value>(&job.command_json)
        .ok()
        .and_then(|v| v["command"]["outputFileName"].as_str().map(str::to_string))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| RECORDING_FILE.to_string())
}

#[cfg(test)]
mod tests;
