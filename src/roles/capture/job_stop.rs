//! How a running job learns that it must stop: the role's shutdown (a flag), or the sync
//! role's stop, cancel or lost lease, which is a journal state. The sync role sends a
//! datagram once it has journaled a stop; the role loop passes it on as [`JournalNews`],
//! and the job thread reads the journal at once. Without news the journal is read only
//! at a slow backstop (a lost datagram, a role loop without its socket), so a capturing
//! job wakes for its stop only when there is one.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::capture::{StopFlag, StopHook};
use crate::journal::Journal;
use crate::roles::group_end::GroupEnds;
use crate::roles::runner::StopSource;

/// The reason a job stops because its process is shutting down (not a job end).
pub(super) const SHUTDOWN: &str = "shutdown";

/// How often a job reads the journal for a stop when the sync role's datagram can reach
/// it: a lost datagram delays a stop by at most this.
const BACKSTOP_WITH_NEWS: Duration = Duration::from_secs(10);
/// ... and when it cannot (the role loop has no socket): stops are operator-paced.
const BACKSTOP_WITHOUT_NEWS: Duration = Duration::from_secs(1);

type Wake = dyn Fn() + Send + Sync;

/// "The journal may hold a stop for you", from the role loop to one job thread.
#[derive(Default)]
pub(super) struct JournalNews {
    fresh: AtomicBool,
    /// The supervisor's wake-ups, alive while its [`StopHook`] is.
    wakes: Mutex<Vec<Weak<Wake>>>,
}

impl JournalNews {
    /// Says there is news and wakes whoever waits for the job's stop.
    pub(super) fn poke(&self) {
        self.fresh.store(true, Ordering::Release);
        let wakes: Vec<Arc<Wake>> = {
            let mut wakes = self.wakes.lock().unwrap_or_else(PoisonError::into_inner);
            wakes.retain(|w| w.strong_count() > 0);
            wakes.iter().filter_map(Weak::upgrade).collect()
        };
        for wake in wakes {
            wake();
        }
    }

    fn take(&self) -> bool {
        self.fresh.swap(false, Ordering::AcqRel)
    }

    fn register(&self, wake: &Arc<Wake>) {
        let mut wakes = self.wakes.lock().unwrap_or_else(PoisonError::into_inner);
        wakes.retain(|w| w.strong_count() > 0);
        wakes.push(Arc::downgrade(wake));
    }
}

/// Stops a job for the role's shutdown or for the sync role's stop (journal state).
pub(super) struct JobStop {
    shutdown: StopFlag,
    journal: Journal,
    job_id: String,
    news: Arc<JournalNews>,
    backstop: Duration,
    last_check: Cell<Instant>,
    stopping: Cell<bool>,
    /// A group's capture stops only when its last job has ended.
    group: GroupEnds,
}

impl JobStop {
    /// `news_reaches_us`: whether the role loop listens for the sync role's datagrams.
    pub(super) fn new(
        shutdown: StopFlag,
        journal: Journal,
        job_id: String,
        news: Arc<JournalNews>,
        news_reaches_us: bool,
    ) -> JobStop {
        JobStop {
            shutdown,
            journal,
            job_id,
            news,
            backstop: if news_reaches_us {
                BACKSTOP_WITH_NEWS
            } else {
                BACKSTOP_WITHOUT_NEWS
            },
            last_check: Cell::new(Instant::now()),
            stopping: Cell::new(false),
            group: GroupEnds::default(),
        }
    }
}

impl StopSource for JobStop {
    fn stop_reason(&self) -> Option<String> {
        if self.shutdown.is_stopped() {
            return Some(SHUTDOWN.into());
        }
        let news = self.news.take();
        if news || self.last_check.get().elapsed() >= self.backstop {
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

    fn on_stop(&self, wake: Box<Wake>) -> Option<StopHook> {
        let wake: Arc<Wake> = Arc::from(wake);
        self.news.register(&wake);
        // The hook owns the wake-up: dropping it ends the news' registration too.
        Some(self.shutdown.on_stop(move || wake()))
    }

    /// The backstop: news and the shutdown wake the supervisor themselves.
    fn recheck_every(&self) -> Option<Duration> {
        Some(self.backstop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::JobState;
    use crate::journal::{JobSource, NewJob};
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    fn capturing_job(journal: &Journal, dir: &Path, id: &str) -> String {
        let job = NewJob::for_test(id, JobSource::Controller, dir, JobState::Capturing);
        journal.create_job(&job).unwrap();
        id.to_string()
    }

    #[test]
    fn news_reads_the_journal_at_once_and_wakes_the_waiter_while_its_hook_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgerec.db");
        let journal = Journal::open(&path).unwrap();
        let job = capturing_job(&journal, dir.path(), "job-a");
        let news = Arc::new(JournalNews::default());
        let stop = JobStop::new(
            StopFlag::new(),
            Journal::open(&path).unwrap(),
            job.clone(),
            news.clone(),
            true,
        );
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let hook = stop.on_stop(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(stop.stop_reason(), None);
        assert_eq!(stop.recheck_every(), Some(BACKSTOP_WITH_NEWS));

        // The sync role's stop is journaled: without news it is not read before the
        // backstop; with news it is, and the waiter is woken.
        journal
            .set_job_state(&job, JobState::Stopping, None, 1)
            .unwrap();
        assert_eq!(stop.stop_reason(), None);
        news.poke();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(stop.stop_reason().as_deref(), Some("stop requested"));

        // Once the supervisor's hook is gone its wake-up is not called any more.
        drop(hook);
        news.poke();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_news_the_backstop_is_a_second_and_a_shutdown_needs_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgerec.db");
        let journal = Journal::open(&path).unwrap();
        let job = capturing_job(&journal, dir.path(), "job-b");
        let stop = JobStop::new(
            StopFlag::new(),
            Journal::open(&path).unwrap(),
            job,
            Arc::default(),
            false,
        );
        assert_eq!(stop.recheck_every(), Some(BACKSTOP_WITHOUT_NEWS));
        let shutdown = StopFlag::new();
        let stop = JobStop {
            shutdown: shutdown.clone(),
            ..stop
        };
        shutdown.stop();
        assert_eq!(stop.stop_reason().as_deref(), Some(SHUTDOWN));
    }
}
