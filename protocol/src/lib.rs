//! The agent's side of the Rakkr recorder-node protocol (`PROTOCOL.md`): one serde type
//! per body the agent sends or reads, camelCase on the wire.
//!
//! Two rules shape this file:
//! - Replies are read leniently: unknown fields are ignored everywhere (no
//!   `deny_unknown_fields`), missing optional fields get their defaults, and a job is read
//!   field by field so that a job with a missing or absurd field can still be identified
//!   (by its id) and reported failed instead of crashing the agent.
//! - Requests are written strictly: `None`s are skipped, because some server bodies are
//!   strict (an unknown or `null` key in a health event is a 400).

//!
//! The map:
//! - `envelope`: the `data` envelope, error bodies, audio backend names;
//! - `node`: node heartbeat, inventory, config, meter frames, health events;
//! - `job`: the job, read field by field (never fails), its status and command;
//! - `validate`: [`Job::validate`] -> [`ValidJob`] or [`JobRejection`]; the limits;
//! - `replies`: the cache-file reply and channel-map assignments;
//! - [`format`]: sample formats and stream specs (the names a job's command uses);
//! - `lenient`: the serde helpers behind the lenient reading.

pub mod format;

mod bootstrap;
mod envelope;
mod job;
mod lenient;
mod node;
mod replies;
mod validate;

#[cfg(test)]
mod tests;

pub use bootstrap::*;
pub use envelope::*;
pub use job::*;
pub use node::*;
pub use replies::*;
pub use validate::*;
