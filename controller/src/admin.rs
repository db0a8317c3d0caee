//! Operator operations, straight on the database file. Safe while a server runs on the
//! same file (WAL; every operation is one transaction and waits for the write lock).

use crate::auth;
use crate::jobs::{self, JobError};
use crate::leases;
use crate::model::{JobStatus, JobSummary, NewJobSpec, RecordingSummary};
use crate::nodes;
use crate::store::{self, Doing, Store, StoreError};
use crate::time;
use rusqlite::params;
use std::path::Path;
use std::time::Duration;

/// Why an operator operation failed, by what the operator should do about it.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database cannot be opened, read or written: check the path, disk and lock.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Check the node id (`edgerec-controller node list`).
    #[error("no node {0:?}")]
    NoSuchNode(String),
    /// Check the job id (`edgerec-controller job list`).
    #[error("no job {0:?}")]
    NoSuchJob(String),
    /// Fix the input (job spec, node name, capacity).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The job is past the point where this operation applies; nothing was changed.
    #[error("job {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: JobStatus,
        what: &'static str,
    },
}

/// A node as the operator lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub id: String,
    pub name: String,
    pub status: String,
    pub max_concurrent_recordings: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<super::model::Timestamp>,
}

/// A handle on the controller database for operator commands.
pub struct Admin {
    store: Store,
    /// Used by the lease expiry that runs before reads, as the server does, so a listing
    /// never shows a lease that already ran out.
    lease_ms: i64,
}

impl Admin {
    /// Opens (creating and migrating if needed) the database; leases are taken to be the
    /// default 30 s for the expiry that runs before listings (see [`Admin::with_lease`]).
    pub fn open(db: &Path) -> Result<Admin, AdminError> {
        Ok(Admin {
            store: Store::open(db)?,
            lease_ms: 30_000,
        })
    }

    /// Uses `lease` (the server's `--lease`) for the expiry that runs before listings.
    pub fn with_lease(mut self, lease: Duration) -> Admin {
        self.lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Adds a node; returns its id and its token. The token is shown only now: the
    /// database keeps its SHA-256.
    pub fn add_node(&self, name: &str) -> Result<(String, String), AdminError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AdminError::Invalid("node name is empty".into()));
        }
        let id = format!("node_{}", uuid::Uuid::new_v4());
        let token = auth::new_token();
        let hash = auth::sha256_hex(token.as_bytes());
        self.store.tx(|tx| {
            tx.execute(
                "INSERT INTO nodes (id, name, token_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, hash, time::now_ms()],
            )
            .doing("adding a node")
        })?;
        Ok((id, token))
    }

    /// Replaces a node's token (the old one stops working at once); returns the new one.
    pub fn rotate_token(&self, node: &str) -> Result<String, AdminError> {
        let token = auth::new_token();
        let hash = auth::sha256_hex(token.as_bytes());
        let changed = self.store.tx(|tx| {
            tx.execute(
                "UPDATE nodes SET token_sha256 = ?2 WHERE id = ?1",
                params![node, hash],
            )
            .doing("rotating a token")
        })?;
        if changed == 0 {
            return Err(AdminError::NoSuchNode(node.into()));
        }
        Ok(token)
    }

    /// Issues a single-use bootstrap token for `node`, valid for `ttl` (at most 24 h, as
    /// Rakkr's server allows); `edgerec enroll` trades it for the node token.
    pub fn bootstrap_token(&self, node: &str, ttl: Duration) -> Result<String, AdminError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if !(1_000..=86_400_000).contains(&ttl_ms) {
            return Err(AdminError::Invalid(
                "bootstrap token ttl must be 1s..=24h".into(),
            ));
        }
        self.store.tx(|tx| {
            if !store::node_exists(tx, node)? {
                return Ok(Err(AdminError::NoSuchNode(node.into())));
            }
            crate::bootstrap::issue(tx, node, ttl_ms, time::now_ms()).map(Ok)
        })?
    }

    /// Sets the node's `recordingCapacity.maxConcurrentRecordings` (1..=128).
    pub fn set_max_concurrent_recordings(&self, node: &str, n: u32) -> Result<(), AdminError> {
        if !(1..=128).contains(&n) {
            return Err(AdminError::Invalid(format!(
                "maxConcurrentRecordings {n} is outside 1..=128"
            )));
        }
        let changed = self.store.tx(|tx| {
            tx.execute(
                "UPDATE nodes SET max_concurrent_recordings = ?2 WHERE id = ?1",
                params![node, n],
            )
            .doing("setting a node's capacity")
        })?;
        if changed == 0 {
            return Err(AdminError::NoSuchNode(node.into()));
        }
        Ok(())
    }

    /// Sets the node config's `monitorEnhancement` (`{engine, requested}`, as Rakkr sends
    /// it while a listener asks for enhanced live audio); `None` leaves it out.
    pub fn set_monitor_enhancement(
        &self,
        node: &str,
        monitor: Option<&serde_json::Value>,
    ) -> Result<(), AdminError> {
        let json = monitor.map(serde_json::Value::to_string);
        let changed = self.store.tx(|tx| {
            tx.execute(
                "UPDATE nodes SET monitor_enhancement_json = ?2 WHERE id = ?1",
                params![node, json],
            )
            .doing("setting a node's monitor enhancement")
        })?;
        if changed == 0 {
            return Err(AdminError::NoSuchNode(node.into()));
        }
        Ok(())
    }

    /// Sets the node config's `recorderCachePolicies` (a JSON list of
    /// `{policyId, deleteAfterUpload, maxAgeDays, maxBytes, minFreeDiskPercent}`).
    pub fn set_cache_policies(
        &self,
        node: &str,
        policies: &serde_json::Value,
    ) -> Result<(), AdminError> {
        let ok = policies
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["policyId"].is_string()));
        if !ok {
            return Err(AdminError::Invalid(
                "cache policies: a list of objects, each with a policyId".into(),
            ));
        }
        let json = policies.to_string();
        let changed = self.store.tx(|tx| {
            tx.execute(
                "UPDATE nodes SET cache_policies_json = ?2 WHERE id = ?1",
                params![node, json],
            )
            .doing("setting a node's cache policies")
        })?;
        if changed == 0 {
            return Err(AdminError::NoSuchNode(node.into()));
        }
        Ok(())
    }

    /// Assigns a channel-map template (`{id?, name?, channelMode, entries}`) to the node
    /// (`target_type` `node`, target the node's id) or to one of its interfaces
    /// (`interface`, target the interface id the jobs name); returns the assignment id.
    pub fn assign_channel_map(
        &self,
        node: &str,
        target_type: &str,
        target_id: &str,
        template: &serde_json::Value,
    ) -> Result<String, AdminError> {
        if !matches!(target_type, "interface" | "node") || target_id.is_empty() {
            return Err(AdminError::Invalid(format!(
                "target {target_type:?} {target_id:?}: expected interface|node and an id"
            )));
        }
        if !template["channelMode"].is_string() || !template["entries"].is_array() {
            return Err(AdminError::Invalid(
                "template needs channelMode (text) and entries (a list)".into(),
            ));
        }
        let id = format!("cma_{}", uuid::Uuid::new_v4().simple());
        let mut template = template.clone();
        if template["id"].is_null() {
            template["id"] = format!("cmt_{}", uuid::Uuid::new_v4().simple()).into();
        }
        let json = template.to_string();
        let node = node.to_string();
        let (target_type, target_id) = (target_type.to_string(), target_id.to_string());
        let assigned = self.store.tx(|tx| -> Result<bool, StoreError> {
            if !store::node_exists(tx, &node)? {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO channel_map_assignments (id, node_id, target_type, target_id, \
                 template_json, assigned_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, node, target_type, target_id, json, time::now_ms()],
            )
            .doing("assigning a channel map")?;
            Ok(true)
        })?;
        if !assigned {
            return Err(AdminError::NoSuchNode(node));
        }
        Ok(id)
    }

    pub fn list_nodes(&self) -> Result<Vec<NodeSummary>, AdminError> {
        Ok(self.store.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT id, name, status, max_concurrent_recordings, last_heartbeat_at_ms \
                     FROM nodes ORDER BY created_at_ms, id",
                )
                .doing("listing nodes")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(NodeSummary {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        status: r.get(2)?,
                        max_concurrent_recordings: r.get(3)?,
                        last_heartbeat_at: r.get::<_, Option<i64>>(4)?.map(super::model::Timestamp),
                    })
                })
                .doing("listing nodes")?;
            rows.collect::<Result<Vec<_>, _>>().doing("listing nodes")
        })?)
    }

    /// Queues a job (and its recording) for a node.
    pub fn add_job(&self, spec: &NewJobSpec) -> Result<JobSummary, AdminError> {
        let added = self.store.tx(|tx| jobs::add(tx, spec, time::now_ms()))?;
        added.map_err(|e| {
            if e.starts_with("no node") {
                AdminError::NoSuchNode(spec.node_id.clone())
            } else {
                AdminError::Invalid(e)
            }
        })
    }

    /// Asks the node to stop: queued or running -> `stop_requested`. The agent finalizes
    /// what it captured; if it does not answer within a lease, the job ends `cancelled`.
    pub fn stop_job(&self, id: &str) -> Result<JobSummary, AdminError> {
        let lease = self.lease_ms;
        self.store
            .tx(|tx| {
                let now = time::now_ms();
                leases::expire(tx, now, lease)?;
                jobs::stop(tx, id, now)
            })
            .map_err(|e| job_error(e, id, "only a queued or running job can be stopped"))
    }

    /// Ends a job `cancelled` (reason `operator_cancelled`) at once.
    pub fn cancel_job(&self, id: &str) -> Result<JobSummary, AdminError> {
        self.end_job(id, JobStatus::Cancelled, "operator_cancelled")
    }

    /// Ends a job `failed` with `reason` at once.
    pub fn fail_job(&self, id: &str, reason: &str) -> Result<JobSummary, AdminError> {
        self.end_job(id, JobStatus::Failed, reason)
    }

    fn end_job(&self, id: &str, to: JobStatus, reason: &str) -> Result<JobSummary, AdminError> {
        let lease = self.lease_ms;
        self.store
            .tx(|tx| {
                let now = time::now_ms();
                leases::expire(tx, now, lease)?;
                jobs::end_by_operator(tx, id, to, reason, now)
            })
            .map_err(|e| job_error(e, id, "the job already ended"))
    }

    /// Every job, oldest first.
    pub fn list_jobs(&self) -> Result<Vec<JobSummary>, AdminError> {
        let lease = self.lease_ms;
        Ok(self.store.tx(|tx| {
            leases::expire(tx, time::now_ms(), lease)?;
            store::jobs_where(tx, "ORDER BY created_at_ms, seq", [])
        })?)
    }

    pub fn job(&self, id: &str) -> Result<Option<JobSummary>, AdminError> {
        let lease = self.lease_ms;
        Ok(self.store.tx(|tx| {
            leases::expire(tx, time::now_ms(), lease)?;
            store::job(tx, id)
        })?)
    }

    /// A node's health events, oldest first, as the API would show them.
    pub fn health_events(&self, node: &str) -> Result<Vec<serde_json::Value>, AdminError> {
        Ok(self.store.read(|tx| nodes::health_events(tx, node))?)
    }

    /// A node's kept live-listen chunks, oldest first.
    pub fn listen_chunks(&self, node: &str) -> Result<Vec<crate::listen::StoredChunk>, AdminError> {
        Ok(self.store.read(|tx| crate::listen::chunks(tx, node))?)
    }

    /// The node as the heartbeat reply shows it (last heartbeat body, interfaces; status
    /// `offline` 120 s after the last heartbeat).
    pub fn node(&self, node: &str) -> Result<Option<serde_json::Value>, AdminError> {
        Ok(self
            .store
            .read(|tx| nodes::node_json(tx, node, time::now_ms()))?)
    }

    /// A recording: status, cache path (relative to the store directory), checksum,
    /// duration, size.
    pub fn recording(&self, id: &str) -> Result<Option<RecordingSummary>, AdminError> {
        Ok(self.store.read(|tx| store::recording(tx, id))?)
    }
}

fn job_error(e: JobError, id: &str, what: &'static str) -> AdminError {
    match e {
        JobError::NotStoppable(status) | JobError::AlreadyEnded(status) => AdminError::WrongState {
            id: id.to_string(),
            status,
            what,
        },
        JobError::Store(e) => AdminError::Store(e),
        _ => AdminError::NoSuchJob(id.to_string()),
    }
}
