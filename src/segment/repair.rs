//! Repair of a segment left open by a crash or a power cut: the file length is the truth,
//! the header is made to agree with it.
//!
//! A segment is header + frames and nothing after them (it is append-only), so every byte
//! past the header is audio. A file whose header cannot be read is never modified: it is
//! reported as [`RepairError::Unreadable`] for the caller to record, and its audio stays
//! on disk for a human.

use crate::core::format::StreamSpec;
use crate::segment::wav::{self, FmtLayout, RIFF_SIZE_OFFSET, WavError, WavInfo};

/// Where a segment's `fmt ` chunk header sits (right after "RIFF" size "WAVE").
const FMT_CHUNK_OFFSET: u64 = 12;
/// The writer's `fmt ` body: WAVE_FORMAT_EXTENSIBLE.
const FMT_BODY_LEN: u32 = 40;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a repair found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// Whole frames the segment holds (and now declares).
    pub frames: u64,
    pub spec: StreamSpec,
    /// Bytes of a trailing partial frame cut from the end of the file.
    pub trailing_bytes_dropped: u64,
    /// The header's sizes disagreed with the file and were rewritten.
    pub header_was_stale: bool,
    /// A redundant field of the writer's `fmt ` chunk (byte rate, cbSize, channel
    /// mask) was damaged and was rewritten from the fields the format was read
    /// from, so standard readers, which check them, accept the file again.
    pub fmt_was_damaged: bool,
}

impl RepairReport {
    /// True when the segment was already consistent.
    pub fn was_clean(&self) -> bool {
        self.trailing_bytes_dropped == 0 && !self.header_was_stale && !self.fmt_was_damaged
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(
        "segment {path} has an unreadable WAV header ({source}); it was left untouched: \
         recover its audio by hand (e.g. import as raw PCM at byte 68 in the job's format)"
    )]
    Unreadable { path: PathBuf, source: WavError },
    #[error("segment {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Makes a crashed segment a valid WAV of its whole frames: drops a trailing partial frame,
/// rewrites the RIFF and data sizes from the file length, and syncs, so the frames it
/// reports are durable. Idempotent: a second run reports a clean segment.
///
/// `expected` is the format the segment was written in, when the journal (or the job's
/// other segments) know it: a `fmt ` chunk that says otherwise was damaged, since the
/// writer only writes its job's format, and is rewritten to say `expected`. Without it,
/// the format read from the file is trusted.
pub fn repair_segment(
    path: &Path,
    expected: Option<StreamSpec>,
) -> Result<RepairReport, RepairError> {
    let io_err = |source| RepairError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let mut info = read_info(&mut file, path)?;
    let in_writer_layout = info.fmt_chunk == (FMT_CHUNK_OFFSET, FMT_BODY_LEN);
    match expected {
        Some(spec) if spec != info.spec && !in_writer_layout => {
            return Err(RepairError::Unreadable {
                path: path.to_path_buf(),
                source: WavError::BadFmt("it declares another format than its job's"),
            });
        }
        Some(spec) => info.spec = spec,
        None => {}
    }
    let file_len = file.metadata().map_err(io_err)?.len();
    let (frames, trailing) = info.frames_in_file(file_len);
    let data_bytes = frames * info.spec.bytes_per_frame() as u64;
    if trailing > 0 {
        file.set_len(info.data_offset + data_bytes)
            .map_err(io_err)?;
    }
    let want = sizes(&info, data_bytes);
    let stale = stored_sizes(&file, &info).map_err(io_err)? != want;
    if stale {
        file.write_all_at(&want.0.to_le_bytes(), RIFF_SIZE_OFFSET)
            .map_err(io_err)?;
        file.write_all_at(&want.1.to_le_bytes(), info.data_offset - 4)
            .map_err(io_err)?;
    }
    let fmt_was_damaged = in_writer_layout && restore_fmt(&file, &info.spec).map_err(io_err)?;
    // Even a clean segment is synced: after a process crash its pages may not be on disk yet.
    file.sync_all().map_err(io_err)?;
    Ok(RepairReport {
        frames,
        spec: info.spec,
        trailing_bytes_dropped: trailing,
        header_was_stale: stale,
        fmt_was_damaged,
    })
}

/// Rewrites a segment's `fmt ` chunk (in the writer's layout) when its bytes differ from
/// what the writer makes for `spec`: a damaged redundant field (byte rate, cbSize, channel
/// mask) makes standard readers, which check them, refuse the file.
fn restore_fmt(file: &File, spec: &StreamSpec) -> io::Result<bool> {
    let canonical = wav::fmt_chunk(spec, FmtLayout::Extensible);
    let mut stored = vec![0u8; canonical.len()];
    file.read_exact_at(&mut stored, FMT_CHUNK_OFFSET)?;
    if stored == canonical {
        return Ok(false);
    }
    file.write_all_at(&canonical, FMT_CHUNK_OFFSET)?;
    Ok(true)
}

/// The segment's format and whole frames, from its header and length, without touching it.
pub fn segment_frames(path: &Path) -> Result<(StreamSpec, u64), RepairError> {
    let io_err = |source| RepairError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let info = read_info(&mut file, path)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    Ok((info.spec, info.frames_in_file(file_len).0))
}

fn read_info(file: &mut File, path: &Path) -> Result<WavInfo, RepairError> {
    wav::parse_header(file).map_err(|source| match source {
        WavError::Io(source) => RepairError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => RepairError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The (RIFF, data) sizes a header must declare for `data_bytes` of audio, saturated past
/// 4 GiB like the writer's.
fn sizes(info: &WavInfo, data_bytes: u64) -> (u32, u32) {
    let riff = info.data_offset - 8 + data_bytes;
    (
        u32::try_from(riff).unwrap_or(u32::MAX),
        u32::try_from(data_bytes).unwrap_or(u32::MAX),
    )
}

fn stored_sizes(file: &File, info: &WavInfo) -> io::Result<(u32, u32)> {
    let mut riff = [0u8; 4];
    file.read_exact_at(&mut riff, RIFF_SIZE_OFFSET)?;
    Ok((u32::from_le_bytes(riff), info.declared_data_len as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::SampleFormat;
    use crate::segment::file::SegmentFile;
    use crate::segment::wav::{SEGMENT_HEADER_LEN, segment_header};

    const SPEC: StreamSpec = StreamSpec {
        format: SampleFormat::S24Le3,
        rate: 48_000,
        channels: 2,
    };
    const BPF: u64 = 6;

    /// Writes a segment file of `frames` whole frames, then `extra` bytes, declaring `declared`.
    fn damaged(dir: &Path, name: &str, declared: u64, frames: u64, extra: u64) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = segment_header(&SPEC, declared).to_vec();
        bytes.extend((0..frames * BPF + extra).map(|i| (i % 253) as u8));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn hound_len(path: &Path) -> u32 {
        hound::WavReader::open(path).unwrap().len()
    }

    #[test]
    fn repairs_each_kind_of_damage_once() {
        let dir = tempfile::tempdir().unwrap();
        // (name, declared data bytes, whole frames on disk, trailing bytes, stale header?)
        let mut cases = vec![
            ("declared zero", 0, 100, 0, true),
            ("stale smaller", 40 * BPF, 100, 0, true),
            ("stale larger (cut by power loss)", 200 * BPF, 100, 0, true),
            ("empty data", 0, 0, 0, false),
            ("clean", 100 * BPF, 100, 0, false),
            ("declared zero, torn tail", 0, 100, 5, true),
        ];
        let partial: Vec<String> = (1..BPF).map(|n| format!("partial frame of {n}")).collect();
        for (n, name) in (1..BPF).zip(&partial) {
            cases.push((name, 100 * BPF, 100, n, false)); // header right, tail torn
        }
        for (name, declared, frames, extra, stale) in cases {
            let path = damaged(dir.path(), &name.replace(' ', "_"), declared, frames, extra);
            let r = repair_segment(&path, None).unwrap();
            let want = RepairReport {
                frames,
                spec: SPEC,
                trailing_bytes_dropped: extra,
                header_was_stale: stale,
                fmt_was_damaged: false,
            };
            assert_eq!(r, want, "case {name}");
            assert_eq!(hound_len(&path) as u64, frames * 2, "case {name}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                SEGMENT_HEADER_LEN + frames * BPF
            );
            assert_eq!(
                segment_frames(&path).unwrap(),
                (SPEC, frames),
                "case {name}"
            );
            let again = repair_segment(&path, None).unwrap();
            assert!(again.was_clean(), "case {name}: second run {again:?}");
            assert_eq!(again.frames, frames);
        }
    }

    #[test]
    fn unreadable_header_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let full = damaged(dir.path(), "full", 0, 10, 0);
        let bytes = std::fs::read(&full).unwrap();
        for cut in [0usize, 3, 11, 30, 59, 60, 63] {
            let path = dir.path().join(format!("cut{cut}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = repair_segment(&path, None).unwrap_err();
            assert!(
                matches!(err, RepairError::Unreadable { .. }),
                "cut at {cut}: {err}"
            );
            assert!(matches!(
                segment_frames(&path),
                Err(RepairError::Unreadable { .. })
            ));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                &bytes[..cut],
                "cut at {cut} modified the file"
            );
        }
    }

    #[test]
    fn damaged_redundant_fmt_fields_are_restored_for_standard_readers() {
        let dir = tempfile::tempdir().unwrap();
        // (what, offset in the file, byte): fields the format is not read from, which
        // hound and other readers check.
        let cases = [
            ("byte rate", 28, 0x45),
            ("cbSize", 36, 0x07),
            ("channel mask", 40, 0xFF),
        ];
        for (what, at, byte) in cases {
            let path = damaged(dir.path(), &what.replace(' ', "_"), 10 * BPF, 10, 0);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at] = byte;
            std::fs::write(&path, &bytes).unwrap();
            let r = repair_segment(&path, None).unwrap();
            assert!(r.fmt_was_damaged && !r.header_was_stale, "{what}: {r:?}");
            assert_eq!(hound_len(&path), 20, "{what}");
            assert!(repair_segment(&path, None).unwrap().was_clean(), "{what}");
        }
    }

    #[test]
    fn a_format_field_that_disagrees_with_the_job_is_rewritten_to_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        // (what, offset in the file, bytes): the rate, the channel count, the bits.
        let cases: [(&str, usize, &[u8]); 3] = [
            ("rate", 24, &[0x00, 0xBB]),
            ("channels", 22, &[0x03]),
            ("container bits", 34, &[0x20]),
        ];
        for (what, at, patch) in cases {
            let path = damaged(dir.path(), what, 0, 10, 0);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at..at + patch.len()].copy_from_slice(patch);
            std::fs::write(&path, &bytes).unwrap();
            match repair_segment(&path, Some(SPEC)) {
                Ok(r) => {
                    assert!(r.fmt_was_damaged, "{what}: {r:?}");
                    assert_eq!((r.spec, r.frames), (SPEC, 10), "{what}");
                    let reader = hound::WavReader::open(&path).unwrap();
                    assert_eq!(reader.spec().sample_rate, SPEC.rate, "{what}");
                    assert_eq!(reader.spec().channels, SPEC.channels, "{what}");
                }
                // A field the header cannot be read with leaves the file as it was.
                Err(RepairError::Unreadable { .. }) => {
                    assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}")
                }
                Err(e) => panic!("{what}: {e}"),
            }
            assert!(repair_segment(&path, Some(SPEC)).map_or(true, |r| r.was_clean()));
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = repair_segment(&dir.path().join("nope.wav"), None).unwrap_err();
        assert!(
            matches!(err, RepairError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn repairs_a_crashed_segment_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.wav");
        let mut seg = SegmentFile::create(&path, SPEC).unwrap();
        seg.write_frames(&vec![1; 30 * BPF as usize]).unwrap();
        seg.flush_header().unwrap();
        seg.write_frames(&vec![2; 20 * BPF as usize]).unwrap();
        drop(seg); // crash after the second write, before its header flush
        let r = repair_segment(&path, None).unwrap();
        assert_eq!(
            (r.frames, r.header_was_stale, r.trailing_bytes_dropped),
            (50, true, 0)
        );
        assert_eq!(hound_len(&path), 100);
    }

    #[test]
    fn repairs_a_sparse_segment_past_4_gib() {
        let dir = tempfile::tempdir().unwrap();
        let path = damaged(dir.path(), "big.wav", 1000 * BPF, 1000, 0);
        let frames = (5u64 << 30) / BPF;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.set_len(SEGMENT_HEADER_LEN + frames * BPF + 4).unwrap(); // sparse: nothing written
        let r = repair_segment(&path, None).unwrap();
        assert_eq!(
            (r.frames, r.trailing_bytes_dropped, r.header_was_stale),
            (frames, 4, true)
        );
        let mut sizes = [0u8; 4];
        file.read_exact_at(&mut sizes, 4).unwrap();
        assert_eq!(u32::from_le_bytes(sizes), u32::MAX);
        file.read_exact_at(&mut sizes, 64).unwrap();
        assert_eq!(u32::from_le_bytes(sizes), u32::MAX);
        assert!(repair_segment(&path, None).unwrap().was_clean());
        assert_eq!(segment_frames(&path).unwrap().1, frames);
    }

    #[test]
    fn sizes_past_4_gib_trust_the_length() {
        let info = WavInfo {
            spec: SPEC,
            data_offset: SEGMENT_HEADER_LEN,
            declared_data_len: u32::MAX as u64,
            identity_chunk: None,
            fmt_chunk: (12, 40),
        };
        assert_eq!(sizes(&info, 5 << 30), (u32::MAX, u32::MAX));
        assert_eq!(sizes(&info, 600), (660, 600));
        assert_eq!(
            info.frames_in_file(SEGMENT_HEADER_LEN + (6 << 30) + 1),
            (1 << 30, 1)
        );
    }
}
