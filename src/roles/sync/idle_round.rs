//! The idle agent's round: a claim, then the node heartbeat (and inventory), back to back
//! on the node lane, so an idle agent pays one wake-up of the loop to send them, one of
//! the lane to make them and one of the loop for their outcome, every 5 s. The node
//! config and the sync role's beat ride along on the same wake-up.
//!
//! A call strictly due leads a round; another at least half way to its due time rides
//! along. Schedules of equal periods (Rakkr's 5 s heartbeat and claim) then stay in phase,
//! and one pulled out of phase (a hotplug's early heartbeat) is back in phase one round
//! later; no call ever goes out more often than every half period.
//!
//! The claim goes first: its jobs are handed to the loop at once (an early outcome), so a
//! heartbeat answered slowly never delays a claimed job; a claim that found nothing waits
//! for the round's last outcome and costs the loop no wake-up of its own.

use std::time::{Duration, Instant};

use super::claim::{self, Claimed};
use super::lanes::Staged;
use super::node::{interfaces, node_heartbeat};
use super::{Done, Lane, Sync, SyncError};
use crate::capture::StopFlag;
use crate::controller::client::{CallError, Client};
use crate::controller::protocol::{Inventory, NodeHeartbeat};
use crate::segment::writer::now_ms;

/// A call's schedule: when it last went out and how often it goes; `None` when it cannot
/// go now (its lane is busy, or no capacity is free for a claim).
pub(super) type Slot = Option<(Option<Instant>, Duration)>;

/// At least `every` since `last` (or never sent).
pub(super) fn due(now: Instant, last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

/// At least half of `every` since `last`: early enough to ride along with a round.
pub(super) fn half_due(now: Instant, last: Option<Instant>, every: Duration) -> bool {
    due(now, last, every / 2)
}

/// Which calls go out this round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Round {
    pub heartbeat: bool,
    pub claim: bool,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        !self.heartbeat && !self.claim
    }
}

/// Pure: nothing unless one call is strictly due; then every call at least half due.
pub(super) fn round(now: Instant, heartbeat: Slot, claim: Slot) -> Round {
    let due = |s: Slot| s.is_some_and(|(last, every)| due(now, last, every));
    let half = |s: Slot| s.is_some_and(|(last, every)| half_due(now, last, every));
    if !due(heartbeat) && !due(claim) {
        return Round::default();
    }
    Round {
        heartbeat: half(heartbeat),
        claim: half(claim),
    }
}

/// The node heartbeat, with the inventory when it is to go.
pub(super) struct NodeCall {
    pub heartbeat: NodeHeartbeat,
    pub inventory: Option<Inventory>,
}

/// The round's task on the node lane.
pub(super) fn task(node: Option<NodeCall>, claim: bool) -> Staged<Done> {
    Box::new(move |c: &Client, early: &dyn Fn(Done)| {
        let claim = claim
            .then(|| claim::claim_with_maps(c))
            .and_then(|r| match r {
                Ok(claimed) if !claimed.is_empty() => {
                    early(Done::Claim(Ok(claimed)));
                    None
                }
                other => Some(other),
            });
        let (heartbeat, answered_ms) = match &node {
            Some(n) => (Some(c.node_heartbeat(&n.heartbeat)), now_ms()),
            None => (None, now_ms()),
        };
        let inventory = node.and_then(|n| n.inventory.map(|inv| c.inventory(&inv)));
        Done::Node {
            heartbeat,
            inventory,
            claim,
            answered_ms,
        }
    })
}

/// The claim alone, on its own lane: the node lane is held by a slow call.
pub(super) fn claim_alone() -> (Lane, super::lanes::Task<Done>) {
    (
        Lane::Claim,
        Box::new(|c: &Client| Done::Claim(claim::claim_with_maps(c))),
    )
}

/// What a round's claim came back with, when the loop still has to hear it.
pub(super) type ClaimOutcome = Option<Result<Claimed, CallError>>;

impl Sync {
    /// Sends the round that is due, if any: on the node lane, or the claim alone on its
    /// own lane while a slow call holds the node lane. The node config rides along.
    pub(super) fn idle_round(
        &mut self,
        shutdown: &StopFlag,
        now: Instant,
    ) -> Result<(), SyncError> {
        let node_free = !self.lanes.is_busy(&Lane::Node);
        let can_claim = !shutdown.is_stopped() && !self.claim_out && self.free_capacity()? > 0;
        let s = &self.settings;
        let r = round(
            now,
            node_free.then_some((self.last_node_heartbeat, s.node_heartbeat_every)),
            can_claim.then_some((self.last_claim, s.claim_every)),
        );
        let config = due(now, self.last_config, s.config_every)
            || (!r.is_empty() && half_due(now, self.last_config, s.config_every));
        if config
            && self.lanes.submit(
                Lane::Config,
                Box::new(|c: &Client| Done::Config(c.node_config())),
            )
        {
            self.last_config = Some(now);
        }
        if r.is_empty() {
            return Ok(());
        }
        let submitted = if node_free {
            let node = r.heartbeat.then(|| self.node_call());
            self.lanes.submit_staged(Lane::Node, task(node, r.claim))
        } else {
            let (lane, call) = claim_alone();
            self.lanes.submit(lane, call)
        };
        if submitted {
            if r.heartbeat {
                self.last_node_heartbeat = Some(now);
            }
            if r.claim {
                self.last_claim = Some(now);
                self.claim_out = true;
            }
        }
        Ok(())
    }

    /// The heartbeat, and the inventory when the controller does not have the current one.
    fn node_call(&mut self) -> NodeCall {
        if self.devices.cards_changed() {
            self.inventory_sent = false;
        }
        NodeCall {
            heartbeat: node_heartbeat(),
            inventory: (!self.inventory_sent).then(|| Inventory {
                interfaces: interfaces(),
            }),
        }
    }

    /// A claim's answer: its jobs go into the journal.
    pub(super) fn claimed(&mut self, claim: Result<Claimed, CallError>) -> Result<(), SyncError> {
        self.claim_out = false;
        match claim {
            Ok(claimed) => self.take_claimed_group(claimed),
            Err(e) => {
                self.trouble("claim", &e);
                Ok(())
            }
        }
    }

    pub(super) fn heartbeat_answered(&mut self, heartbeat: Result<(), CallError>, at_ms: i64) {
        let skew = self.lanes.clock_skew().map(|s| s.as_millis());
        self.node
            .after_heartbeat(&self.journal, heartbeat.is_ok(), skew, at_ms);
        if let Some(path) = &self.settings.metrics_textfile {
            self.node.publish_metrics(&self.journal, path);
        }
        if let Err(e) = heartbeat {
            self.trouble("node heartbeat", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_due_call_leads_and_half_due_ones_ride_along() {
        let t0 = Instant::now();
        let s = |secs: f64| Duration::from_secs_f64(secs);
        let five = s(5.0);
        let at = |ago: f64| Some((Some(t0 + s(100.0) - s(ago)), five));
        let now = t0 + s(100.0);
        let never = Some((None, five));
        // (heartbeat slot, claim slot, expected heartbeat, expected claim)
        let table: [(Slot, Slot, bool, bool); 9] = [
            (never, never, true, true),     // the first round: both
            (at(5.0), at(5.0), true, true), // in phase: both, every time
            (at(4.9), at(4.9), false, false),
            (at(5.0), at(2.5), true, true), // a claim half way rides along
            (at(5.0), at(2.4), true, false),
            (at(1.0), at(6.0), false, true), // a claim due alone leads
            (None, at(6.0), false, true),    // node lane busy: the claim alone
            (at(9.0), None, true, false),    // no capacity: the heartbeat alone
            (None, None, false, false),
        ];
        for (i, (hb, claim, want_hb, want_claim)) in table.into_iter().enumerate() {
            let got = round(now, hb, claim);
            assert_eq!(
                got,
                Round {
                    heartbeat: want_hb,
                    claim: want_claim
                },
                "row {i}"
            );
        }
    }

    #[test]
    fn a_schedule_pulled_out_of_phase_is_back_in_phase_one_round_later() {
        // A hotplug sends a heartbeat at 2 s; the claim went at 0 s. Both every 5 s.
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let (mut hb, mut claim) = (t0 + Duration::from_secs(2), t0);
        let mut sent = Vec::new();
        for ms in (0..20_000).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            let r = round(now, Some((Some(hb), every)), Some((Some(claim), every)));
            if r.heartbeat {
                hb = now;
            }
            if r.claim {
                claim = now;
            }
            if !r.is_empty() {
                sent.push((ms, r.heartbeat, r.claim));
            }
        }
        // 5 s: the claim leads, the heartbeat (3 s old) rides along; then together.
        assert_eq!(
            sent,
            vec![
                (5000, true, true),
                (10_000, true, true),
                (15_000, true, true)
            ]
        );
    }
}
