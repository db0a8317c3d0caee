//! `edgerec capture`: the capture role. Runs every job it finds in the journal that has
//! no live owner: new ones (`claimed`, put there by the sync role), and ones a crash or a
//! restart left behind, which its janitor resumes (window still open: the interval lost
//! is a `crash_recovered` gap) or finalizes (window closed). It shares nothing with the
//! sync role but the journal, so either can restart without touching the other.
//!
//! On SIGTERM it closes every open segment and leaves its jobs to the next start, which
//! resumes them: a service restart costs a gap, never a recording.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::StopFlag;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, GapFill, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal, JournalError};
use crate::roles::finalize::{self, Finalized, JobEnd};
use crate::roles::group_end::GroupEnds;
use crate::roles::live_chunks::LiveChunks;
use crate::roles::owner::{self, JobLock};
use crate::roles::repair::{self, RepairSummary};
use crate::roles::runner::{self, CaptureOutcome, RunSettings, StopSource};
use crate::segment::writer::{GapSince, ResumeGap, now_ms};

/// The capture role's settings.
#[derive(Clone, Debug)]
pub struct CaptureRoleSettings {
    pub state_dir: PathBuf,
    pub run: RunSettings,
    pub gap_fill: GapFill,
    /// Return once no job is running or runnable (tests, one-shot recovery).
    pub exit_when_idle: bool,
    /// How often the journal is scanned for new jobs while jobs run (and the beat's cadence).
    pub poll: Duration,
    /// The same with no job running: the sync role's datagram starts a claimed job, so
    /// the scan only catches what no datagram announced.
    pub idle_poll: Duration,
    /// How long SIGTERM may take before the role gives up on a job thread.
    pub shutdown_deadline: Duration,
}

impl CaptureRoleSettings {
    pub fn new(state_dir: PathBuf) -> Self {
        let run = RunSettings::new(finalize::journal_path(&state_dir), state_dir.clone());
        CaptureRoleSettings {
            state_dir,
            run,
            gap_fill: GapFill::Silence,
            exit_when_idle: false,
            // The sync role's datagram starts a claimed job at once; the scan only
            // catches what no datagram announced, at the beat's cadence.
            poll: BEAT_EVERY,
            idle_poll: IDLE_BEAT_EVERY,
            shutdown_deadline: Duration::from_secs(4),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureRoleError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Stops a job for the role's shutdown or for the sync role's stop (journal state).
struct JobStop {
    shutdown: StopFlag,
    journal: Journal,
    job_id: String,
    last_check: std::cell::Cell<Instant>,
    stopping: std::cell::Cell<bool>,
    /// A group's capture stops only when its last job has ended.
    group: GroupEnds,
}

/// How often a running job looks for the sync role's stop in the journal.
const JOURNAL_STOP_EVERY: Duration = Duration::from_secs(1);

/// The reason a job stops because its process is shutting down (not a job end).
const SHUTDOWN: &str = "shutdown";

impl StopSource for JobStop {
    fn stop_reason(&self) -> Option<String> {
        if self.shutdown.is_stopped() {
            return Some(SHUTDOWN.into());
        }
        // The journal is read at most once a second: stops are operator-paced.
        if self.last_check.get().elapsed() >= JOURNAL_STOP_EVERY {
            self.last_check.set(Instant::now());
            match self.group.all_ended(&self.journal, &self.job_id) {
                Ok(ended) => self.stopping.set(ended),
                Err(e) => log::warn!("{}: reading the job's stop: {e}", self.job_id),
            }
        }
        self.stopping.get().then(|| "stop requested".to_string())
    }

    fn note_frames(&self, timeline_frames: u64) {
        self.group.note_frames(timeline_frames);
    }

    fn on_stop(&self, wake: Box<dyn Fn() + Send + Sync>) -> Option<crate::capture::StopHook> {
        Some(self.shutdown.on_stop(wake))
    }
    /// The sync role's stop is a journal state: looked at once a second.
    fn recheck_every(&self) -> Option<Duration> {
        Some(JOURNAL_STOP_EVERY)
    }
}

/// Wakes the role loop from another thread.
type Waker = Arc<dyn Fn() + Send + Sync>;

/// What one role run did (for tests and the log).
#[derive(Debug, Default)]
pub struct CaptureSummary {
    pub finalized: Vec<Finalized>,
    pub resumed: Vec<String>,
    pub left_for_restart: Vec<String>,
}

struct JobThread {
    handle: JoinHandle<JobThreadEnd>,
}

enum JobThreadEnd {
    Finalized(Box<Finalized>),
    LeftForRestart(String),
    /// The error, and whether it was a full disk (waited out, not counted).
    Failed(String, bool),
}

/// How often the capture role's beat is published (a run file, off the journal). The sync
/// role heartbeats jobs only while this beat is younger than its `capture_beat_max_age`
/// (5 s).
pub const BEAT_EVERY: Duration = Duration::from_secs(2);
/// The beat with no job running: liveness is the pid and boot id (`status` checks them
/// against `/proc`), so the beat only has to show a loop that still turns.
pub const IDLE_BEAT_EVERY: Duration = Duration::from_secs(10);
/// A beat is late once this much past the cadence it says it keeps.
const BEAT_SLACK_MS: i64 = 3_000;

/// The cadence a capture beat says it keeps (`every_ms` in its progress), if it says.
pub fn beat_every_ms(progress: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(progress)
        .ok()?
        .get("every_ms")?
        .as_i64()
        .filter(|ms| *ms > 0)
}

/// How old a capture beat may be and still count as fresh: `busy_max_ms`, or its own
/// cadence plus a slack when it says it beats more slowly (an idle role).
pub fn beat_max_age_ms(progress: &str, busy_max_ms: i64) -> i64 {
    beat_every_ms(progress).map_or(busy_max_ms, |every| {
        busy_max_ms.max(every.saturating_add(BEAT_SLACK_MS))
    })
}

fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= every)
}

/// The loop's cadence: its poll while jobs run, its idle poll otherwise, and never
/// longer than the systemd watchdog allows between two of its pings.
fn cadence(settings: &CaptureRoleSettings, idle: bool) -> Duration {
    let every = if idle {
        settings.idle_poll
    } else {
        settings.poll
    };
    crate::roles::notify::quiet_at_most().map_or(every, |q| every.min(q))
}

/// This boot's identity: beats from before a reboot are recognisably stale.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs the capture role until `shutdown` (or idle, if asked).
pub fn run(
    settings: &CaptureRoleSettings,
    shutdown: &StopFlag,
) -> Result<CaptureSummary, CaptureRoleError> {
    std::fs::create_dir_all(&settings.state_dir).map_err(|source| CaptureRoleError::StateDir {
        path: settings.state_dir.clone(),
        source,
    })?;
    crate::journal::run_files::prepare_run_dir_logged(&settings.state_dir);
    let journal = Journal::open(&settings.run.journal_path)?;
    // Listed, never deleted: `edgerec repair --rebuild` puts them back on their jobs.
    repair::unknown_segments_logged(&journal, &settings.state_dir);
    let started_ms = now_ms();
    let boot = boot_id();
    let mut running: HashMap<String, JobThread> = HashMap::new();
    let mut failures = Failures::default();
    let mut summary = CaptureSummary::default();
    let mut last_beat: Option<Instant> = None;
    let mut beat_jobs: Vec<String> = Vec::new();
    let wake = crate::capture::hotplug::HotplugListener::bind(&settings.state_dir)
        .map_err(|e| log::warn!("wake-up socket unavailable ({e}); polling the journal only"))
        .ok();
    // A shutdown wakes the loop at once (a datagram to its own socket).
    let waker: Option<Waker> = wake
        .as_ref()
        .and_then(|l| l.waker().ok())
        .map(|w| Arc::new(w) as Waker);
    let _wake_on_stop = waker.clone().map(|w| shutdown.on_stop(move || w()));
    crate::roles::notify::ready("capture");
    loop {
        crate::roles::notify::alive("capture");
        reap(&mut running, &mut summary, &mut failures);
        failures.give_up_on_exhausted(&journal)?;
        if shutdown.is_stopped() {
            break;
        }
        let every = cadence(settings, running.is_empty());
        let mut jobs: Vec<String> = running.keys().cloned().collect();
        jobs.sort();
        // A job started or ended is said at once: the sync role reads the cadence.
        if due(last_beat, every) || jobs != beat_jobs {
            last_beat = Some(Instant::now());
            let progress =
                serde_json::json!({ "jobs": jobs, "every_ms": every.as_millis() as u64 })
                    .to_string();
            // A run file: a beat that cannot be written is said, never the role's end.
            if let Err(e) = journal.write_beat(
                "capture",
                std::process::id(),
                &boot,
                started_ms,
                now_ms(),
                &progress,
            ) {
                log::warn!("capture: {e}");
            }
            beat_jobs = jobs;
        }
        let runnable = start_runnable_jobs(
            &journal,
            settings,
            (shutdown, waker.as_ref()),
            &mut running,
            &mut failures,
            &mut summary,
        )?;
        if settings.exit_when_idle && running.is_empty() && runnable == 0 {
            break;
        }
        // Sleep until the next beat or retry, or until the sync role says it claimed a
        // job (or a job thread that it ended).
        let every = cadence(settings, running.is_empty());
        let beat_in = last_beat.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()));
        let now = Instant::now();
        let retry_in = failures.next_retry(now).map(|t| t - now);
        let sleep = retry_in.map_or(beat_in, |r| r.min(beat_in));
        match &wake {
            Some(listener) => {
                listener.wait(sleep);
            }
            None => std::thread::sleep(sleep.max(Duration::from_millis(1))),
        }
    }
    stop_job_threads(
        running,
        &mut summary,
        &mut failures,
        settings.shutdown_deadline,
    );
    Ok(summary)
}

/// Starts a thread for each job the capture role owns that has none yet; returns how many
/// jobs are runnable (started now, already waiting out a failure, or locked elsewhere).
fn start_runnable_jobs(
    journal: &Journal,
    settings: &CaptureRoleSettings,
    (shutdown, waker): (&StopFlag, Option<&Waker>),
    running: &mut HashMap<String, JobThread>,
    failures: &mut Failures,
    summary: &mut CaptureSummary,
) -> Result<usize, CaptureRoleError> {
    let mut runnable = 0;
    for job in journal.non_terminal_jobs()? {
        if running.contains_key(&job.id) || !owned_by_capture(job.state) {
            continue;
        }
        // A capture-group member is captured by its leader's thread; it is only run on
        // its own when its leader's capture is over (a crash between the renders).
        if let Some(leader) = journal.group_leader(&job.id)?
            && leader != job.id
            && (running.contains_key(&leader)
                || journal.job(&leader)?.is_some_and(|l| capturing(l.state)))
        {
            continue;
        }
        runnable += 1;
        if failures.waiting(&job.id) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&job.dir) {
            let error = format!("job directory {}: {e}", job.dir.display());
            let full = crate::segment::disk::is_disk_full(&e);
            failures.failed(&job.id, error, full);
            continue;
        }
        let Ok(Some(lock)) = owner::try_lock(&job.dir) else {
            continue;
        };
        if job.state != JobState::Claimed {
            summary.resumed.push(job.id.clone());
        }
        let handle = spawn_job(
            settings.clone(),
            job.clone(),
            lock,
            shutdown.clone(),
            waker.cloned(),
        );
        running.insert(job.id.clone(), JobThread { handle });
    }
    Ok(runnable)
}

/// Bounded teardown: job threads see the shutdown within a period and close segments.
fn stop_job_threads(
    mut running: HashMap<String, JobThread>,
    summary: &mut CaptureSummary,
    failures: &mut Failures,
    deadline: Duration,
) {
    let until = Instant::now() + deadline;
    while !running.is_empty() && Instant::now() < until {
        reap(&mut running, summary, failures);
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in running.keys() {
        log::error!(
            "{id}: job thread did not stop within {:?}; the janitor will resume it",
            deadline
        );
    }
}

fn capturing(state: JobState) -> bool {
    matches!(
        state,
        JobState::Claimed | JobState::Capturing | JobState::Stopping
    )
}

/// States in which the capture role, not the sync role, must act.
fn owned_by_capture(state: JobState) -> bool {
    matches!(
        state,
        JobState::Claimed
            | JobState::Capturing
            | JobState::Stopping
            | JobState::Captured
            | JobState::Rendering
    )
}

fn reap(
    running: &mut HashMap<String, JobThread>,
    summary: &mut CaptureSummary,
    failures: &mut Failures,
) {
    let done: Vec<String> = running
        .iter()
        .filter(|(_, t)| t.handle.is_finished())
        .map(|(id, _)| id.clone())
        .collect();
    for id in done {
        let thread = running.remove(&id).expect("listed above");
        match thread.handle.join() {
            Ok(JobThreadEnd::Finalized(f)) => summary.finalized.push(*f),
            Ok(JobThreadEnd::LeftForRestart(id)) => summary.left_for_restart.push(id),
            Ok(JobThreadEnd::Failed(e, disk_full)) => {
                log::error!("{id}: {e}");
                failures.failed(&id, e, disk_full);
            }
            Err(_) => {
                log::error!("{id}: job thread panicked; the janitor will pick the job up again");
                failures.failed(&id, "job thread panicked".into(), false);
            }
        }
    }
}

/// A job whose thread keeps failing (a journal or render error that retrying does not
/// mend) is retried with growing pauses, then ended: nothing stays non-terminal forever.
#[derive(Default)]
struct Failures {
    jobs: HashMap<String, JobFailures>,
}

struct JobFailures {
    count: u32,
    retry_at: Instant,
    last_error: String,
    /// Failing for a full disk since then.
    full_since: Option<Instant>,
}

/// A job that cannot finish for a full disk is retried this often, for this long.
const DISK_FULL_RETRY: Duration = Duration::from_secs(15);
const DISK_FULL_PATIENCE: Duration = Duration::from_secs(600);

/// Attempts before a failing job is ended (retried after 1, 2, 4, 8 s: about 15 s).
const MAX_ATTEMPTS: u32 = 5;

/// The end-cause prefix of a job the capture role gave up on.
pub const GAVE_UP: &str = "gave_up";

impl Failures {
    fn failed(&mut self, id: &str, error: String, disk_full: bool) {
        let now = Instant::now();
        let f = self.jobs.entry(id.to_string()).or_insert(JobFailures {
            count: 0,
            retry_at: now,
            last_error: String::new(),
            full_since: None,
        });
        f.last_error = error;
        if disk_full {
            // Space may come back (reclaim, an operator): wait, bounded.
            let since = *f.full_since.get_or_insert(now);
            f.retry_at = now + DISK_FULL_RETRY;
            if since.elapsed() >= DISK_FULL_PATIENCE {
                f.count = MAX_ATTEMPTS;
            }
            return;
        }
        f.count += 1;
        f.retry_at = now + Duration::from_secs(1 << (f.count - 1).min(6));
    }

    /// The next instant a failed job may be retried, if one is still ahead (an entry
    /// whose retry has come stays until the job fails again or is given up on).
    fn next_retry(&self, now: Instant) -> Option<Instant> {
        (self.jobs.values())
            .filter(|f| f.count < MAX_ATTEMPTS && f.retry_at > now)
            .map(|f| f.retry_at)
            .min()
    }

    fn waiting(&self, id: &str) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|f| f.count >= MAX_ATTEMPTS || Instant::now() < f.retry_at)
    }

    /// Ends the jobs that used up their attempts, each with one terminal state: a local
    /// job `failed`; a controller's job handed to the sync role, which reports it.
    fn give_up_on_exhausted(&mut self, journal: &Journal) -> Result<(), JournalError> {
        let done: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, f)| f.count >= MAX_ATTEMPTS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let f = self.jobs.remove(&id).expect("listed above");
            let Some(job) = journal.job(&id)? else {
                continue;
            };
            if job.state.is_terminal() || job.state == JobState::Cached {
                continue;
            }
            let cause = format!(
                "{GAVE_UP}: {MAX_ATTEMPTS} attempts failed; last: {} (the segments are kept)",
                f.last_error
            );
            log::error!("{id}: {cause}");
            let state = match job.source {
                JobSource::Local => JobState::Failed,
                JobSource::Controller => JobState::Cached,
            };
            journal.set_job_state(&id, state, Some(&cause), now_ms())?;
        }
        Ok(())
    }
}

fn spawn_job(
    settings: CaptureRoleSettings,
    job: JobRow,
    lock: JobLock,
    shutdown: StopFlag,
    waker: Option<Waker>,
) -> JoinHandle<JobThreadEnd> {
    std::thread::Builder::new()
        .name(format!(
            "edgerec-job-{}",
            &job.id[job.id.len().saturating_sub(8)..]
        ))
        .spawn(move || {
            let _lock = lock; // held until the thread ends
            let end = match run_one(&settings, &job, &shutdown) {
                Ok(end) => end,
                Err(e) => JobThreadEnd::Failed(e.to_string(), e.is_disk_full()),
            };
            // The role loop reaps it now rather than at its next scan.
            if let Some(wake) = waker {
                wake();
            }
            end
        })
        .expect("spawn job thread")
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Run(#[from] runner::RunError),
    #[error("repair: {0}")]
    Repair(#[from] repair::RepairError),
    #[error("finalize: {0}")]
    Finalize(#[from] finalize::FinalizeError),
}

impl JobError {
    /// A full disk: the job waits for space rather than using up its attempts.
    fn is_disk_full(&self) -> bool {
        use crate::segment::disk::is_journal_disk_full;
        match self {
            JobError::Journal(e) | JobError::Run(runner::RunError::Journal(e)) => {
                is_journal_disk_full(e)
            }
            JobError::Finalize(e) | JobError::Repair(repair::RepairError::Finalize(e)) => {
                e.is_disk_full()
            }
            JobError::Repair(repair::RepairError::Journal(e)) => is_journal_disk_full(e),
            _ => false,
        }
    }
}

/// Drives one job from wherever the journal says it is to its end (or to a shutdown).
fn run_one(
    settings: &CaptureRoleSettings,
    job: &JobRow,
    shutdown: &StopFlag,
) -> Result<JobThreadEnd, JobError> {
    let mut journal = Journal::open(&settings.run.journal_path)?;
    let mut resume = None;
    if let Some(leader) = journal.group_leader(&job.id)?
        && leader != job.id
    {
        // A member whose leader's capture is over: render it from the leader's segments.
        let how = JobEnd::new("captured by its capture group's leader");
        return finish(&mut journal, &job.id, &how, settings);
    }
    match job.state {
        JobState::Captured | JobState::Rendering => {
            return finish(&mut journal, &job.id, &JobEnd::new("captured"), settings);
        }
        JobState::Claimed => {
            journal.set_job_state(&job.id, JobState::Capturing, None, now_ms())?;
            for member in journal.group_members(&job.id)? {
                journal.set_job_state_if(
                    &member,
                    JobState::Claimed,
                    JobState::Capturing,
                    None,
                    now_ms(),
                )?;
            }
        }
        _ => match after_a_crash(&mut journal, job)? {
            CrashedJob::WindowClosed => {
                // Capture ended early: the recording ends at its last captured frame.
                let how = JobEnd::new("window_closed_while_down");
                return finish(&mut journal, &job.id, &how, settings);
            }
            CrashedJob::Resume(gap) => resume = gap,
        },
    }
    let job = journal.job(&job.id)?.unwrap_or_else(|| job.clone());
    let stop = JobStop {
        shutdown: shutdown.clone(),
        journal: Journal::open(&settings.run.journal_path)?,
        job_id: job.id.clone(),
        last_check: std::cell::Cell::new(Instant::now()),
        stopping: std::cell::Cell::new(false),
        group: GroupEnds::default(),
    };
    let chunker = LiveChunks::start(&journal, &job, &settings.run, settings.gap_fill);
    let result = runner::run_job(&mut journal, &job, &settings.run, &stop, resume);
    let shutting_down =
        matches!(&result, Ok(r) if r.outcome == CaptureOutcome::Stopped(SHUTDOWN.into()));
    if let Some(chunker) = chunker {
        chunker.stop(!shutting_down);
    }
    let result = result?;
    if shutting_down {
        log::info!(
            "{}: segments closed for shutdown; the next start resumes the job",
            job.id
        );
        return Ok(JobThreadEnd::LeftForRestart(job.id.clone()));
    }
    journal.set_job_state(&job.id, JobState::Captured, None, now_ms())?;
    let how = JobEnd {
        cause: result.outcome.cause(),
        ended_at_ms: result.ended_at_ms,
        total_frames: result.total_frames,
        capture_failed: result.outcome.is_failure(),
        no_stitch: false,
    };
    finish(&mut journal, &job.id, &how, settings)
}

/// What a job a previous owner left mid-capture comes to.
enum CrashedJob {
    /// Its window closed (or it was stopping) while no one captured: it is `captured`.
    WindowClosed,
    /// Capture resumes; the gap since the last write, once the job has started.
    Resume(Option<ResumeGap>),
}

/// A previous owner died mid-capture: repair what it left, then resume or end.
fn after_a_crash(journal: &mut Journal, job: &JobRow) -> Result<CrashedJob, JobError> {
    let mut repaired = RepairSummary::default();
    let last_write_ms = repair::reconcile_job_segments(journal, job, &mut repaired)?;
    let job = journal.job(&job.id)?.unwrap_or_else(|| job.clone());
    let window_open = runner::window_end(&job).is_none_or(|end| now_ms() < end);
    if !window_open || job.state == JobState::Stopping {
        let (end, _) = runner::timeline_position(journal, &job.id)?;
        let gap = repair::crash_gap_frames(&job, end, last_write_ms, now_ms());
        let ev = TimelineEvent::new(EventKind::CrashRecovered, end, now_ms())
            .with_gap(gap)
            .with_detail(repair::crash_detail(&job, end, gap));
        journal.add_event(&job.id, &ev)?;
        journal.set_job_state(&job.id, JobState::Captured, None, now_ms())?;
        return Ok(CrashedJob::WindowClosed);
    }
    log::warn!(
        "{}: resuming capture after a crash or restart (last write {} ms ago)",
        job.id,
        now_ms() - last_write_ms
    );
    Ok(CrashedJob::Resume(job.started_at_ms.is_some().then(|| {
        ResumeGap {
            since: GapSince::WallMs(last_write_ms),
            kind: EventKind::CrashRecovered,
            detail: "capture resumed after a crash or restart".into(),
        }
    })))
}

fn finish(
    journal: &mut Journal,
    job_id: &str,
    how: &JobEnd,
    settings: &CaptureRoleSettings,
) -> Result<JobThreadEnd, JobError> {
    let job = journal.job(job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?;
    // The capture that serves this job: its own, or its group leader's.
    let source = match journal.group_leader(job_id)? {
        Some(leader) if leader != job_id => journal.job(&leader)?.unwrap_or_else(|| job.clone()),
        _ => job.clone(),
    };
    if !job.state.is_terminal() && job.state != JobState::Cached {
        let done = finalize::finalize_from(journal, &job, &source, how, settings.gap_fill)?;
        if job.source == JobSource::Controller {
            log::info!("{job_id}: rendered; the sync role delivers it");
        }
        // One capture, every member rendered with its own channels.
        if source.id == job.id {
            for member in journal.group_members(job_id)? {
                match journal.job(&member)? {
                    Some(m) if !m.state.is_terminal() && m.state != JobState::Cached => {
                        // A member never ran on its own: its directory may not exist yet.
                        let rendered = std::fs::create_dir_all(&m.dir)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                finalize::finalize_from(journal, &m, &job, how, settings.gap_fill)
                                    .map_err(|e| e.to_string())
                            });
                        match rendered {
                            Ok(_) => log::info!("{member}: rendered from {job_id}'s capture"),
                            // The janitor renders it on its next pass.
                            Err(e) => {
                                log::error!("{member}: rendering from {job_id}'s capture: {e}")
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        return Ok(JobThreadEnd::Finalized(Box::new(done)));
    }
    Ok(JobThreadEnd::Failed(
        format!("{job_id} is already {}", job.state),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_retry_still_ahead_sets_the_wake_up() {
        let now = Instant::now();
        let mut failures = Failures::default();
        assert_eq!(failures.next_retry(now), None);
        failures.failed("a", "boom".into(), false); // retried in 1 s
        let ahead = failures.next_retry(now).expect("a retry ahead");
        assert!(ahead > now && ahead <= now + Duration::from_secs(2));
        // Its time has come (the job runs again): no wake-up for it any more, or the
        // loop would spin on a deadline in the past.
        assert_eq!(failures.next_retry(now + Duration::from_secs(3)), None);
        // Given up: none either.
        for _ in 0..MAX_ATTEMPTS {
            failures.failed("b", "boom".into(), false);
        }
        assert_eq!(failures.next_retry(now + Duration::from_secs(3)), None);
    }
}
