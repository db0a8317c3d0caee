//! Stitch plans rendered to real files.

use super::*;
use crate::segment::file::SegmentFile;

fn spec(format: SampleFormat, channels: u16) -> StreamSpec {
    StreamSpec {
        format,
        rate: 48_000,
        channels,
    }
}

/// A closed segment whose 16-bit samples are `first..first + frames*channels`.
fn s16_segment(
    dir: &Path,
    name: &str,
    s: StreamSpec,
    first: i16,
    frames: usize,
) -> (PathBuf, Vec<i16>) {
    let samples: Vec<i16> = (0..frames * s.channels as usize)
        .map(|i| first.wrapping_add(i as i16))
        .collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    (segment(dir, name, s, &bytes), samples)
}

fn segment(dir: &Path, name: &str, s: StreamSpec, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut seg = SegmentFile::create(&path, s).unwrap();
    seg.write_frames(bytes).unwrap();
    seg.close().unwrap();
    path
}

fn read_all<S: hound::Sample>(path: &Path) -> (hound::WavSpec, Vec<S>) {
    let mut r = hound::WavReader::open(path).unwrap();
    (r.spec(), r.samples::<S>().map(Result::unwrap).collect())
}

#[test]
fn segments_and_gaps_give_exactly_the_expected_samples() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 2);
    let (a, a_samples) = s16_segment(dir.path(), "a.wav", s, 1, 100);
    let (b, b_samples) = s16_segment(dir.path(), "b.wav", s, 1000, 50);
    let plan = vec![
        Piece::Silence { frames: 3 },
        Piece::Segment {
            file: a,
            skip: 0,
            frames: 100,
        },
        Piece::Silence { frames: 7 },
        Piece::Segment {
            file: b,
            skip: 10,
            frames: 40,
        },
        Piece::Silence { frames: 2 },
    ];
    let out = dir.path().join("out.wav");
    let report = stitch(&plan, s, &out).unwrap();
    let mut want = vec![0i16; 6];
    want.extend(&a_samples);
    want.extend(vec![0; 14]);
    want.extend(&b_samples[20..]);
    want.extend(vec![0; 4]);
    let (got_spec, got) = read_all::<i16>(&out);
    assert_eq!(got, want);
    assert_eq!((got_spec.channels, got_spec.bits_per_sample), (2, 16));
    assert_eq!(
        report,
        StitchReport {
            frames: 152,
            bytes: fs::metadata(&out).unwrap().len(),
            rf64: false
        }
    );
    assert!(!dir.path().join(".out.wav.partial").exists());
}

#[test]
fn long_segments_cross_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 1);
    let frames = CHUNK_BYTES / 2 * 2 + 123; // two and a bit chunks
    let (a, a_samples) = s16_segment(dir.path(), "a.wav", s, -30_000, frames);
    let out = dir.path().join("out.wav");
    let plan = vec![Piece::Segment {
        file: a,
        skip: 5,
        frames: (frames - 5) as u64,
    }];
    stitch(&plan, s, &out).unwrap();
    assert_eq!(read_all::<i16>(&out).1, a_samples[5..]);
}

#[test]
fn s24_words_are_packed_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S24Le, 2);
    let values = [0, 1, -1, 0x7F_FFFF, -0x80_0000, 12345, -54321, 0x12_3456];
    let bytes: Vec<u8> = values.iter().flat_map(|v: &i32| v.to_le_bytes()).collect();
    let seg = segment(dir.path(), "a.wav", s, &bytes);
    let out = dir.path().join("out.wav");
    let plan = vec![
        Piece::Segment {
            file: seg,
            skip: 1,
            frames: 3,
        },
        Piece::Silence { frames: 1 },
    ];
    let report = stitch(&plan, s, &out).unwrap();
    let raw = fs::read(&out).unwrap();
    let info = wav::parse_header(&mut io::Cursor::new(&raw)).unwrap();
    assert_eq!(info.spec, spec(SampleFormat::S24Le3, 2));
    assert_eq!(info.declared_data_len, 4 * 6);
    assert_eq!(report.bytes, raw.len() as u64);
    let (hs, got) = read_all::<i32>(&out);
    assert_eq!(hs.bits_per_sample, 24);
    let mut want = values[2..].to_vec();
    want.extend([0, 0]);
    assert_eq!(got, want);
}

#[test]
fn every_format_round_trips_through_hound() {
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in SampleFormat::ALL.into_iter().enumerate() {
        for ch in [1u16, 3] {
            let s = spec(f, ch);
            let bytes: Vec<u8> = (0..5 * s.bytes_per_frame()).map(|i| i as u8).collect();
            let seg = segment(dir.path(), &format!("{i}-{ch}.wav"), s, &bytes);
            let out = dir.path().join(format!("out-{i}-{ch}.wav"));
            let plan = vec![
                Piece::Segment {
                    file: seg,
                    skip: 0,
                    frames: 5,
                },
                Piece::Silence { frames: 1 },
            ];
            let report = stitch(&plan, s, &out).unwrap();
            let r = hound::WavReader::open(&out).unwrap();
            assert_eq!(r.len(), 6 * ch as u32, "{f} {ch} ch");
            assert_eq!(
                report.bytes,
                fs::metadata(&out).unwrap().len(),
                "{f} {ch} ch"
            );
        }
    }
}

#[test]
fn odd_data_gets_a_pad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S24Le3, 1);
    let seg = segment(dir.path(), "a.wav", s, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let out = dir.path().join("out.wav");
    let report = stitch(
        &[Piece::Segment {
            file: seg,
            skip: 0,
            frames: 3,
        }],
        s,
        &out,
    )
    .unwrap();
    let raw = fs::read(&out).unwrap();
    assert_eq!(raw.len() % 2, 0);
    assert_eq!(
        u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize,
        raw.len() - 8
    );
    assert_eq!(report.bytes, raw.len() as u64);
    assert_eq!(read_all::<i32>(&out).1.len(), 3);
}

#[test]
fn mismatched_spec_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = s16_segment(dir.path(), "a.wav", spec(SampleFormat::S16Le, 1), 0, 10);
    let out = dir.path().join("out.wav");
    let err = stitch(
        &[Piece::Segment {
            file: a.clone(),
            skip: 0,
            frames: 5,
        }],
        spec(SampleFormat::S16Le, 2),
        &out,
    )
    .unwrap_err();
    assert!(
        matches!(&err, StitchError::SpecMismatch { file, .. } if *file == a),
        "{err}"
    );
    assert!(err.to_string().contains("a.wav"));
    assert!(!out.exists());
    assert!(!dir.path().join(".out.wav.partial").exists());
}

#[test]
fn missing_frames_name_the_file_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 2);
    let (a, _) = s16_segment(dir.path(), "a.wav", s, 0, 10);
    let out = dir.path().join("out.wav");
    fs::write(&out, b"previous render").unwrap();
    for (skip, frames) in [(0, 11), (4, 7), (u64::MAX, 2)] {
        let err = stitch(
            &[Piece::Segment {
                file: a.clone(),
                skip,
                frames,
            }],
            s,
            &out,
        )
        .unwrap_err();
        assert!(
            matches!(&err, StitchError::ShortSegment { file, available: 10, .. } if *file == a),
            "{skip} {frames}: {err}"
        );
    }
    assert_eq!(fs::read(&out).unwrap(), b"previous render"); // untouched on failure
}

#[test]
fn missing_or_broken_segments_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 2);
    let out = dir.path().join("out.wav");
    let gone = dir.path().join("gone.wav");
    let err = stitch(
        &[Piece::Segment {
            file: gone,
            skip: 0,
            frames: 1,
        }],
        s,
        &out,
    )
    .unwrap_err();
    assert!(matches!(err, StitchError::OpenSegment { .. }), "{err}");
    let junk = dir.path().join("junk.wav");
    fs::write(&junk, b"not a wav at all").unwrap();
    let err = stitch(
        &[Piece::Segment {
            file: junk,
            skip: 0,
            frames: 1,
        }],
        s,
        &out,
    )
    .unwrap_err();
    assert!(matches!(err, StitchError::BadSegment { .. }), "{err}");
    let err = stitch(&[], s, Path::new("/")).unwrap_err();
    assert!(matches!(err, StitchError::Output { .. }), "{err}");
}

#[test]
fn empty_plan_is_an_empty_wav() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let report = stitch(&[], spec(SampleFormat::FloatLe, 2), &out).unwrap();
    assert_eq!(report.frames, 0);
    assert!(read_all::<f32>(&out).1.is_empty());
}

#[test]
fn header_keeps_its_length_and_turns_rf64_past_4_gib() {
    let s = spec(SampleFormat::FloatLe, 2);
    let small = output_header(&s, 800, 100);
    let frames = 700_000_000u64; // 5.6 GB of stereo float
    let big = output_header(&s, frames * 8, frames);
    assert_eq!(small.bytes.len(), big.bytes.len());
    assert!(!small.rf64 && big.rf64);
    assert_eq!(&small.bytes[0..4], b"RIFF");
    assert_eq!(&small.bytes[12..16], b"JUNK");

    let h = &big.bytes;
    let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    assert_eq!(
        (&h[0..4], u32_at(4), &h[8..12]),
        (&b"RF64"[..], u32::MAX, &b"WAVE"[..])
    );
    assert_eq!((&h[12..16], u32_at(16)), (&b"ds64"[..], 28));
    assert_eq!(
        u64_at(20),
        h.len() as u64 - 8 + frames * 8,
        "ds64 RIFF size"
    );
    assert_eq!(u64_at(28), frames * 8, "ds64 data size");
    assert_eq!(u64_at(36), frames, "ds64 sample count");
    assert_eq!(u32_at(44), 0, "ds64 table length");
    let n = h.len();
    assert_eq!((&h[n - 8..n - 4], u32_at(n - 4)), (&b"data"[..], u32::MAX));
    assert_eq!(&h[n - 20..n - 16], b"fact");
}

#[test]
fn rf64_threshold_is_the_riff_size() {
    let s = spec(SampleFormat::S16Le, 2);
    let header_len = output_header(&s, 0, 0).bytes.len() as u64;
    let max_data = u64::from(u32::MAX) - (header_len - 8);
    let fits = max_data - max_data % 4;
    assert!(!output_header(&s, fits, fits / 4).rf64);
    assert!(output_header(&s, fits + 4, fits / 4 + 1).rf64);
}
