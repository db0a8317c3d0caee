//! The programs built from the parts: `record` (one local job), `repair` (after a crash),
//! and `finalize`, which both end with.

pub mod agent;
pub mod capture;
pub mod demo;
pub mod enroll;
pub mod finalize;
pub mod notify;
pub mod owner;
pub mod record;
pub mod reference_controller;
pub mod repair;
pub mod runner;
pub mod status;
pub mod sync;
