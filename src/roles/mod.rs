//! The programs built from the parts: `record` (one local job), `repair` (after a crash),
//! and `finalize`, which both end with.

pub mod agent;
pub mod capture;
pub mod demo;
pub mod device_loss;
pub mod finalize;
pub mod owner;
pub mod rebuild;
pub mod record;
pub mod reference_controller;
pub mod render;
pub mod repair;
pub mod runner;
pub mod status;
pub mod sync;
