//! Stopping and waking threads without polling: a [`StopFlag`] that the real-time thread
//! reads with one atomic load, and that wakes every thread waiting on it when set; and a
//! [`Doorbell`] a thread parks on until its deadline or until someone rings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A one-shot wake-up: `ring` is remembered until the waiter takes it.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Doorbell {
    pub fn ring(&self) {
        // A poisoned lock only means a waiter panicked: the bool is still meaningful.
        let mut rung = self.rung.lock().unwrap_or_else(|p| p.into_inner());
        *rung = true;
        self.cond.notify_all();
    }

    /// Parks until rung or until `timeout`; returns whether it was rung (and clears it).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut rung = self.rung.lock().unwrap_or_else(|p| p.into_inner());
        while !*rung {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            rung = match self.cond.wait_timeout(rung, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        *rung = false;
        true
    }
}

type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    stopped: Arc<AtomicBool>,
    /// Whether the hooks ran (a signal handler may set `stopped` before anyone calls `stop`).
    fired: AtomicBool,
    hooks: Mutex<Vec<(u64, Hook)>>,
    next_hook: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopFlag")
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Signals threads to leave their loops. Cheap to clone. The capture thread checks it
/// once per period (one load); threads that park register a hook that wakes them.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<Inner>);

/// Removes its hook from the flag when dropped.
pub struct StopHook {
    flag: StopFlag,
    id: u64,
}

impl Drop for StopHook {
    fn drop(&mut self) {
        let mut hooks = self.flag.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
        hooks.retain(|(id, _)| *id != self.id);
    }
}

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and runs every hook once (outside the lock: a hook may do I/O).
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        if self.0.fired.swap(true, Ordering::AcqRel) {
            return;
        }
        let hooks: Vec<Hook> = {
            let hooks = self.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
            hooks.iter().map(|(_, h)| h.clone()).collect()
        };
        for hook in hooks {
            hook();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// The flag itself, for signal handlers that set it (async-signal-safe: one store).
    /// Hooks run when [`StopFlag::stop`] is called afterwards (the signal thread does).
    pub fn as_atomic(&self) -> Arc<AtomicBool> {
        self.0.stopped.clone()
    }

    /// Runs `hook` when the flag is set (at once if it already is) until the returned
    /// guard is dropped.
    pub fn on_stop(&self, hook: impl Fn() + Send + Sync + 'static) -> StopHook {
        let id = self.0.next_hook.fetch_add(1, Ordering::Relaxed);
        let hook: Hook = Arc::new(hook);
        self.0
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, hook.clone()));
        if self.0.fired.load(Ordering::Acquire) {
            hook();
        }
        StopHook {
            flag: self.clone(),
            id,
        }
    }

    /// Parks until the flag is set or `timeout` passes; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_stopped() {
            return true;
        }
        let bell = Arc::new(Doorbell::default());
        let rung = bell.clone();
        let _hook = self.on_stop(move || rung.ring());
        bell.wait_timeout(timeout);
        self.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_ring_is_remembered_until_taken() {
        let bell = Doorbell::default();
        assert!(!bell.wait_timeout(Duration::ZERO));
        bell.ring();
        assert!(bell.wait_timeout(Duration::from_secs(10)));
        assert!(!bell.wait_timeout(Duration::from_millis(1)));
    }

    #[test]
    fn stop_runs_each_live_hook_once_and_late_hooks_at_once() {
        let flag = StopFlag::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = |runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        let kept = flag.on_stop(counted(&runs));
        drop(flag.on_stop(counted(&runs))); // removed before the stop: never runs
        flag.stop();
        flag.stop();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let _late = flag.on_stop(counted(&runs));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        drop(kept);
    }

    #[test]
    fn a_signal_handler_store_wakes_waiters_once_stop_is_called() {
        let flag = StopFlag::new();
        let waiter = {
            let flag = flag.clone();
            std::thread::spawn(move || flag.wait_timeout(Duration::from_secs(30)))
        };
        // What the signal handler does (one store), then the signal thread's stop().
        flag.as_atomic().store(true, Ordering::Release);
        assert!(flag.is_stopped());
        flag.stop();
        assert!(waiter.join().unwrap());
    }
}
