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
//! journal                          SQLite (WAL): jobs, segments, timeline events,
//!        |                         outbox, machine states, role beats
//!        v
//! render::stitch                   segments + gaps -> one WAV + timeline.json
//!
//! roles::capture  <-- journal -->  roles::sync  <-- HTTP -->  controller (Rakkr API)
//! ```
//!
//! The workspace around this crate: `protocol/` (`edgerec-protocol`, the wire types both
//! sides use, re-exported as [`controller::protocol`]), `sqlite/` (`edgerec-sqlite`, the
//! one SQLite opener), and `controller/` (`edgerec-controller`, the reference controller:
//! its own program, never linked into this one).
//!
//! - [`core`]: pure logic (job machine, timeline, stitch plan, backoff, disk budget; the
//!   sample formats come from the protocol crate); no clock, no I/O, no wire format.
//! - [`capture`]: backends behind one [`capture::StartFn`] table, the ring, device listing.
//! - [`segment`]: crash-safe WAV segment files, the writer thread, repair after a crash.
//! - [`render`]: stitching segments into one recording.
//! - [`journal`]: the SQLite journal, its schema and migrations, typed queries, the outbox.
//! - [`controller`]: the recorder-node protocol (re-exported) and the agent's client.
//! - [`roles`]: the programs built from the parts: `record`, `capture` (runs journal jobs,
//!   resumes after crashes), `sync` (the controller side, on the job machine), `agent`
//!   (both), `demo` (with `reference_controller`, which runs `edgerec-controller` as a
//!   process), `status`, `repair`.
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
