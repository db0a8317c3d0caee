//! Lease expiry: `running` past its lease -> `failed` / `lease_expired`; `stop_requested`
//! for longer than a lease -> `cancelled` / `stop_request_lease_expired`. [`expire`] runs
//! at the start of every job read, claim and heartbeat transaction (so a caller never sees
//! a lease that has already run out) and on the runner task every interval.

use crate::jobs::{settle_recording, transition};
use crate::model::JobStatus;
use crate::pool::Stores;
use crate::store::{self, StoreError};
use crate::time;
use rusqlite::{Connection, params};
use std::sync::Arc;
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

/// The lease runner: expires leases every `interval`, first at start (leases that ran out
/// while the server was down end now). Runs until the server's runtime shuts down.
pub(crate) async fn run(stores: Arc<Stores>, lease: Duration, interval: Duration) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        match stores
            .run(move |s| s.tx(|tx| expire(tx, time::now_ms(), lease_ms)))
            .await
        {
            Ok(Err(e)) => log::warn!("controller: lease runner: {e}"),
            Err(_) => log::warn!("controller: lease runner: a pass failed"),
            Ok(Ok(_)) => {}
        }
        tokio::time::sleep(interval).await;
    }
}
