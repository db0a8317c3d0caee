//! SIGINT/SIGTERM: a flag the roles watch, and a watchdog that keeps the stop bounded.

use std::time::Duration;

use edgerec::capture::StopFlag;

use super::exit;

/// How long a role may take to stop after SIGTERM before the watchdog ends the process:
/// the roles give their threads 4 s, the watchdog ends the process by 4.5 s, so SIGTERM
/// finishes inside the 5 s every unit file and test expects, in every state.
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

/// Installs SIGINT/SIGTERM handlers that set the returned flag; a second signal exits.
/// A signal thread (signal-hook's self-pipe, parked in `read`) runs the flag's wake-ups;
/// a watchdog thread parks until the flag is set, then ends the process if the roles
/// have not stopped by the deadline (after logging that they were stuck): SIGTERM
/// finishes on time in every state. Neither thread wakes before a signal.
pub(crate) fn shutdown_flag() -> StopFlag {
    let shutdown = StopFlag::new();
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    for signal in signals {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.as_atomic());
        let _ = signal_hook::flag::register(signal, shutdown.as_atomic());
    }
    match signal_hook::iterator::Signals::new(signals) {
        Ok(mut pending) => {
            let flag = shutdown.clone();
            let _ = std::thread::Builder::new()
                .name("edgerec-signals".into())
                .spawn(move || {
                    if pending.forever().next().is_some() {
                        flag.stop();
                    }
                });
        }
        Err(e) => {
            log::warn!("signal thread unavailable ({e}): stops are seen at the next deadline")
        }
    }
    let watched = shutdown.clone();
    let _ = std::thread::Builder::new().name("edgerec-watchdog".into()).spawn(move || {
        while !watched.wait_timeout(Duration::from_secs(3600)) {}
        std::thread::sleep(SHUTDOWN_DEADLINE);
        log::error!("shutdown: still running {SHUTDOWN_DEADLINE:?} after the signal; exiting (open segments are repaired at the next start)");
        std::process::exit(exit::FAILURE as i32);
    });
    shutdown
}
