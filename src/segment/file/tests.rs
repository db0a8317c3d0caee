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
