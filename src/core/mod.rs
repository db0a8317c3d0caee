//! Pure logic: no clocks, no I/O. Time and shutdown are passed in, so tests are tables.

pub mod backoff;
pub mod disk_budget;
pub use edgerec_protocol::format;
pub mod job;
pub mod job_machine;
pub mod listen;
pub mod meter;
pub mod node_health;
pub mod retention;
pub mod timeline;
