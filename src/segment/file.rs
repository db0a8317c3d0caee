//! One open segment on disk: a WAV file whose length is the truth (repair trusts it),
//! with a header rewritten now and then and on close.
//!
//! Audio goes out with positioned writes at the end of the data (`pwrite`), so the
//! header rewrites and the appends never share a file position, and a write that failed
//! half way is simply overwritten by the next one.
//!
//! Page policy (flash wear): with [`SegmentFile::hold_partial_page`] on, only whole pages
//! are appended and the partial last page stays in memory until it fills. Each page then
//! reaches the disk once, instead of the last page being rewritten at every `fdatasync`.
//! The held bytes are at most a page: the writer syncs that much earlier (see
//! [`page_duration`]) so the power-cut bound holds, and a kill -9 loses them like the
//! ring's unwritten frames.

use crate::core::format::StreamSpec;
use crate::segment::wav::{self, RIFF_SIZE_OFFSET, SegmentIdentity};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The page the kernel writes back as a unit (and a flash page's usual multiple).
pub const PAGE: u64 = 4096;

/// How much audio a held partial page can be: the sync comes this much earlier.
pub fn page_duration(spec: &StreamSpec) -> Duration {
    let byte_rate = spec.bytes_per_frame() as f64 * f64::from(spec.rate.max(1));
    Duration::from_secs_f64(PAGE as f64 / byte_rate)
}

/// The page policy for a stream synced every `sync_interval`: `Some(every)` to hold
/// partial pages and sync every `every` (a page's worth of audio earlier, so what a power
/// cut loses stays within the interval); `None` to write through, for a stream so thin
/// that a page is more than a quarter of the interval.
pub fn page_hold_sync(spec: &StreamSpec, sync_interval: Duration) -> Option<Duration> {
    let page = page_duration(spec);
    (page * 4 <= sync_interval).then(|| sync_interval - page)
}

/// An open segment. There is no `Drop` magic: call [`SegmentFile::close`] to finalise it;
/// a segment dropped without it is what a crash leaves, and repair handles it.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    path: PathBuf,
    spec: StreamSpec,
    /// Where the audio starts (after the header and the identity chunk, if any).
    data_offset: u64,
    /// Whole frames taken, on disk or held in `tail`.
    frames: u64,
    /// Bytes taken but not written yet: the partial last page (less than a page).
    tail: Vec<u8>,
    /// Append whole pages only, holding the partial last one.
    hold: bool,
    bytes_since_sync: u64,
}

/// Where a write of `len` more bytes at file offset `start` stops: the last page boundary
/// when holding (nothing if that is not past `start`), the end otherwise.
fn write_end(start: u64, len: u64, hold: bool) -> u64 {
    let end = start + len;
    if !hold {
        return end;
    }
    let aligned = end - end % PAGE;
    aligned.max(start)
}

impl SegmentFile {
    /// Creates a new segment (never replacing a file), with a header saying 0 frames, and
    /// makes both the file and its name durable, so the caller may journal the path.
    pub fn create(path: &Path, spec: StreamSpec) -> io::Result<SegmentFile> {
        SegmentFile::create_identified(path, spec, None)
    }

    /// [`Self::create`], with the segment's identity in its header (self-describing: a
    /// lost journal can be rebuilt from such files).
    pub fn create_identified(
        path: &Path,
        spec: StreamSpec,
        identity: Option<&SegmentIdentity>,
    ) -> io::Result<SegmentFile> {
        let header = wav::identified_segment_header(&spec, 0, identity);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let durable = file
            .write_all_at(&header, 0)
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_parent_dir(path));
        if let Err(e) = durable {
            // Ours, empty and not journaled yet: don't leave it to block a retry.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(SegmentFile {
            file,
            path: path.to_path_buf(),
            spec,
            data_offset: header.len() as u64,
            frames: 0,
            tail: Vec::with_capacity(PAGE as usize),
            hold: false,
            bytes_since_sync: 0,
        })
    }

    /// Appends whole pages only from now on; the partial last page waits in memory until
    /// it fills, [`Self::write_held`] or [`Self::close`].
    pub fn hold_partial_page(&mut self, on: bool) {
        self.hold = on;
    }

    /// Takes whole frames. They are written at once, or, when holding partial pages, as
    /// far as the last page boundary. On error the file is cut back to its last whole
    /// frame on disk (what reached it is kept and counted; the held bytes are gone, so
    /// [`Self::frames`] may go back) and the error is returned: the caller decides
    /// whether to pause, rotate or give up.
    pub fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()> {
        let hold = self.hold;
        self.append_with(bytes, hold, |file, buf, offset| file.write_at(buf, offset))
    }

    /// Writes the held partial page (before a sync that must include it).
    pub fn write_held(&mut self) -> io::Result<()> {
        self.append_with(&[], false, |file, buf, offset| file.write_at(buf, offset))
    }

    /// [`Self::write_frames`] over any positioned writer, so tests can fail a write half way.
    fn append_with(
        &mut self,
        bytes: &[u8],
        hold: bool,
        mut write_at: impl FnMut(&File, &[u8], u64) -> io::Result<usize>,
    ) -> io::Result<()> {
        let bpf = self.spec.bytes_per_frame();
        debug_assert_eq!(bytes.len() % bpf, 0, "write_frames takes whole frames");
        let start = self.disk_end();
        let held = self.tail.len();
        let mut upto = write_end(start, (held + bytes.len()) as u64, hold);
        if upto == start && start == self.data_offset {
            // A segment's first audio never waits: once its start is journaled, a kill -9
            // finds audio in it, not just a header (less than a page: one page rewritten).
            upto = start + (held + bytes.len()) as u64;
        }
        // `start + held` never reaches a boundary while holding, so `upto` covers the tail.
        let from_new = (upto - start) as usize - held.min((upto - start) as usize);
        if upto > start {
            // The tail and the new bytes up to the next boundary go out as one page.
            let mut tail = std::mem::take(&mut self.tail);
            let fill = if tail.is_empty() {
                0
            } else {
                from_new.min((PAGE - (start + held as u64) % PAGE) as usize)
            };
            tail.extend_from_slice(&bytes[..fill]);
            let mut done = 0usize;
            for part in [&tail[..], &bytes[fill..from_new]] {
                let mut at = 0;
                while at < part.len() {
                    match write_at(&self.file, &part[at..], start + done as u64) {
                        Ok(0) => {
                            let err = io::Error::new(
                                io::ErrorKind::WriteZero,
                                "segment write made no progress",
                            );
                            return self.fail_write(start + done as u64, err);
                        }
                        Ok(n) => {
                            at += n;
                            done += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return self.fail_write(start + done as u64, e),
                    }
                }
            }
            self.tail = tail;
            self.tail.clear();
        }
        self.tail.extend_from_slice(&bytes[from_new..]);
        self.frames += (bytes.len() / bpf) as u64;
        self.bytes_since_sync += bytes.len() as u64;
        Ok(())
    }

    /// Keeps the whole frames on disk after a failed write (`disk_end` is where the file's
    /// bytes stop) and drops the partial frame and the held bytes.
    fn fail_write(&mut self, disk_end: u64, err: io::Error) -> io::Result<()> {
        let (frames, len) =
            after_short_write(self.data_offset, disk_end, self.spec.bytes_per_frame());
        self.tail.clear();
        self.frames = frames;
        // Shrinking needs no space, so this works on a full disk. If it fails anyway, the
        // next write (at `disk_end`) overwrites the fragment, and repair drops it after a crash.
        let _ = self.file.set_len(len);
        Err(err)
    }

    /// Rewrites the RIFF and data sizes in place for the whole frames on disk (durable
    /// after the next `sync_data`). Nothing trusts them before [`Self::close`]: repair
    /// goes by the file length, so the writer refreshes them only now and then.
    pub fn flush_header(&mut self) -> io::Result<()> {
        let bpf = self.spec.bytes_per_frame() as u64;
        let on_disk = (self.disk_end() - self.data_offset) / bpf * bpf;
        let (riff, data) = wav::segment_sizes(self.data_offset, on_disk);
        self.file
            .write_all_at(&riff.to_le_bytes(), RIFF_SIZE_OFFSET)?;
        self.file
            .write_all_at(&data.to_le_bytes(), self.data_offset - 4)
    }

    /// `fdatasync`: the audio and header written so far survive a power cut (not the
    /// held partial page, which is less than [`page_duration`] of audio).
    pub fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.bytes_since_sync = 0;
        Ok(())
    }

    /// Writes the held bytes, flushes the header, syncs everything, and returns the
    /// frames the segment holds.
    pub fn close(mut self) -> io::Result<u64> {
        self.write_held()?;
        self.flush_header()?;
        self.file.sync_all()?;
        Ok(self.frames)
    }

    /// Whole frames taken so far (on disk or held).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes taken but held in memory (the partial last page).
    pub fn held_bytes(&self) -> usize {
        self.tail.len()
    }

    /// Audio bytes taken since the last `sync_data` (for a bytes-based sync schedule).
    pub fn bytes_since_sync(&self) -> u64 {
        self.bytes_since_sync
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> StreamSpec {
        self.spec
    }

    /// Where the file's bytes end (the next write goes there).
    fn disk_end(&self) -> u64 {
        self.data_offset + self.frames * self.spec.bytes_per_frame() as u64 - self.tail.len() as u64
    }
}

/// After a failed write left the file's bytes ending at `disk_end`: the frames the segment
/// then holds, and the file length that keeps exactly those.
fn after_short_write(data_offset: u64, disk_end: u64, bpf: usize) -> (u64, u64) {
    let frames = disk_end.saturating_sub(data_offset) / bpf as u64;
    (frames, data_offset + frames * bpf as u64)
}

/// Makes a directory entry (a create or a rename) in `path`'s directory durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
