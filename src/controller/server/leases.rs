//! Lease expiry: `running` past its lease -> `failed` / `lease_expired`; `stop_requested`
//! for longer than a lease -> `cancelled` / `stop_request_lease_expired`. [`expire`] runs
//! at the start of every job read, claim and heartbeat transaction (so a caller never sees
//! a lease that has already run out) and on the runner thread every interval.

use super::jobs::{settle_recording, transition};
use super::model::JobStatus;
use super::store::{self, Store, StoreError};
use super::time;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::{Connection, params};
use std::time::Duration;

/// Ends every job whose lease ran out by `now`; returns how many.
pub(crate) fn expire(tx: &Connection, now: i64, lease_ms: i64) -> Result<usize, StoreError> {
    let due = store::jobs_where(
        tx,
        "WHERE (status = 'running' AND coalesce(lease_expires_at_ms, \
           coalesce(last_heartbeat_at_ms, started_at_ms, created_at_ms) + ?2) <= ?1) \
         OR (status = 'stop_requested' AND stop_requested_at_ms + ?2 <= ?1)",
        params![now, lease_ms],
    )?;
    let mut ended = 0;
    for job in due {
        let (to, reason) = match job.status {
            JobStatus::Running => (JobStatus::Failed, "lease_expired"),
            _ => (JobStatus::Cancelled, "stop_request_lease_expired"),
        };
        // Compare-and-set on the status just read: a concurrent end wins.
        if transition(tx, &job.id, &[job.status], to, Some(reason), now)? {
            settle_recording(tx, &job.recording_id, to, now)?;
            log::info!(
                "controller: job {} ({}) -> {to} ({reason})",
                job.id,
                job.node_id
            );
            ended += 1;
        }
    }
    Ok(ended)
}

/// The lease runner thread's body: expires leases every `interval` until `stop` is
/// disconnected (the server dropped its sender).
pub(crate) fn run(store: Store, lease: Duration, interval: Duration, stop: Receiver<()>) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        // First at start: leases that ran out while the server was down end now.
        if let Err(e) = store.tx(|tx| expire(tx, time::now_ms(), lease_ms)) {
            log::warn!("controller: lease runner: {e}");
        }
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
