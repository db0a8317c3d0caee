//! edgerec: a crash-safe audio capture agent for headless recording boxes.
//!
//! Data flows top to bottom:
//!
//! ```text
//! capture::{alsa,cpal,synth,file}  real-time thread: read a period -> FrameSink::push
//!        | capture::sink           lock-free SPSC ring (ringbuf) + gap/end events
//!        v
//! segment::writer                  writer thread: WAV segments, header per flush,
//!        |                         fdatasync on a schedule, rotation on exact frames
//!        v
//! journal                          SQLite (WAL): jobs, segments, timeline events
//!        |
//!        v
//! render::stitch                   segments + gaps -> one WAV + timeline.json
//! ```
//!
//! - [`core`]: pure logic (formats, job states, timeline, stitch plan); no clock, no I/O.
//! - [`capture`]: backends behind one [`capture::StartFn`] table, the ring, device listing.
//! - [`segment`]: crash-safe WAV segment files, the writer thread, repair after a crash.
//! - [`render`]: stitching segments into one recording.
//! - [`journal`]: the SQLite journal, its schema and migrations, typed queries.
//! - [`roles`]: the programs built from the parts (`record`, `repair`).
//! - [`config`]: TOML config, raw then validated.

pub mod capture;
pub mod config;
pub mod controller;
pub mod core;
pub mod journal;
pub mod logging;
pub mod render;
pub mod roles;
pub mod segment;
