//! Controller trouble in the log: the first failure of each kind at once, repeats folded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Sync;
use crate::controller::client::CallError;
use crate::logging::untrusted;

/// Repeats of one kind of failure (call and error kind) within this window are folded.
const FOLD_WINDOW: Duration = Duration::from_secs(60);

/// Which controller failures to log: the first of each kind (call and error kind) at
/// once, then one line per [`FOLD_WINDOW`] saying how many repeats it folded. Pure: the
/// caller passes the clock.
#[derive(Default)]
pub(super) struct FailureLog {
    kinds: HashMap<(&'static str, String), (Instant, u64)>,
}

impl FailureLog {
    /// `Some(repeats folded since the last line)` when this failure is to be logged.
    pub(super) fn note(&mut self, call: &'static str, kind: String, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(&(call, kind.clone())) {
            None => {
                self.kinds.insert((call, kind), (now, 0));
                Some(0)
            }
            Some((logged_at, repeats)) if now.duration_since(*logged_at) < FOLD_WINDOW => {
                *repeats += 1;
                None
            }
            Some(entry) => Some(std::mem::replace(entry, (now, 0)).1),
        }
    }
}

impl Sync {
    /// Logs controller trouble: the first failure of each kind (call and error kind) at
    /// once, repeats of it folded into one line a minute. Capture is never affected.
    pub(super) fn trouble(&mut self, what: &'static str, e: &CallError) {
        let Some(folded) = self.trouble_log.note(what, e.kind(), Instant::now()) else {
            return;
        };
        let retry = if e.is_retryable() {
            "will retry"
        } else {
            "not retried unchanged"
        };
        let text = e.to_string();
        let message = untrusted(&text);
        match folded {
            0 => log::warn!("controller {what}: {message} ({retry}; capture is unaffected)"),
            n => log::warn!(
                "controller {what}: {message} ({retry}; {n} more like it folded; capture is unaffected)"
            ),
        }
    }
}
