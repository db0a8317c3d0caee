//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`). Each role says
//! [`ready`] once it really runs and [`alive`] from its main loop; the process tells
//! systemd READY=1 when every role it runs is ready, and WATCHDOG=1 only while every role
//! has said alive recently, so one wedged role in the agent still gets the process
//! restarted. Without NOTIFY_SOCKET (not under systemd) nothing is sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How many roles this process runs (1, or 2 for the agent).
static EXPECTED: AtomicUsize = AtomicUsize::new(1);

#[derive(Default)]
struct Roles {
    ready: Vec<&'static str>,
    ready_sent: bool,
    alive: HashMap<&'static str, Instant>,
    last_ping: Option<Instant>,
}

static ROLES: Mutex<Option<Roles>> = Mutex::new(None);

/// The agent runs two roles: READY and WATCHDOG wait for both.
pub fn expect_roles(count: usize) {
    EXPECTED.store(count.max(1), Ordering::Relaxed);
}

fn with_roles<T>(f: impl FnOnce(&mut Roles) -> T) -> T {
    let mut guard = ROLES.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Roles::default))
}

/// The role is up: its journal is open and its loop is about to run.
pub fn ready(role: &'static str) {
    let expected = EXPECTED.load(Ordering::Relaxed);
    let send = with_roles(|r| {
        if !r.ready.contains(&role) {
            r.ready.push(role);
        }
        r.alive.insert(role, Instant::now());
        let all = r.ready.len() >= expected && !r.ready_sent;
        r.ready_sent |= all;
        all
    });
    if send {
        let status = format!("running: {}", with_roles(|r| r.ready.join(", ")));
        send_state(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }
}

/// Called from a role's main loop on every pass.
pub fn alive(role: &'static str) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let expected = EXPECTED.load(Ordering::Relaxed);
    let now = Instant::now();
    let ping = with_roles(|r| {
        r.alive.insert(role, now);
        let due = should_ping(r.last_ping, &r.alive, expected, now, timeout);
        if due {
            r.last_ping = Some(now);
        }
        due
    });
    if ping {
        send_state(&[NotifyState::Watchdog]);
    }
}

/// The longest a role's loop may go without saying [`alive`]: a quarter of the watchdog
/// timeout, so that a ping is never late; `None` without a watchdog.
pub fn quiet_at_most() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|t| (t / 4).max(Duration::from_millis(10)))
}

/// A role with nothing to do stays up (systemd keeps it, no restart loop) and says so.
pub fn status(text: &str) {
    send_state(&[NotifyState::Status(text)]);
}

fn send_state(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        log::warn!("systemd notify: {e}");
    }
}

/// Ping at most every quarter of the watchdog timeout (and at most once a second), and
/// only while every expected role has said alive within half of it.
fn should_ping(
    last_ping: Option<Instant>,
    alive: &HashMap<&'static str, Instant>,
    expected: usize,
    now: Instant,
    timeout: Duration,
) -> bool {
    let every = (timeout / 4).min(Duration::from_secs(1));
    if last_ping.is_some_and(|t| now.saturating_duration_since(t) < every) {
        return false;
    }
    alive.len() >= expected
        && alive
            .values()
            .all(|t| now.saturating_duration_since(*t) <= timeout / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_when_every_role_is_fresh() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let timeout = s(20);
        let alive = |beats: &[(&'static str, u64)]| {
            beats
                .iter()
                .map(|(r, at)| (*r, t0 + s(*at)))
                .collect::<HashMap<_, _>>()
        };
        // (last ping, beats, expected roles, now, ping?)
        type Case = (
            Option<u64>,
            &'static [(&'static str, u64)],
            usize,
            u64,
            bool,
        );
        let cases: [Case; 6] = [
            (None, &[("capture", 0)], 1, 0, true),
            (Some(0), &[("capture", 1)], 1, 0, false),
            (Some(0), &[("capture", 1)], 1, 1, true),
            (None, &[("capture", 0)], 2, 0, false),
            (None, &[("capture", 100), ("sync", 89)], 2, 100, false),
            (None, &[("capture", 100), ("sync", 90)], 2, 100, true),
        ];
        for (last, beats, expected, now, want) in cases {
            let got = should_ping(
                last.map(|l| t0 + s(l)),
                &alive(beats),
                expected,
                t0 + s(now),
                timeout,
            );
            assert_eq!(got, want, "{last:?} {beats:?} {expected} {now}");
        }
    }
}
