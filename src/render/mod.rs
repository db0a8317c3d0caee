//! Rendering a job's segments into deliverables.

pub mod stitch;
