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
mod tests {
    use super::*;
    use crate::core::format::SampleFormat;
    use crate::segment::wav::SEGMENT_HEADER_LEN;

    const S16_STEREO: StreamSpec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 48_000,
        channels: 2,
    };

    const S24_STEREO: StreamSpec = StreamSpec {
        format: SampleFormat::S24Le3,
        rate: 48_000,
        channels: 2,
    };

    /// Packed 24-bit samples as hound reads them.
    fn as_i24(bytes: &[u8]) -> Vec<i32> {
        bytes
            .chunks_exact(3)
            .map(|c| i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8)
            .collect()
    }

    fn frames_bytes(spec: &StreamSpec, frames: usize, seed: u8) -> Vec<u8> {
        (0..frames * spec.bytes_per_frame())
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    }

    fn hound_samples(path: &Path) -> Vec<i16> {
        let mut r = hound::WavReader::open(path).unwrap();
        r.samples::<i16>().map(Result::unwrap).collect()
    }

    fn as_i16(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn create_twice_fails_with_already_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.wav");
        let _seg = SegmentFile::create(&path, S16_STEREO).unwrap();
        let err = SegmentFile::create(&path, S16_STEREO).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn new_segment_is_an_empty_valid_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let _seg = SegmentFile::create(&path, S16_STEREO).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_HEADER_LEN);
        assert!(hound_samples(&path).is_empty());
    }

    #[test]
    fn flushed_header_shows_exactly_the_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut seg = SegmentFile::create(&path, S16_STEREO).unwrap();
        let a = frames_bytes(&S16_STEREO, 100, 1);
        let b = frames_bytes(&S16_STEREO, 23, 9);
        seg.write_frames(&a).unwrap();
        seg.flush_header().unwrap();
        seg.write_frames(&b).unwrap();
        assert_eq!(seg.bytes_since_sync(), 123 * 4);
        seg.sync_data().unwrap();
        assert_eq!(seg.bytes_since_sync(), 0);
        // Valid up to the last flush: the 23 frames after it are not declared yet.
        assert_eq!(hound_samples(&path), as_i16(&a));
        seg.flush_header().unwrap();
        assert_eq!(hound_samples(&path), as_i16(&[a, b].concat()));
        assert_eq!(seg.close().unwrap(), 123);
    }

    #[test]
    fn never_flushed_segment_declares_nothing_but_holds_the_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut seg = SegmentFile::create(&path, S16_STEREO).unwrap();
        seg.write_frames(&frames_bytes(&S16_STEREO, 50, 3)).unwrap();
        drop(seg); // a crash: no close
        assert!(hound_samples(&path).is_empty());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN + 200
        );
    }

    #[test]
    fn short_write_arithmetic_keeps_whole_frames_only() {
        let h = SEGMENT_HEADER_LEN;
        let cases = [
            // (bytes of audio in the file after the failed write, bytes per frame, want)
            (0, 4, (0, h)),
            (40, 4, (10, h + 40)),
            (43, 4, (10, h + 40)),
            (44, 4, (11, h + 44)),
            (53, 4, (13, h + 52)),
            (59, 6, (9, h + 54)),
        ];
        for (audio, bpf, want) in cases {
            assert_eq!(after_short_write(h, h + audio, bpf), want, "{audio} {bpf}");
        }
    }

    #[test]
    fn failed_write_leaves_a_valid_file_up_to_the_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let spec = S24_STEREO;
        let mut seg = SegmentFile::create(&path, spec).unwrap();
        let first = frames_bytes(&spec, 10, 1);
        seg.write_frames(&first).unwrap();
        let second = frames_bytes(&spec, 10, 5);
        // The disk takes 2 whole frames and 5 bytes of the third in two short writes, then is full.
        let mut budget = 2 * 6 + 5;
        let err = seg
            .append_with(&second, false, |file, buf, off| {
                if budget == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                let n = buf.len().min(budget).min(7);
                budget -= n;
                file.write_at(&buf[..n], off)
            })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(seg.frames(), 12);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN + 12 * 6
        );
        // The next write continues right after the last whole frame.
        let third = frames_bytes(&spec, 1, 9);
        seg.write_frames(&third).unwrap();
        assert_eq!(seg.close().unwrap(), 13);
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.len(), 13 * 2);
        let got: Vec<i32> = r.samples::<i32>().map(Result::unwrap).collect();
        let want: Vec<u8> = [first, second[..12].to_vec(), third].concat();
        assert_eq!(got, as_i24(&want));
    }

    /// A new segment holding partial pages, in a temp dir kept alive by the caller.
    fn holding_segment(spec: StreamSpec) -> (tempfile::TempDir, PathBuf, SegmentFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut seg = SegmentFile::create(&path, spec).unwrap();
        seg.hold_partial_page(true);
        (dir, path, seg)
    }

    /// Writes through `append_with`, recording every byte range that reached the file.
    fn held_write(seg: &mut SegmentFile, bytes: &[u8], written: &mut Vec<(u64, u64)>) {
        seg.append_with(bytes, true, |file, buf, off| {
            written.push((off, off + buf.len() as u64));
            file.write_at(buf, off)
        })
        .unwrap();
    }

    #[test]
    fn holding_writes_each_page_once_and_close_writes_the_rest() {
        let spec = S24_STEREO;
        let (_dir, path, mut seg) = holding_segment(spec);
        let mut written = Vec::new();
        let mut all = Vec::new();
        for (i, frames) in [1usize, 7, 700, 3, 1365, 2000, 5].into_iter().enumerate() {
            let b = frames_bytes(&spec, frames, i as u8);
            held_write(&mut seg, &b, &mut written);
            all.extend_from_slice(&b);
            let len = std::fs::metadata(&path).unwrap().len();
            // The first frame went out whole; from then on only whole pages do.
            assert!(len == SEGMENT_HEADER_LEN + 6 || len % PAGE == 0, "{len}");
            assert!(seg.held_bytes() < PAGE as usize);
            assert_eq!(
                len + seg.held_bytes() as u64,
                SEGMENT_HEADER_LEN + all.len() as u64
            );
        }
        // Every byte went out once, in order, and every write after the first ended on a
        // page boundary.
        for pair in written.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{written:?}");
        }
        assert_eq!(written[0], (SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + 6));
        assert!(
            written[1..].iter().all(|&(_, end)| end % PAGE == 0),
            "{written:?}"
        );
        assert_eq!(seg.close().unwrap(), all.len() as u64 / 6);
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.len() as usize, all.len() / 3);
        let got: Vec<i32> = r.samples::<i32>().map(Result::unwrap).collect();
        assert_eq!(got, as_i24(&all));
    }

    #[test]
    fn a_held_page_lost_to_a_crash_is_less_than_a_page_and_repairs() {
        let (_dir, path, mut seg) = holding_segment(S16_STEREO);
        let first = frames_bytes(&S16_STEREO, 1, 0);
        seg.write_frames(&first).unwrap();
        assert_eq!(
            seg.held_bytes(),
            0,
            "a segment's first audio goes out whole"
        );
        let a = frames_bytes(&S16_STEREO, 3000, 1); // 12000 B: two pages and a bit
        seg.write_frames(&a).unwrap();
        seg.flush_header().unwrap();
        seg.sync_data().unwrap();
        let held = seg.held_bytes();
        assert!(held > 0 && held < PAGE as usize);
        drop(seg); // kill -9: the held bytes are gone, the rest is on disk
        let r = crate::segment::repair::repair_segment(&path, Some(S16_STEREO)).unwrap();
        let all = [first, a].concat();
        let on_disk = (all.len() - held) as u64 / 4;
        assert_eq!(r.frames, on_disk);
        assert_eq!(hound_samples(&path), as_i16(&all[..on_disk as usize * 4]));
    }

    #[test]
    fn write_held_flushes_the_tail_before_a_sync_that_needs_it() {
        let (_dir, path, mut seg) = holding_segment(S16_STEREO);
        seg.write_frames(&frames_bytes(&S16_STEREO, 1, 0)).unwrap();
        seg.write_frames(&frames_bytes(&S16_STEREO, 10, 1)).unwrap();
        assert_eq!(seg.held_bytes(), 40);
        seg.write_held().unwrap();
        assert_eq!(seg.held_bytes(), 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN + 44
        );
        // Holding goes on from an unaligned end: the next write stops at a boundary.
        seg.write_frames(&frames_bytes(&S16_STEREO, 1200, 2))
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len() % PAGE, 0);
        assert_eq!(seg.close().unwrap(), 1211);
    }

    #[test]
    fn a_failed_page_write_gives_back_the_held_frames() {
        let (_dir, path, mut seg) = holding_segment(S16_STEREO);
        seg.write_frames(&frames_bytes(&S16_STEREO, 1, 0)).unwrap();
        seg.write_frames(&frames_bytes(&S16_STEREO, 100, 1))
            .unwrap();
        assert_eq!((seg.frames(), seg.held_bytes()), (101, 400));
        // The disk takes 6 bytes of the tail, then is full.
        let mut budget = 6;
        let err = seg
            .append_with(
                &frames_bytes(&S16_STEREO, 2000, 2),
                true,
                |file, buf, off| {
                    if budget == 0 {
                        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                    }
                    let n = buf.len().min(budget);
                    budget -= n;
                    file.write_at(&buf[..n], off)
                },
            )
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!((seg.frames(), seg.held_bytes()), (2, 0));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_HEADER_LEN + 8
        );
        assert_eq!(seg.close().unwrap(), 2);
        assert_eq!(hound_samples(&path).len(), 4);
    }

    #[test]
    fn a_page_is_a_few_ms_of_stereo_and_longer_of_a_thin_stream() {
        let ms = |spec: &StreamSpec| page_duration(spec).as_secs_f64() * 1000.0;
        assert!((ms(&S16_STEREO) - 21.333).abs() < 0.01);
        let mono_8k = StreamSpec {
            format: SampleFormat::S16Le,
            rate: 8_000,
            channels: 1,
        };
        assert!((ms(&mono_8k) - 256.0).abs() < 0.01);
        let second = Duration::from_secs(1);
        let every = page_hold_sync(&S16_STEREO, second).unwrap();
        assert_eq!(every, second - page_duration(&S16_STEREO));
        assert_eq!(page_hold_sync(&mono_8k, second), None);
        assert!(page_hold_sync(&mono_8k, Duration::from_secs(2)).is_some());
    }

    #[test]
    fn sync_parent_dir_accepts_a_bare_file_name() {
        sync_parent_dir(Path::new("x.wav")).unwrap();
    }
}
