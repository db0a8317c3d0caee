//! Applying the controller's cache policies to the local library: the node config's
//! `recorderCachePolicies`, and a job's own `recorderCacheRetention` (its policy, and the
//! rules when the node lists no policy of that id). Only a controller job that reached
//! `delivered` with every chunk acknowledged (the controller's checksum was ours) is ever
//! offered; the decision is `core::retention`'s. Each pruning is journaled before its files
//! go, and shown by `edgerec status`.

use std::time::{Duration, Instant};

use serde::Deserialize as _;

use super::{Sync, SyncError};
use crate::controller::protocol::{CachePolicy, JobCommand};
use crate::core::job::JobState;
use crate::core::retention::{DiskUsage, Kept, prune_plan};
use crate::journal::{JobRow, JobSource, PrunedRow};
use crate::segment::disk;
use crate::segment::writer::now_ms;

/// How often the library is looked at when nothing was delivered meanwhile.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Retention {
    /// The node config's policies, as last fetched.
    pub policies: Vec<CachePolicy>,
    last: Option<Instant>,
    /// A delivery just happened: look now (`deleteAfterUpload`).
    pub soon: bool,
}

/// The job's own retention from its journaled command.
fn job_policy(job: &JobRow) -> Option<CachePolicy> {
    let v: serde_json::Value = serde_json::from_str(&job.command_json).ok()?;
    let cmd = JobCommand::deserialize(v.get("command")?).ok()?;
    cmd.recorder_cache_retention
        .filter(|p| !p.policy_id.is_empty())
}

impl Sync {
    pub(super) fn sweep_retention(&mut self) -> Result<(), SyncError> {
        let due = self
            .retention
            .last
            .is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
        if !(self.retention.soon || due) {
            return Ok(());
        }
        self.retention.soon = false;
        self.retention.last = Some(Instant::now());
        let mut policies = self.retention.policies.clone();
        let mut kept = Vec::new();
        let mut dirs = std::collections::HashMap::new();
        for job in self.journal.jobs()? {
            if self.journal.pruned(&job.id)?.is_some() {
                // Journaled, then a crash before the files went: finish it.
                if job.dir.exists() {
                    self.delete_dir(&job.id, &job.dir, "");
                }
                continue;
            }
            let Some(policy) = self.confirmed_with_policy(&job)? else {
                continue;
            };
            let Ok(bytes) = disk::dir_bytes(&job.dir) else {
                continue; // already gone
            };
            if !policies.iter().any(|p| p.policy_id == policy.policy_id) {
                policies.push(policy.clone());
            }
            kept.push(Kept {
                job_id: job.id.clone(),
                policy_id: policy.policy_id,
                delivered_at_ms: job.ended_at_ms.unwrap_or(job.updated_at_ms),
                bytes,
            });
            dirs.insert(job.id.clone(), job.dir.clone());
        }
        if kept.is_empty() {
            return Ok(());
        }
        let usage = disk::disk_space(&self.settings.state_dir)
            .ok()
            .map(|d| DiskUsage {
                total_bytes: d.total_bytes,
                free_bytes: d.free_bytes,
            });
        for (job_id, why) in prune_plan(&kept, &policies, usage, now_ms()) {
            let k = kept.iter().find(|k| k.job_id == job_id);
            let (Some(k), Some(dir)) = (k, dirs.get(&job_id)) else {
                continue;
            };
            self.prune(k, why, dir)?;
        }
        Ok(())
    }

    /// The job's policy, if it is a delivered controller job whose every upload the
    /// controller acknowledged with our checksum.
    fn confirmed_with_policy(&self, job: &JobRow) -> Result<Option<CachePolicy>, SyncError> {
        if job.source != JobSource::Controller || job.state != JobState::Delivered {
            return Ok(None);
        }
        let Some(policy) = job_policy(job) else {
            return Ok(None);
        };
        let uploads = self.journal.uploads(&job.id)?;
        let confirmed =
            !uploads.is_empty() && uploads.iter().all(|u| u.acknowledged_at_ms.is_some());
        if !confirmed {
            return Ok(None);
        }
        Ok(Some(policy))
    }

    fn prune(&mut self, k: &Kept, why: &str, dir: &std::path::Path) -> Result<(), SyncError> {
        self.journal.record_pruned(&PrunedRow {
            job_id: k.job_id.clone(),
            policy_id: k.policy_id.clone(),
            reason: why.to_string(),
            bytes: k.bytes,
            at_ms: now_ms(),
        })?;
        let note = format!(
            "{} bytes (policy {}, {why}; delivered and confirmed)",
            k.bytes,
            crate::logging::untrusted(&k.policy_id)
        );
        self.delete_dir(&k.job_id, dir, &note);
        Ok(())
    }

    /// Deletes a job directory, only inside the state directory (a corrupt row must
    /// never delete anything else); failures are logged, the next sweep tries again.
    fn delete_dir(&self, job_id: &str, dir: &std::path::Path, note: &str) {
        let resolved = self
            .settings
            .state_dir
            .canonicalize()
            .map_err(|e| e.to_string())
            .and_then(|spool| disk::job_dir_in_spool(dir, &spool));
        match resolved {
            Ok(Some(d)) => match disk::delete_job_dir(&d) {
                Ok(()) => log::info!("{job_id}: pruned {}: {note}", d.display()),
                Err(e) => log::warn!("{job_id}: pruning {}: {e}", d.display()),
            },
            Ok(None) => {}
            Err(why) => log::warn!("{job_id}: not pruning {}: {why}", dir.display()),
        }
    }
}
