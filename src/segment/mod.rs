//! Crash-safe WAV segments: the file format, the writer thread, repair after a crash.

pub mod disk;
pub mod file;
pub mod meter_file;
pub mod repair;
pub mod spool;
pub mod wav;
pub mod writer;
