//! The box's own conditions, as the controller's health view names them: the link to the
//! controller, the clock, the spool's free space, the CPU. Each condition opens once when
//! it crosses its mark and clears once when it is back past a second mark (hysteresis),
//! so a value sitting at a mark is one event pair, not a stream. Pure: the caller passes
//! the observations and the clock.

/// A node-level condition, with Rakkr's event names for its opening and its recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The node heartbeat keeps failing: the controller cannot see this box.
    SyncFailed,
    /// The box's clock differs from the controller's.
    ClockSkew,
    /// The spool is filling: delivered recordings are being reclaimed, audio may pause.
    DiskPressure,
    /// The CPU is saturated: capture may overrun.
    CpuPressure,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::SyncFailed,
        Condition::ClockSkew,
        Condition::DiskPressure,
        Condition::CpuPressure,
    ];

    pub fn opened_event(self) -> &'static str {
        match self {
            Condition::SyncFailed => "agent.node_heartbeat.sync_failed",
            Condition::ClockSkew => "agent.system.clock_skew",
            Condition::DiskPressure => "agent.system.disk_pressure",
            Condition::CpuPressure => "agent.system.cpu_pressure",
        }
    }

    pub fn recovered_event(self) -> &'static str {
        match self {
            Condition::SyncFailed => "agent.node_heartbeat.sync_recovered",
            Condition::ClockSkew => "agent.system.clock_skew_recovered",
            Condition::DiskPressure => "agent.system.disk_recovered",
            Condition::CpuPressure => "agent.system.cpu_recovered",
        }
    }

    /// A short name for logs, `status` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Condition::SyncFailed => "sync_failed",
            Condition::ClockSkew => "clock_skew",
            Condition::DiskPressure => "disk_pressure",
            Condition::CpuPressure => "cpu_pressure",
        }
    }
}

/// Where each condition opens and clears.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeMarks {
    /// Consecutive failed node heartbeats that open `SyncFailed` (one success clears it).
    pub sync_failures: u32,
    /// `ClockSkew` opens above this many milliseconds either way...
    pub skew_open_ms: i64,
    /// ...and clears at or below this many (Rakkr's agent: 5 s and 2 s).
    pub skew_clear_ms: i64,
    /// `DiskPressure` opens below this many free bytes (the reclaim mark)...
    pub disk_open_below: u64,
    /// ...and clears at or above this many.
    pub disk_clear_above: u64,
    /// `CpuPressure` opens above this share of time with runnable tasks waiting (PSI
    /// `some avg60`, or load per core)...
    pub cpu_open_above: f64,
    /// ...and clears at or below this share.
    pub cpu_clear_below: f64,
}

impl NodeMarks {
    /// Marks for a spool whose reclaim mark is `reclaim_below` and reserve `reserve_below`:
    /// pressure from the reclaim mark, clear once a reserve's worth above it.
    pub fn for_spool(reclaim_below: u64, reserve_below: u64) -> NodeMarks {
        NodeMarks {
            sync_failures: 3,
            skew_open_ms: 5_000,
            skew_clear_ms: 2_000,
            disk_open_below: reclaim_below,
            disk_clear_above: reclaim_below.saturating_add(reserve_below),
            cpu_open_above: 0.5,
            cpu_clear_below: 0.2,
        }
    }
}

/// What one look at the box found; `None` is "not known this time" and changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    /// The node heartbeat's outcome.
    pub heartbeat_ok: Option<bool>,
    /// The controller's clock minus ours.
    pub skew_ms: Option<i64>,
    pub spool_free_bytes: Option<u64>,
    /// Share of time (0–1) tasks waited for a CPU.
    pub cpu_pressure: Option<f64>,
}

/// A condition opening or clearing.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub condition: Condition,
    pub opened: bool,
    /// When the condition began: the episode's identity and `firstObservedAt`.
    pub since_ms: i64,
    /// When this change was observed.
    pub at_ms: i64,
    /// The value that crossed the mark (failures, ms, bytes, share).
    pub value: f64,
}

/// The conditions' state between looks.
#[derive(Clone, Debug)]
pub struct NodeHealth {
    marks: NodeMarks,
    failures: u32,
    /// Per condition, when its open episode began.
    open: [Option<i64>; 4],
}

impl NodeHealth {
    pub fn new(marks: NodeMarks) -> NodeHealth {
        NodeHealth {
            marks,
            failures: 0,
            open: [None; 4],
        }
    }

    /// The conditions open now, with when each began.
    pub fn open_conditions(&self) -> impl Iterator<Item = (Condition, i64)> + '_ {
        Condition::ALL
            .into_iter()
            .filter_map(|c| self.open[c as usize].map(|since| (c, since)))
    }

    /// Folds one observation in; returns the conditions that opened or cleared.
    pub fn observe(&mut self, obs: &Observation, now_ms: i64) -> Vec<Change> {
        let m = self.marks;
        let mut changes = Vec::new();
        if let Some(ok) = obs.heartbeat_ok {
            self.failures = if ok {
                0
            } else {
                self.failures.saturating_add(1)
            };
            let verdict = if ok {
                Some(false)
            } else {
                (self.failures >= m.sync_failures).then_some(true)
            };
            changes.extend(self.settle(
                Condition::SyncFailed,
                verdict,
                self.failures as f64,
                now_ms,
            ));
        }
        if let Some(skew) = obs.skew_ms {
            let verdict = hysteresis(
                skew.unsigned_abs() as f64,
                m.skew_open_ms as f64,
                m.skew_clear_ms as f64,
            );
            changes.extend(self.settle(Condition::ClockSkew, verdict, skew as f64, now_ms));
        }
        if let Some(free) = obs.spool_free_bytes {
            // Less free is worse: mirror the marks so one rule serves.
            let verdict = hysteresis(
                -(free as f64),
                -(m.disk_open_below as f64),
                -(m.disk_clear_above as f64),
            );
            changes.extend(self.settle(Condition::DiskPressure, verdict, free as f64, now_ms));
        }
        if let Some(cpu) = obs.cpu_pressure {
            let verdict = hysteresis(cpu, m.cpu_open_above, m.cpu_clear_below);
            changes.extend(self.settle(Condition::CpuPressure, verdict, cpu, now_ms));
        }
        changes
    }

    /// Applies a verdict (`Some(true)` open, `Some(false)` clear, `None` hold) to one
    /// condition; a change only when its state flips.
    fn settle(
        &mut self,
        c: Condition,
        verdict: Option<bool>,
        value: f64,
        now_ms: i64,
    ) -> Option<Change> {
        let slot = &mut self.open[c as usize];
        match (verdict, *slot) {
            (Some(true), None) => {
                *slot = Some(now_ms);
                Some(Change {
                    condition: c,
                    opened: true,
                    since_ms: now_ms,
                    at_ms: now_ms,
                    value,
                })
            }
            (Some(false), Some(since)) => {
                *slot = None;
                Some(Change {
                    condition: c,
                    opened: false,
                    since_ms: since,
                    at_ms: now_ms,
                    value,
                })
            }
            _ => None,
        }
    }
}

/// `Some(true)` above `open`, `Some(false)` at or below `clear`, `None` in between.
fn hysteresis(value: f64, open: f64, clear: f64) -> Option<bool> {
    if value > open {
        Some(true)
    } else if value <= clear {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "node_health_tests.rs"]
mod tests;
