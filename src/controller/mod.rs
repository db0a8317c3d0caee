//! The controller side: the Rakkr recorder-node protocol (`../shared/PROTOCOL.md`), the
//! agent's HTTP client for it, and the reference controller that serves it.

pub mod client;
pub mod protocol;
pub mod server;
