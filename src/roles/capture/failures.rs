//! A job whose thread keeps failing is retried with growing pauses, then ended; a full
//! disk is waited out rather than counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::job::JobState;
use crate::journal::{JobSource, Journal, JournalError};
use crate::segment::writer::now_ms;

/// A job whose thread keeps failing (a journal or render error that retrying does not
/// mend) is retried with growing pauses, then ended: nothing stays non-terminal forever.
#[derive(Default)]
pub(super) struct Failures {
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
    pub(super) fn failed(&mut self, id: &str, error: String, disk_full: bool) {
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
    pub(super) fn next_retry(&self, now: Instant) -> Option<Instant> {
        (self.jobs.values())
            .filter(|f| f.count < MAX_ATTEMPTS && f.retry_at > now)
            .map(|f| f.retry_at)
            .min()
    }

    pub(super) fn waiting(&self, id: &str) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|f| f.count >= MAX_ATTEMPTS || Instant::now() < f.retry_at)
    }

    /// Ends the jobs that used up their attempts, each with one terminal state: a local
    /// job `failed`; a controller's job handed to the sync role, which reports it.
    pub(super) fn give_up_on_exhausted(&mut self, journal: &Journal) -> Result<(), JournalError> {
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
