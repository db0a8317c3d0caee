//! Worker threads for controller calls, one per lane (a kind of call, or one job's
//! heartbeats): the sync loop hands a call to its lane and learns the outcome later, so a
//! call that hangs for its whole timeout holds only its own lane — never another job's
//! heartbeat, never the journal. Lanes touch no journal; the loop journals every outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::capture::Doorbell;
use crate::controller::client::Client;

/// Which worker a call runs on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    /// The idle round: a claim, then the node heartbeat and inventory, back to back.
    Node,
    Config,
    /// A claim due while the node lane is held by a slow call.
    Claim,
    /// Terminal reports and health events, one at a time in outbox order.
    Outbox,
    Upload,
    /// One job's heartbeats and polls, by its local id.
    Job(String),
    /// Live levels (meter frames).
    Meter,
}

/// A call to make, and what to tell the loop about it.
pub(super) type Task<T> = Box<dyn FnOnce(&Client) -> T + Send>;
/// Calls made back to back on one lane: `early` hands the loop an outcome that must not
/// wait for the rest (the lane stays busy until the task returns its last).
pub(super) type Staged<T> = Box<dyn FnOnce(&Client, &dyn Fn(T)) -> T + Send>;

struct Worker<T> {
    inbox: Arc<Inbox<T>>,
    busy: bool,
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.inbox.close(); // its thread ends once its task (if any) is done
    }
}

/// A lane's next task, handed over under a lock and a condvar: a lane holds one task at a
/// time, and its worker parks in the kernel at once (a channel's receive spins on
/// `sched_yield` first, which on a loaded box is a context switch each).
struct Inbox<T> {
    state: Mutex<(Option<Staged<T>>, bool)>,
    ready: Condvar,
}

impl<T> Inbox<T> {
    fn new() -> Self {
        Inbox {
            state: Mutex::new((None, false)),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Staged<T>>, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the worker is gone (closed): the task is not run.
    fn put(&self, task: Staged<T>) -> bool {
        let mut state = self.lock();
        if state.1 {
            return false;
        }
        state.0 = Some(task);
        self.ready.notify_one();
        true
    }

    /// The next task; `None` once closed.
    fn take(&self) -> Option<Staged<T>> {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.0.take() {
                return Some(task);
            }
            if state.1 {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_one();
    }
}

/// Closes the inbox when its worker thread ends, by return or by panic.
struct Closing<T>(Arc<Inbox<T>>);

impl<T> Drop for Closing<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// An outcome, and whether its task is over (its lane free again).
type Outcome<T> = (Lane, T, bool);

/// Where outcomes wait for the loop, and a doorbell rung by each outcome and by a
/// wake-up: an outcome costs the loop one wake-up (a channel's select also took the
/// sender's waker lock after waking, often while the sender still held it: a second one).
struct Outcomes<T> {
    queue: Mutex<VecDeque<Outcome<T>>>,
    bell: Doorbell,
}

impl<T> Outcomes<T> {
    fn pop(&self) -> Option<Outcome<T>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.pop_front()
    }

    /// Queues `outcome`; `ring` wakes the loop for it, else it waits for the loop's next
    /// wake-up.
    fn push(&self, outcome: Outcome<T>, ring: bool) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(outcome);
        drop(queue);
        if ring {
            self.bell.ring();
        }
    }

    /// The next outcome within `timeout`; `None` at the timeout or a wake-up (or a ring
    /// whose outcome an earlier wait took: the loop then looks once more, harmlessly).
    fn wait(&self, timeout: Duration) -> Option<Outcome<T>> {
        self.pop().or_else(|| {
            self.bell.wait_timeout(timeout);
            self.pop()
        })
    }
}

/// The lanes and the one channel their outcomes come back on.
pub(super) struct Lanes<T: Send + 'static> {
    client: Arc<Client>,
    workers: HashMap<Lane, Worker<T>>,
    /// The outcomes, and the flag that wakes `next_outcome` early (a shutdown).
    done: Arc<Outcomes<T>>,
    /// Outcomes that need nothing done before the loop's next scheduled wake-up.
    quiet: fn(&T) -> bool,
}

impl<T: Send + 'static> Lanes<T> {
    pub fn new(client: Client) -> Self {
        Lanes {
            client: Arc::new(client),
            workers: HashMap::new(),
            done: Arc::new(Outcomes {
                queue: Mutex::new(VecDeque::new()),
                bell: Doorbell::default(),
            }),
            quiet: |_| false,
        }
    }

    /// Outcomes for which `quiet` holds do not wake the loop: they are taken at its next
    /// wake-up (their lane stays busy until then).
    pub fn quiet_when(mut self, quiet: fn(&T) -> bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Something another thread calls to end the current `next_outcome` wait.
    pub fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let done = Arc::clone(&self.done);
        move || done.bell.ring()
    }

    /// The controller's clock minus ours, as its replies' `Date` headers say.
    pub fn clock_skew(&self) -> Option<crate::controller::client::ClockSkew> {
        self.client.clock_skew()
    }

    /// The node the client speaks for.
    pub fn node_id(&self) -> &str {
        self.client.node_id()
    }

    /// Whether `lane` has a call in flight.
    pub fn is_busy(&self, lane: &Lane) -> bool {
        self.workers.get(lane).is_some_and(|w| w.busy)
    }

    /// Hands `task` to `lane`'s worker (started on first use). Returns false, running
    /// nothing, when the lane is busy or its thread cannot be started.
    pub fn submit(&mut self, lane: Lane, task: Task<T>) -> bool {
        self.submit_staged(lane, Box::new(move |c: &Client, _: &dyn Fn(T)| task(c)))
    }

    /// As [`Lanes::submit`], for calls made back to back that may hand over an outcome
    /// before the last.
    pub fn submit_staged(&mut self, lane: Lane, task: Staged<T>) -> bool {
        if self.is_busy(&lane) {
            return false;
        }
        if !self.workers.contains_key(&lane) {
            match self.start(&lane) {
                Ok(worker) => {
                    self.workers.insert(lane.clone(), worker);
                }
                Err(e) => {
                    log::error!("sync: cannot start a worker for {lane:?}: {e}");
                    return false;
                }
            }
        }
        let worker = self.workers.get_mut(&lane).expect("inserted above");
        if worker.inbox.put(task) {
            worker.busy = true;
            true
        } else {
            // The worker is gone (it panicked): start a fresh one next time.
            self.workers.remove(&lane);
            false
        }
    }

    fn start(&self, lane: &Lane) -> std::io::Result<Worker<T>> {
        let inbox = Arc::new(Inbox::new());
        let closing = Closing(Arc::clone(&inbox));
        let client = Arc::clone(&self.client);
        let done = Arc::clone(&self.done);
        let name = match lane {
            Lane::Job(_) => "edgerec-sync-job".to_string(),
            other => format!("edgerec-sync-{other:?}").to_lowercase(),
        };
        let me = lane.clone();
        let quiet = self.quiet;
        std::thread::Builder::new().name(name).spawn(move || {
            // Ends when the loop drops the lane (or the whole sync role stops).
            while let Some(task) = closing.0.take() {
                let early = |t: T| done.push((me.clone(), t, false), true);
                let last = task(&client, &early);
                let ring = !quiet(&last);
                done.push((me.clone(), last, true), ring);
            }
        })?;
        Ok(Worker { inbox, busy: false })
    }

    /// Waits up to `timeout` for the next outcome; `None` when none came.
    pub fn next_outcome(&mut self, timeout: Duration) -> Option<(Lane, T)> {
        let (lane, outcome, last) = self.done.wait(timeout)?;
        if last && let Some(w) = self.workers.get_mut(&lane) {
            w.busy = false;
        }
        Some((lane, outcome))
    }

    /// Stops the job lanes not in `keep` once they are idle (their threads end).
    pub fn retire_jobs_except(&mut self, keep: &dyn Fn(&str) -> bool) {
        self.workers.retain(|lane, w| match lane {
            Lane::Job(id) => w.busy || keep(id),
            _ => true,
        });
    }

    /// How many workers exist (for tests and the log).
    #[cfg(test)]
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::client::ClientConfig;
    use std::time::Instant;

    fn lanes() -> (Lanes<u32>, tempfile::TempDir) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "rakkr_node_x").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = ClientConfig::new("http://127.0.0.1:9/api/v1", "node_1", &token);
        (Lanes::new(Client::new(cfg).unwrap()), dir)
    }

    #[test]
    fn a_hanging_lane_holds_only_itself() {
        let (mut lanes, _dir) = lanes();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        assert!(lanes.submit(
            Lane::Claim,
            Box::new(move |_| {
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
                1
            })
        ));
        assert!(lanes.is_busy(&Lane::Claim));
        assert!(
            !lanes.submit(Lane::Claim, Box::new(|_| 9)),
            "one call per lane"
        );
        let started = Instant::now();
        assert!(lanes.submit(Lane::Job("a".into()), Box::new(|_| 2)));
        let (lane, v) = lanes.next_outcome(Duration::from_secs(5)).unwrap();
        assert_eq!((lane, v), (Lane::Job("a".into()), 2));
        // Well before the claim's 10 s hold; a margin for a new thread on a loaded box.
        assert!(started.elapsed() < Duration::from_secs(3));
        release_tx.send(()).unwrap();
        let (lane, v) = lanes.next_outcome(Duration::from_secs(5)).unwrap();
        assert_eq!((lane, v), (Lane::Claim, 1));
        assert!(!lanes.is_busy(&Lane::Claim));
        assert_eq!(lanes.worker_count(), 2);
        lanes.retire_jobs_except(&|_| false);
        assert_eq!(lanes.worker_count(), 1);
    }

    #[test]
    fn a_wake_ends_the_wait_at_once_and_is_taken_once() {
        let (mut lanes, _dir) = lanes();
        let wake = lanes.waker();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            wake();
        });
        assert_eq!(lanes.next_outcome(Duration::from_secs(10)), None);
        let woken_after = started.elapsed();
        assert!(woken_after < Duration::from_secs(5), "{woken_after:?}");
        // Taken: the next wait runs to its timeout.
        let started = Instant::now();
        assert_eq!(lanes.next_outcome(Duration::from_millis(200)), None);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_quiet_outcome_waits_for_the_loops_own_wake_up() {
        let (lanes, _dir) = lanes();
        let mut lanes = lanes.quiet_when(|v| *v == 0);
        // The call answers after the wait has begun (one already queued is taken at once,
        // which a loaded box's scheduling made happen here once).
        assert!(lanes.submit(
            Lane::Node,
            Box::new(|_| {
                std::thread::sleep(Duration::from_millis(100));
                0
            })
        ));
        let started = Instant::now();
        // Not woken by it: the wait runs to its end, then takes it.
        assert_eq!(
            lanes.next_outcome(Duration::from_millis(300)),
            Some((Lane::Node, 0))
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!lanes.is_busy(&Lane::Node));
        // Any other outcome still wakes it at once.
        assert!(lanes.submit(Lane::Node, Box::new(|_| 7)));
        let started = Instant::now();
        assert_eq!(
            lanes.next_outcome(Duration::from_secs(10)),
            Some((Lane::Node, 7))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_early_outcome_leaves_its_lane_busy_until_the_last() {
        let (mut lanes, _dir) = lanes();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        assert!(lanes.submit_staged(
            Lane::Node,
            Box::new(move |_, early| {
                early(1);
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
                2
            })
        ));
        let got = lanes.next_outcome(Duration::from_secs(5));
        assert_eq!(got, Some((Lane::Node, 1)));
        assert!(lanes.is_busy(&Lane::Node), "the task is not over");
        assert!(!lanes.submit(Lane::Node, Box::new(|_| 9)));
        release_tx.send(()).unwrap();
        let got = lanes.next_outcome(Duration::from_secs(5));
        assert_eq!(got, Some((Lane::Node, 2)));
        assert!(!lanes.is_busy(&Lane::Node));
    }
}
