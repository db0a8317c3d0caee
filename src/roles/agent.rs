//! `edgerec agent`: the capture role and the sync role as two threads of one process (the
//! simple install). They still share only the journal: either could be a separate
//! systemd unit instead (`edgerec capture`, `edgerec sync`) with no change in behaviour.

use std::time::{Duration, Instant};

use crate::capture::StopFlag;
use crate::roles::capture::{self, CaptureRoleSettings};
use crate::roles::sync::{self, SyncSettings};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("capture role: {0}")]
    Capture(#[from] capture::CaptureRoleError),
    #[error("sync role: {0}")]
    Sync(#[from] sync::SyncError),
    #[error("a role thread could not start: {0}")]
    Spawn(std::io::Error),
}

/// Runs both roles until `shutdown`; each gets the shutdown deadline to finish.
pub fn run(
    capture: CaptureRoleSettings,
    sync: SyncSettings,
    shutdown: &StopFlag,
) -> Result<(), AgentError> {
    crate::roles::notify::expect_roles(2);
    let deadline = capture.shutdown_deadline;
    let capture_stop = shutdown.clone();
    let capture_thread = std::thread::Builder::new()
        .name("edgerec-capture-role".into())
        .spawn(move || capture::run(&capture, &capture_stop))
        .map_err(AgentError::Spawn)?;
    let sync_stop = shutdown.clone();
    let sync_thread = std::thread::Builder::new()
        .name("edgerec-sync-role".into())
        .spawn(move || sync::run(sync, &sync_stop))
        .map_err(AgentError::Spawn)?;
    while !shutdown.is_stopped() && !capture_thread.is_finished() && !sync_thread.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // One role ending on its own (an error) ends the agent: a supervisor restarts it.
    shutdown.stop();
    let until = Instant::now() + deadline;
    while !(capture_thread.is_finished() && sync_thread.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !sync_thread.is_finished() {
        log::error!(
            "sync role still in a controller call at the deadline; leaving it (the call has its own timeout)"
        );
    } else if let Ok(Err(e)) = sync_thread.join() {
        return Err(e.into());
    }
    if capture_thread.is_finished()
        && let Ok(Err(e)) = capture_thread.join()
    {
        return Err(e.into());
    }
    Ok(())
}
