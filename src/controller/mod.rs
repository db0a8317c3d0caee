//! The controller side: the Rakkr recorder-node protocol (`../shared/PROTOCOL.md`, the
//! `edgerec-protocol` crate, re-exported here) and the agent's HTTP client for it. The
//! reference controller is its own crate and program (`controller/`, `edgerec-controller`).

pub mod client;
pub use edgerec_protocol as protocol;
