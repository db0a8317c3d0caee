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
    // Each role says when it is done; one role ending on its own (an error) ends the
    // agent too (a supervisor restarts it), so it sets the shutdown flag as it leaves.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(2);
    let (capture_stop, capture_done) = (shutdown.clone(), done_tx.clone());
    let capture_thread = std::thread::Builder::new()
        .name("edgerec-capture-role".into())
        .spawn(move || {
            let r = capture::run(&capture, &capture_stop);
            capture_stop.stop();
            let _ = capture_done.send(());
            r
        })
        .map_err(AgentError::Spawn)?;
    let (sync_stop, sync_done) = (shutdown.clone(), done_tx);
    let sync_thread = std::thread::Builder::new()
        .name("edgerec-sync-role".into())
        .spawn(move || {
            let r = sync::run(sync, &sync_stop);
            sync_stop.stop();
            let _ = sync_done.send(());
            r
        })
        .map_err(AgentError::Spawn)?;
    // Parked until a signal or a role's end: no wake-ups meanwhile.
    while !shutdown.wait_timeout(Duration::from_secs(3600)) {}
    let until = Instant::now() + deadline;
    for _ in 0..2 {
        if done_rx.recv_deadline(until).is_err() {
            break;
        }
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
