//! The programs built from the parts, and the steps they share.
//!
//! - Programs: [`record`] (one local job at a console), [`capture`] (runs the journal's
//!   jobs, resumes them after a crash), [`sync`] (the controller side, on the job
//!   machine), [`agent`] (capture and sync together), [`repair`] and [`rebuild`] (after
//!   a crash, or from the files alone), [`status`] (one screen about the box), [`demo`]
//!   (with [`reference_controller`], which runs `edgerec-controller` as a process).
//! - Shared steps: [`runner`] (one job's capture to its end, across device losses),
//!   [`device_loss`] (a lost device's health events), [`finalize`] (segments to one
//!   recording and its timeline), [`owner`] (the lock that says a job is live),
//!   `live_chunks` (a chunked job's chunks, rendered while it captures).

pub mod agent;
pub mod capture;
pub mod demo;
pub mod device_loss;
pub mod doctor;
pub mod enroll;
pub mod finalize;
pub mod group_end;
mod live_chunks;
pub mod metrics;
pub mod notify;
pub mod owner;
pub mod rebuild;
pub mod record;
pub mod reference_controller;
pub mod render;
pub mod repair;
pub mod runner;
pub mod status;
pub mod sync;
