//! One open segment on disk: a WAV file that is valid up to its last header flush and, on
//! a failed write, still valid up to its last whole frame.
//!
//! Audio goes out with positioned writes at the end of the data (`pwrite`), so the
//! header rewrites and the appends never share a file position, and a write that failed
//! half way is simply overwritten by the next one.

use crate::core::format::StreamSpec;
use crate::segment::wav::{self, RIFF_SIZE_OFFSET, SegmentIdentity};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open segment. There is no `Drop` magic: call [`SegmentFile::close`] to finalise it;
/// a segment dropped without it is what a crash leaves, and repair handles it.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    path: PathBuf,
    spec: StreamSpec,
    /// Where the audio starts (after the header and the identity chunk, if any).
    data_offset: u64,
    frames: u64,
    bytes_since_sync: u64,
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
            bytes_since_sync: 0,
        })
    }

    /// Appends whole frames. On error the file is cut back to its last whole frame (the
    /// frames of this call that did reach the disk are kept and counted) and the error is
    /// returned: the caller decides whether to pause, rotate or give up.
    pub fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.append_with(bytes, |file, buf, offset| file.write_at(buf, offset))
    }

    /// [`Self::write_frames`] over any positioned writer, so tests can fail a write half way.
    fn append_with(
        &mut self,
        bytes: &[u8],
        mut write_at: impl FnMut(&File, &[u8], u64) -> io::Result<usize>,
    ) -> io::Result<()> {
        let bpf = self.spec.bytes_per_frame();
        debug_assert_eq!(bytes.len() % bpf, 0, "write_frames takes whole frames");
        let start = self.data_end();
        let mut done = 0usize;
        while done < bytes.len() {
            match write_at(&self.file, &bytes[done..], start + done as u64) {
                Ok(0) => {
                    let err =
                        io::Error::new(io::ErrorKind::WriteZero, "segment write made no progress");
                    return self.fail_write(done, err);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_write(done, e),
            }
        }
        self.frames += (bytes.len() / bpf) as u64;
        self.bytes_since_sync += bytes.len() as u64;
        Ok(())
    }

    /// Keeps the whole frames of a failed write and drops its partial frame from the file.
    fn fail_write(&mut self, written: usize, err: io::Error) -> io::Result<()> {
        let (frames, len) = after_short_write(
            self.data_offset,
            self.frames,
            written,
            self.spec.bytes_per_frame(),
        );
        self.bytes_since_sync += (frames - self.frames) * self.spec.bytes_per_frame() as u64;
        self.frames = frames;
        // Shrinking needs no space, so this works on a full disk. If it fails anyway, the
        // next write (at `data_end`) overwrites the fragment, and repair drops it after a crash.
        let _ = self.file.set_len(len);
        Err(err)
    }

    /// Rewrites the RIFF and data sizes in place: the file is a valid WAV of `frames()`
    /// frames from here on (durable after the next `sync_data`).
    pub fn flush_header(&mut self) -> io::Result<()> {
        let (riff, data) = wav::segment_sizes(self.data_offset, self.data_bytes());
        self.file
            .write_all_at(&riff.to_le_bytes(), RIFF_SIZE_OFFSET)?;
        self.file
            .write_all_at(&data.to_le_bytes(), self.data_offset - 4)
    }

    /// `fdatasync`: the audio and header written so far survive a power cut.
    pub fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.bytes_since_sync = 0;
        Ok(())
    }

    /// Flushes the header, syncs everything, and returns the frames the segment holds.
    pub fn close(mut self) -> io::Result<u64> {
        self.flush_header()?;
        self.file.sync_all()?;
        Ok(self.frames)
    }

    /// Whole frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Audio bytes written since the last `sync_data` (for a bytes-based sync schedule).
    pub fn bytes_since_sync(&self) -> u64 {
        self.bytes_since_sync
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn data_bytes(&self) -> u64 {
        self.frames * self.spec.bytes_per_frame() as u64
    }

    fn data_end(&self) -> u64 {
        self.data_offset + self.data_bytes()
    }
}

/// After `written` bytes of a write that failed reached the file: the frames the segment
/// then holds, and the file length that keeps exactly those.
fn after_short_write(
    data_offset: u64,
    frames_before: u64,
    written: usize,
    bpf: usize,
) -> (u64, u64) {
    let frames = frames_before + (written / bpf) as u64;
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
            // (frames before, bytes written by the failed call, bytes per frame, want)
            (0, 0, 4, (0, h)),
            (10, 0, 4, (10, h + 40)),
            (10, 3, 4, (10, h + 40)),
            (10, 4, 4, (11, h + 44)),
            (10, 13, 4, (13, h + 52)),
            (7, 17, 6, (9, h + 54)),
        ];
        for (before, written, bpf, want) in cases {
            assert_eq!(
                after_short_write(h, before, written, bpf),
                want,
                "{before} {written} {bpf}"
            );
        }
    }

    #[test]
    fn failed_write_leaves_a_valid_file_up_to_the_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let spec = StreamSpec {
            format: SampleFormat::S24Le3,
            rate: 48_000,
            channels: 2,
        };
        let mut seg = SegmentFile::create(&path, spec).unwrap();
        let first = frames_bytes(&spec, 10, 1);
        seg.write_frames(&first).unwrap();
        let second = frames_bytes(&spec, 10, 5);
        // The disk takes 2 whole frames and 5 bytes of the third in two short writes, then is full.
        let mut budget = 2 * 6 + 5;
        let err = seg
            .append_with(&second, |file, buf, off| {
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
        let want: Vec<i32> = want
            .chunks_exact(3)
            .map(|c| i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sync_parent_dir_accepts_a_bare_file_name() {
        sync_parent_dir(Path::new("x.wav")).unwrap();
    }
}
