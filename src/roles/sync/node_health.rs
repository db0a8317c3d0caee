//! The sync role's eye on the box: after each node heartbeat it looks at the link, the
//! clock skew the client measured, the spool's free space and the CPU's pressure, turns
//! what crossed a mark into health events (`core::node_health`), queues them once through
//! the outbox, and leaves the node's current facts in `run/node.json` for `status`,
//! `doctor` and the metrics file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::controller::protocol::{HealthEvent, Severity};
use crate::core::disk_budget::{BudgetMarks, DiskBudget};
use crate::core::node_health::{Change, Condition, NodeHealth, NodeMarks, Observation};
use crate::journal::{Journal, NewOutboxItem};
use crate::render::timeline_file::format_ms as iso;
use crate::roles::metrics::{self, METRICS_EVERY};
use crate::segment::writer::now_ms;

/// What `run/node.json` holds: the sync role's view of the node, current state only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub at_ms: i64,
    pub started_at_ms: i64,
    /// The last reply of any kind from the controller.
    pub last_contact_ms: Option<i64>,
    /// The controller's clock minus ours, from its `Date` header.
    pub clock_skew_ms: Option<i64>,
    pub spool_free_bytes: Option<u64>,
    /// Per mille of the last minute tasks waited for a CPU.
    pub cpu_pressure_permille: Option<u32>,
    /// Open conditions (`clock_skew`, `disk_pressure`, ...) and when each began.
    pub open: Vec<(String, i64)>,
}

/// Where the node's facts are.
pub fn facts_path(state_dir: &Path) -> PathBuf {
    state_dir.join("run").join("node.json")
}

/// The node's facts as the sync role last wrote them, if it ever did.
pub fn read_facts(state_dir: &Path) -> Option<NodeFacts> {
    serde_json::from_slice(&std::fs::read(facts_path(state_dir)).ok()?).ok()
}

pub(super) struct NodeWatch {
    state_dir: PathBuf,
    health: NodeHealth,
    facts: NodeFacts,
    metrics_written: Option<std::time::Instant>,
    /// Capture backends found absent at a claim, and since when.
    backends_down: std::collections::BTreeMap<String, i64>,
}

impl NodeWatch {
    /// Starts watching, and queues `agent.started` for this run of the role.
    pub fn start(state_dir: &Path, disk: BudgetMarks, journal: &Journal, started_ms: i64) -> Self {
        let total = crate::segment::disk::disk_space(state_dir).map_or(0, |d| d.total_bytes);
        let marks = DiskBudget::resolve(total, disk).map_or(
            NodeMarks::for_spool(0, 0), // no budget: no disk pressure events
            |b| NodeMarks::for_spool(b.reclaim_below(), b.reserve_below()),
        );
        let mut started = HealthEvent::new("agent.started", Severity::Info);
        started.id = Some(format!("node:agent.started:{started_ms}"));
        started.opened_at = Some(iso(started_ms));
        let d = &mut started.details;
        d.insert(
            "agentVersion".into(),
            Value::from(env!("CARGO_PKG_VERSION")),
        );
        d.insert("pid".into(), Value::from(std::process::id()));
        d.insert(
            "bootId".into(),
            Value::from(crate::roles::capture::boot_id()),
        );
        enqueue(journal, &started);
        NodeWatch {
            state_dir: state_dir.to_path_buf(),
            health: NodeHealth::new(marks),
            facts: NodeFacts {
                started_at_ms: started_ms,
                ..NodeFacts::default()
            },
            metrics_written: None,
            backends_down: Default::default(),
        }
    }

    /// A job's capture backend (`pipewire`, `jack`) was absent at claim: one
    /// `agent.audio_backend.unavailable` per episode.
    pub fn backend_unavailable(&mut self, journal: &Journal, backend: &str, reason: &str) {
        if self.backends_down.contains_key(backend) {
            return;
        }
        let since = now_ms();
        self.backends_down.insert(backend.to_string(), since);
        enqueue(journal, &backend_event(backend, since, None, reason));
    }

    /// A job's capture backend answered at claim: the episode, if any, ends.
    pub fn backend_available(&mut self, journal: &Journal, backend: &str) {
        if let Some(since) = self.backends_down.remove(backend) {
            enqueue(journal, &backend_event(backend, since, Some(now_ms()), ""));
        }
    }

    /// Rewrites the metrics textfile when [`METRICS_EVERY`] has passed since the last.
    pub fn publish_metrics(&mut self, journal: &Journal, path: &Path) {
        if self
            .metrics_written
            .is_some_and(|t| t.elapsed() < METRICS_EVERY)
        {
            return;
        }
        self.metrics_written = Some(std::time::Instant::now());
        let written = journal
            .totals()
            .map_err(|e| e.to_string())
            .map(|totals| metrics::render(&totals, Some(&self.facts), now_ms()))
            .and_then(|text| metrics::write_textfile(path, &text).map_err(|e| e.to_string()));
        if let Err(e) = written {
            log::debug!("sync: metrics file {}: {e}", path.display());
        }
    }

    /// Folds in one node heartbeat's outcome, answered at `now` (wall ms), and what the
    /// box shows now.
    pub fn after_heartbeat(&mut self, journal: &Journal, ok: bool, skew_ms: Option<i64>, now: i64) {
        let obs = Observation {
            heartbeat_ok: Some(ok),
            skew_ms,
            spool_free_bytes: crate::segment::disk::free_bytes(&self.state_dir).ok(),
            cpu_pressure: cpu_pressure(),
        };
        for change in self.health.observe(&obs, now) {
            log_change(&change);
            enqueue(journal, &health_event(&change));
        }
        let f = &mut self.facts;
        f.at_ms = now;
        if ok {
            f.last_contact_ms = Some(now);
        }
        f.clock_skew_ms = skew_ms.or(f.clock_skew_ms);
        f.spool_free_bytes = obs.spool_free_bytes;
        f.cpu_pressure_permille = obs.cpu_pressure.map(|p| (p * 1000.0).round() as u32);
        f.open = (self.health.open_conditions())
            .map(|(c, since)| (c.name().to_string(), since))
            .collect();
        let path = facts_path(&self.state_dir);
        let written = serde_json::to_vec(&self.facts)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::journal::run_files::replace_volatile(&path, &b));
        if let Err(e) = written {
            log::debug!("sync: writing {}: {e}", path.display());
        }
    }
}

fn log_change(c: &Change) {
    let what = match c.condition {
        Condition::SyncFailed => "the controller has not answered the node heartbeat",
        Condition::ClockSkew => "the clock differs from the controller's",
        Condition::DiskPressure => "the spool is low on space; delivered recordings are reclaimed",
        Condition::CpuPressure => "the CPU is saturated; capture may overrun",
    };
    if c.opened {
        log::warn!("node: {what} ({} = {})", c.condition.name(), c.value);
    } else {
        log::info!(
            "node: {} cleared after {:.0} s",
            c.condition.name(),
            (c.at_ms - c.since_ms) as f64 / 1000.0
        );
    }
}

/// The event for one change; its id is the episode's, so re-queueing is a no-op.
fn health_event(c: &Change) -> HealthEvent {
    let (kind, severity) = if c.opened {
        (c.condition.opened_event(), Severity::Warning)
    } else {
        (c.condition.recovered_event(), Severity::Info)
    };
    let mut ev = HealthEvent::new(kind, severity);
    ev.id = Some(format!("node:{kind}:{}", c.since_ms));
    ev.opened_at = Some(iso(c.since_ms));
    let d = &mut ev.details;
    d.insert("firstObservedAt".into(), Value::from(iso(c.since_ms)));
    if !c.opened {
        d.insert("lastObservedAt".into(), Value::from(iso(c.at_ms)));
    }
    let (key, value) = match c.condition {
        Condition::SyncFailed => ("consecutiveFailures", Value::from(c.value as u64)),
        Condition::ClockSkew => (
            "skewSeconds",
            Value::from((c.value / 1000.0).round() as i64),
        ),
        Condition::DiskPressure => ("freeBytes", Value::from(c.value as u64)),
        Condition::CpuPressure => ("cpuPressure", Value::from(c.value)),
    };
    d.insert(key.into(), value);
    ev
}

/// Rakkr's `agent.audio_backend.unavailable` / `recovered` for one backend's episode.
fn backend_event(backend: &str, since: i64, recovered: Option<i64>, reason: &str) -> HealthEvent {
    let (kind, severity) = match recovered {
        None => ("agent.audio_backend.unavailable", Severity::Warning),
        Some(_) => ("agent.audio_backend.recovered", Severity::Info),
    };
    let mut ev = HealthEvent::new(kind, severity);
    ev.id = Some(format!("node:{kind}:{backend}:{since}"));
    ev.opened_at = Some(iso(since));
    let d = &mut ev.details;
    d.insert("backend".into(), Value::from(backend));
    d.insert("firstObservedAt".into(), Value::from(iso(since)));
    if let Some(at) = recovered {
        d.insert("lastObservedAt".into(), Value::from(iso(at)));
    } else {
        d.insert("reason".into(), Value::from(reason));
    }
    ev
}

fn enqueue(journal: &Journal, ev: &HealthEvent) {
    let id = ev.id.clone().unwrap_or_default();
    let body = serde_json::to_string(ev).unwrap_or_default();
    if let Err(e) = journal.enqueue(&NewOutboxItem::health_event(None, &id, body, now_ms())) {
        log::warn!("node: queueing health event {}: {e}", ev.kind);
    }
}

/// Share of the last minute tasks waited for a CPU: PSI's `some avg60` where the kernel
/// has it, else the load above one runnable task per core.
fn cpu_pressure() -> Option<f64> {
    if let Ok(psi) = std::fs::read_to_string("/proc/pressure/cpu") {
        return parse_psi_some_avg60(&psi);
    }
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Some((load / cores - 1.0).clamp(0.0, 1.0))
}

/// `some avg10=0.00 avg60=12.50 avg300=… total=…` → 0.125.
fn parse_psi_some_avg60(psi: &str) -> Option<f64> {
    let some = psi.lines().find(|l| l.starts_with("some "))?;
    let avg60 = some
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg60="))?;
    Some(avg60.parse::<f64>().ok()? / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_read_as_a_share() {
        let psi = "some avg10=1.00 avg60=12.50 avg300=3.00 total=123\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi_some_avg60(psi), Some(0.125));
        assert_eq!(parse_psi_some_avg60("garbage"), None);
        assert_eq!(parse_psi_some_avg60("some avg60=x"), None);
    }

    #[test]
    fn a_recovery_event_carries_its_episode() {
        let c = Change {
            condition: Condition::ClockSkew,
            opened: false,
            since_ms: 1_764_547_200_000,
            at_ms: 1_764_547_260_000,
            value: -1500.0,
        };
        let ev = health_event(&c);
        assert_eq!(ev.kind, "agent.system.clock_skew_recovered");
        assert_eq!(ev.details["firstObservedAt"], "2025-12-01T00:00:00.000Z");
        assert_eq!(ev.details["lastObservedAt"], "2025-12-01T00:01:00.000Z");
        assert_eq!(ev.details["skewSeconds"], -2);
        assert!(ev.check().is_ok());
    }
}
