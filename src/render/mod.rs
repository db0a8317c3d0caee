//! Rendering a job's segments into deliverables.

pub mod channel_map;
pub mod chunks;
pub mod codec;
pub mod convert;
pub mod delivery;
pub mod enhance;
pub mod job;
pub mod peaks;
pub mod pipeline;
pub mod resample;
pub mod stitch;
pub mod timeline_file;
pub mod view_file;

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so a crash leaves either the old file or the new one:
/// write a temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(path, bytes)?;
    crate::segment::file::sync_parent_dir(path)
}

/// [`write_atomically`] without its directory fsync: for several files renamed into one
/// directory, the caller fsyncs it once (`sync_parent_dir`) before acting on any of them.
/// Until then a power cut may leave the old file under the name, never a partial one.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
