//! `edgerec capture`: the capture role. Runs every job it finds in the journal that has
//! no live owner: new ones (`claimed`, put there by the sync role), and ones a crash or a
//! restart left behind, which its janitor resumes (window still open: the interval lost
//! is a `crash_recovered` gap) or finalizes (window closed). It shares nothing with the
//! sync role but the journal, so either can restart without touching the other.
//!
//! On SIGTERM it closes every open segment and leaves its jobs to the next start, which
//! resumes them: a service restart costs a gap, never a recording.

mod failures;
mod job;
mod job_stop;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::failures::Failures;
pub use self::failures::GAVE_UP;
use self::job_stop::JournalNews;
use crate::capture::StopFlag;
use crate::capture::hotplug::STOP_NEWS;
use crate::core::job::JobState;
use crate::core::timeline::GapFill;
use crate::journal::{Journal, JournalError};
use crate::roles::finalize::{self, Finalized};
use crate::roles::owner;
use crate::roles::repair;
use crate::roles::runner::RunSettings;
use crate::segment::writer::now_ms;

/// The capture role's settings.
#[derive(Clone, Debug)]
pub struct CaptureRoleSettings {
    pub state_dir: PathBuf,
    pub run: RunSettings,
    pub gap_fill: GapFill,
    /// Return once no job is running or runnable (tests, one-shot recovery).
    pub exit_when_idle: bool,
    /// The beat's cadence while jobs run.
    pub poll: Duration,
    /// The beat's cadence with no job running, and the backstop between two scans of the
    /// journal for jobs: the sync role's datagram starts a claimed job, so the scan only
    /// catches what no datagram announced.
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
    news: Arc<JournalNews>,
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

/// Publishes the capture beat (a run file): the jobs running and the cadence it keeps.
/// A beat that cannot be written is said, never the role's end.
fn write_beat(
    journal: &Journal,
    (boot, started_ms): (&str, i64),
    jobs: &[String],
    every: Duration,
) {
    let progress =
        serde_json::json!({ "jobs": jobs, "every_ms": every.as_millis() as u64 }).to_string();
    let pid = std::process::id();
    if let Err(e) = journal.write_beat("capture", pid, boot, started_ms, now_ms(), &progress) {
        log::warn!("capture: {e}");
    }
}

/// When the role loop scans the journal for jobs: on news, when a failed job's retry
/// comes, and at most `backstop` after the last scan.
#[derive(Default)]
struct ScanSchedule {
    last: Option<Instant>,
    retry_at: Option<Instant>,
}

impl ScanSchedule {
    fn due(&self, news: bool, backstop: Duration) -> bool {
        let now = Instant::now();
        news || self.last.is_none_or(|t| now.duration_since(t) >= backstop)
            || self.retry_at.is_some_and(|r| r <= now)
    }

    fn done(&mut self, retry_at: Option<Instant>) {
        self.last = Some(Instant::now());
        self.retry_at = retry_at;
    }

    /// Until the next scan that no news brings.
    fn due_in(&self, backstop: Duration) -> Duration {
        let now = Instant::now();
        let backstop_at = self.last.map_or(now, |t| t + backstop);
        let at = self.retry_at.map_or(backstop_at, |r| r.min(backstop_at));
        at.saturating_duration_since(now)
    }
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
    // The journal is scanned for jobs when there is news (a datagram: a claim, a stop, a
    // job thread's end), when a thread ended or a retry came, and at the idle cadence as
    // a backstop for news that never came; never merely because a beat is due.
    let mut scan = ScanSchedule::default();
    let mut runnable = 0;
    let mut news = true;
    loop {
        crate::roles::notify::alive("capture");
        let reaped = reap(&mut running, &mut summary, &mut failures);
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
            write_beat(&journal, (&boot, started_ms), &jobs, every);
            beat_jobs = jobs;
        }
        if scan.due(news || reaped > 0, settings.idle_poll) {
            runnable = start_runnable_jobs(
                &journal,
                settings,
                (shutdown, waker.as_ref()),
                &mut running,
                &mut failures,
                &mut summary,
            )?;
            scan.done(failures.next_retry(Instant::now()));
        }
        if settings.exit_when_idle && running.is_empty() && runnable == 0 {
            break;
        }
        // Sleep until the next beat, retry or scan, or until the sync role says it
        // claimed a job (or a job thread that it ended).
        let every = cadence(settings, running.is_empty());
        let beat_in = last_beat.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()));
        let sleep = beat_in.min(scan.due_in(settings.idle_poll));
        news = match &wake {
            Some(listener) => match listener.wait(sleep) {
                // The sync role journaled a job's stop: its thread (or its group
                // leader's) reads the journal now rather than at its backstop.
                Some(e) if e.action == STOP_NEWS => {
                    running.values().for_each(|t| t.news.poke());
                    true
                }
                Some(_) => true,
                None => false,
            },
            None => {
                std::thread::sleep(sleep.max(Duration::from_millis(1)));
                true // no datagrams to wait for: every turn scans
            }
        };
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
        let news = Arc::new(JournalNews::default());
        let handle = job::spawn_job(
            settings.clone(),
            journal.sibling(),
            job.clone(),
            lock,
            shutdown.clone(),
            (waker.cloned(), news.clone()),
        );
        running.insert(job.id.clone(), JobThread { handle, news });
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

/// Joins the job threads that ended; returns how many.
fn reap(
    running: &mut HashMap<String, JobThread>,
    summary: &mut CaptureSummary,
    failures: &mut Failures,
) -> usize {
    let done: Vec<String> = running
        .iter()
        .filter(|(_, t)| t.handle.is_finished())
        .map(|(id, _)| id.clone())
        .collect();
    let count = done.len();
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
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_scanned_on_news_a_retry_or_the_backstop_not_on_every_beat() {
        let backstop = Duration::from_secs(10);
        let mut scan = ScanSchedule::default();
        assert!(scan.due(false, backstop), "the first turn scans");
        scan.done(None);
        assert!(!scan.due(false, backstop), "a beat alone does not");
        assert!(scan.due(true, backstop), "a datagram does");
        let left = scan.due_in(backstop);
        assert!(
            left > Duration::from_secs(9) && left <= backstop,
            "{left:?}"
        );
        // A failed job's retry comes before the backstop, and is due when it has come.
        let soon = Instant::now() + Duration::from_millis(300);
        scan.done(Some(soon));
        assert!(scan.due_in(backstop) <= Duration::from_millis(300));
        assert!(!scan.due(false, backstop));
        scan.retry_at = Some(Instant::now());
        assert!(scan.due(false, backstop));
        // Past the backstop with no news at all.
        scan.last = Some(Instant::now() - backstop);
        scan.retry_at = None;
        assert!(scan.due(false, backstop));
        assert_eq!(scan.due_in(backstop), Duration::ZERO);
    }
}
