//! Worker threads for controller calls, one per lane (a kind of call, or one job's
//! heartbeats): the sync loop hands a call to its lane and learns the outcome later, so a
//! call that hangs for its whole timeout holds only its own lane — never another job's
//! heartbeat, never the journal. Lanes touch no journal; the loop journals every outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::controller::client::Client;

/// Which worker a call runs on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    /// Node heartbeat and inventory.
    Node,
    Config,
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

struct Worker<T> {
    tasks: Sender<Task<T>>,
    busy: bool,
}

/// The lanes and the one channel their outcomes come back on.
pub(super) struct Lanes<T: Send + 'static> {
    client: Arc<Client>,
    workers: HashMap<Lane, Worker<T>>,
    done_tx: Sender<(Lane, T)>,
    done_rx: Receiver<(Lane, T)>,
    /// Wakes `next_outcome` early (a shutdown): one pending wake-up is enough.
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl<T: Send + 'static> Lanes<T> {
    pub fn new(client: Client) -> Self {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        Lanes {
            client: Arc::new(client),
            workers: HashMap::new(),
            done_tx,
            done_rx,
            wake_tx,
            wake_rx,
        }
    }

    /// Something another thread calls to end the current `next_outcome` wait.
    pub fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let tx = self.wake_tx.clone();
        move || {
            let _ = tx.try_send(());
        }
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
        match worker.tasks.send(task) {
            Ok(()) => {
                worker.busy = true;
                true
            }
            Err(_) => {
                // The worker is gone (it panicked): start a fresh one next time.
                self.workers.remove(&lane);
                false
            }
        }
    }

    fn start(&self, lane: &Lane) -> std::io::Result<Worker<T>> {
        let (tasks, inbox) = crossbeam_channel::unbounded::<Task<T>>();
        let client = Arc::clone(&self.client);
        let done = self.done_tx.clone();
        let name = match lane {
            Lane::Job(_) => "edgerec-sync-job".to_string(),
            other => format!("edgerec-sync-{other:?}").to_lowercase(),
        };
        let me = lane.clone();
        std::thread::Builder::new().name(name).spawn(move || {
            // Ends when the loop drops the lane (or the whole sync role stops).
            for task in inbox {
                if done.send((me.clone(), task(&client))).is_err() {
                    return;
                }
            }
        })?;
        Ok(Worker { tasks, busy: false })
    }

    /// Waits up to `timeout` for the next outcome; `None` when none came.
    pub fn next_outcome(&mut self, timeout: Duration) -> Option<(Lane, T)> {
        let got = crossbeam_channel::select! {
            recv(self.done_rx) -> got => got.ok()?,
            recv(self.wake_rx) -> _ => return None,
            default(timeout) => return None,
        };
        if let Some(w) = self.workers.get_mut(&got.0) {
            w.busy = false;
        }
        Some(got)
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
        assert!(started.elapsed() < Duration::from_secs(1));
        release_tx.send(()).unwrap();
        let (lane, v) = lanes.next_outcome(Duration::from_secs(5)).unwrap();
        assert_eq!((lane, v), (Lane::Claim, 1));
        assert!(!lanes.is_busy(&Lane::Claim));
        assert_eq!(lanes.worker_count(), 2);
        lanes.retire_jobs_except(&|_| false);
        assert_eq!(lanes.worker_count(), 1);
    }
}
