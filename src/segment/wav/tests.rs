use super::*;
use std::io::Cursor;

fn spec(format: SampleFormat, channels: u16) -> StreamSpec {
    StreamSpec {
        format,
        rate: 48_000,
        channels,
    }
}

/// A segment of `frames` frames whose bytes count up, so each sample is distinct.
fn segment_bytes(spec: &StreamSpec, frames: u64) -> Vec<u8> {
    let data_len = frames * spec.bytes_per_frame() as u64;
    let mut v = segment_header(spec, data_len).to_vec();
    v.extend((0..data_len).map(|i| (i % 251) as u8));
    v
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = id.to_vec();
    put_u32(&mut c, body.len() as u32);
    c.extend_from_slice(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut v = b"RIFF".to_vec();
    put_u32(&mut v, 4 + body.len() as u32);
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(&body);
    v
}

#[test]
fn header_is_68_bytes_for_every_format() {
    for f in SampleFormat::ALL {
        for ch in [1, 2, 8] {
            let s = spec(f, ch);
            let h = segment_header(&s, 0);
            assert_eq!(&h[60..64], b"data");
            assert_eq!(fmt_chunk(&s, FmtLayout::Extensible).len(), 48);
        }
    }
}

#[test]
fn round_trips_every_format() {
    for f in SampleFormat::ALL {
        let s = spec(f, 2);
        let bytes = segment_bytes(&s, 10);
        let info = parse_header(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(info.spec, s, "{f}");
        assert_eq!(info.data_offset, SEGMENT_HEADER_LEN);
        assert_eq!(info.declared_data_len, 10 * s.bytes_per_frame() as u64);
        assert_eq!(info.frames_in_file(bytes.len() as u64), (10, 0));
    }
}

#[test]
fn hound_reads_segments_of_every_format() {
    for f in SampleFormat::ALL {
        for ch in [1u16, 2, 6] {
            let s = spec(f, ch);
            let frames = 37;
            let bytes = segment_bytes(&s, frames);
            let r = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
            assert_eq!(r.len() as u64, frames * ch as u64, "{f} {ch} ch");
            assert_eq!(r.spec().channels, ch);
            assert_eq!(r.spec().bits_per_sample, f.valid_bits());
            let float = r.spec().sample_format == hound::SampleFormat::Float;
            assert_eq!(float, f.is_float());
        }
    }
}

#[test]
fn hound_decodes_low_justified_s24_words() {
    let s = spec(SampleFormat::S24Le, 1);
    let mut bytes = segment_header(&s, 8).to_vec();
    bytes.extend_from_slice(&(-2i32).to_le_bytes());
    bytes.extend_from_slice(&0x7F_FFFFi32.to_le_bytes());
    let mut r = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
    let got: Vec<i32> = r.samples::<i32>().map(Result::unwrap).collect();
    assert_eq!(got, [-2, 0x7F_FFFF]);
}

#[test]
fn sizes_saturate_past_4_gib() {
    let s = spec(SampleFormat::S16Le, 2);
    let h = segment_header(&s, 5 << 30);
    assert_eq!(u32_at(&h, 4), u32::MAX);
    assert_eq!(u32_at(&h, 64), u32::MAX);
    assert_eq!(segment_sizes(SEGMENT_HEADER_LEN, 100), (160, 100));
}

#[test]
fn reads_plain_pcm_and_float_with_extra_chunks() {
    let cases = [
        (SampleFormat::S16Le, FmtLayout::Plain),
        (SampleFormat::S24Le3, FmtLayout::Plain),
        (SampleFormat::S32Le, FmtLayout::Plain),
        (SampleFormat::FloatLe, FmtLayout::Plain),
        (SampleFormat::S24Le, FmtLayout::Extensible),
    ];
    for (f, layout) in cases {
        let s = spec(f, 2);
        let fmt = fmt_chunk(&s, layout);
        let data = vec![0u8; 4 * s.bytes_per_frame()];
        let bytes = riff(&[
            chunk(b"JUNK", &[0; 28]),
            chunk(b"LIST", b"odd"), // odd size: padded
            fmt,
            chunk(b"fact", &4u32.to_le_bytes()),
            chunk(b"data", &data),
        ]);
        let info = parse_header(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(info.spec, s, "{f} {layout:?}");
        assert_eq!(info.data_offset, bytes.len() as u64 - data.len() as u64);
        assert_eq!(info.declared_data_len, data.len() as u64);
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let s = spec(SampleFormat::S16Le, 2);
    let fmt = fmt_chunk(&s, FmtLayout::Plain);
    let mut u8_fmt = fmt.clone();
    u8_fmt[8 + 12..8 + 16].copy_from_slice(&[2, 0, 8, 0]); // block align 2, 8 bits
    let mut adpcm = fmt.clone();
    adpcm[8] = 2;
    let seg = segment_bytes(&s, 3);
    type Case = (&'static str, Vec<u8>, fn(&WavError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty", vec![], |e| {
            matches!(e, WavError::Truncated { at: 0, .. })
        }),
        (
            "not riff",
            b"RF64\0\0\0\0WAVE".to_vec(),
            |e| matches!(e, WavError::NotRiff(s) if s == "RF64"),
        ),
        ("no fmt", riff(&[chunk(b"data", &[0; 4])]), |e| {
            matches!(e, WavError::NoFmt)
        }),
        ("no chunks", riff(&[]), |e| matches!(e, WavError::NoFmt)),
        ("no data", riff(std::slice::from_ref(&fmt)), |e| {
            matches!(e, WavError::NoData)
        }),
        ("8-bit", riff(&[u8_fmt, chunk(b"data", &[])]), |e| {
            matches!(
                e,
                WavError::UnsupportedBits {
                    valid_bits: 8,
                    container_bytes: 1,
                    float: false
                }
            )
        }),
        ("adpcm", riff(&[adpcm, chunk(b"data", &[])]), |e| {
            matches!(e, WavError::UnsupportedFormatTag(2))
        }),
        ("cut in fmt", seg[..40].to_vec(), |e| {
            matches!(e, WavError::Truncated { at: 40, .. })
        }),
        ("cut in data header", seg[..64].to_vec(), |e| {
            matches!(e, WavError::Truncated { at: 64, .. })
        }),
        ("cut after fmt", seg[..60].to_vec(), |e| {
            matches!(e, WavError::NoData)
        }),
    ];
    for (name, bytes, ok) in cases {
        let err = parse_header(&mut Cursor::new(&bytes)).unwrap_err();
        assert!(ok(&err), "case {name}: {err}");
    }
}

#[test]
fn zero_declared_size_still_parses() {
    let s = spec(SampleFormat::S24Le3, 2);
    let mut bytes = segment_header(&s, 0).to_vec();
    bytes.extend_from_slice(&[1; 6 * 5 + 2]);
    let info = parse_header(&mut Cursor::new(&bytes)).unwrap();
    assert_eq!(info.declared_data_len, 0);
    assert_eq!(info.frames_in_file(bytes.len() as u64), (5, 2));
}
