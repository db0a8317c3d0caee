//! Stitched views read back against the pipeline's own WAV of the same plan.

use super::*;
use crate::core::format::SampleFormat;
use crate::render::channel_map::Mix;
use crate::render::codec;
use crate::render::pipeline::{self, RenderReport, RenderRequest};
use crate::segment::file::SegmentFile;

fn spec(format: SampleFormat, channels: u16) -> StreamSpec {
    StreamSpec {
        format,
        rate: 8_000,
        channels,
    }
}

fn segment(dir: &Path, name: &str, s: StreamSpec, frames: usize, seed: u8) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..frames * s.bytes_per_frame())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let bytes = if s.format == SampleFormat::S24Le {
        // Low-justified 24-bit words: the top byte repeats the sign.
        let mut b = bytes;
        for w in b.chunks_exact_mut(4) {
            w[3] = if w[2] & 0x80 != 0 { 0xff } else { 0 };
        }
        b
    } else {
        bytes
    };
    let mut seg = SegmentFile::create(&path, s).unwrap();
    seg.write_frames(&bytes).unwrap();
    seg.close().unwrap();
    path
}

fn facts() -> Facts {
    Facts {
        job_id: "job_1".into(),
        recording_id: "rec_1".into(),
        started_at_ms: Some(1_700_000_000_000),
    }
}

/// Two segments with gaps around them, under `dir/job`.
fn two_segments(dir: &Path, s: StreamSpec, frames_b: u64) -> (PathBuf, Vec<Piece<PathBuf>>) {
    let job = dir.join("job");
    std::fs::create_dir_all(&job).unwrap();
    let a = segment(&job, "000001.wav", s, 300, 1);
    let b = segment(&job, "000002.wav", s, 200, 7);
    let plan = vec![
        Piece::Silence { frames: 5 },
        Piece::Segment {
            file: a,
            skip: 0,
            frames: 300,
        },
        Piece::Silence { frames: 11 },
        Piece::Segment {
            file: b,
            skip: 20,
            frames: frames_b,
        },
    ];
    (job, plan)
}

/// The pipeline's WAV request for `plan`, keeping the (0-based) `select`ed channels.
fn wav_request(plan: &[Piece<PathBuf>], s: StreamSpec, select: Option<&[u16]>) -> RenderRequest {
    let mix = match select {
        None => Mix::identity(s.channels),
        Some(sel) => crate::render::job::OutputOptions {
            capture_channel_selection: Some(sel.iter().map(|c| c + 1).collect()),
            ..Default::default()
        }
        .mix(s.channels)
        .unwrap(),
    };
    RenderRequest {
        plan: plan.to_vec(),
        spec: s,
        mix,
        codec: codec::codec("wav").unwrap(),
        bits: None,
        float: false,
        rate: None,
        bitrate_kbps: None,
        vbr: false,
        facts: facts(),
    }
}

fn pipeline_wav(
    plan: &[Piece<PathBuf>],
    s: StreamSpec,
    select: Option<&[u16]>,
    out: &Path,
) -> Vec<u8> {
    pipeline::render(&wav_request(plan, s, select), out, None, &mut |_, _| {}).unwrap();
    std::fs::read(out).unwrap()
}

fn read_view(view: &StitchedView, job: &Path, offset: u64) -> Vec<u8> {
    let mut got = Vec::new();
    view.open_at(job, offset)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    got
}

#[test]
fn the_view_is_the_pipelines_wav_byte_for_byte() {
    for (format, channels, select) in [
        (SampleFormat::S16Le, 2, None),
        (SampleFormat::S16Le, 4, Some(vec![3u16, 1])),
        (SampleFormat::S24Le, 2, None),
        (SampleFormat::S24Le, 3, Some(vec![2])),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(format, channels);
        let (job, plan) = two_segments(dir.path(), s, 179);
        let want = pipeline_wav(&plan, s, select.as_deref(), &dir.path().join("p.wav"));
        let view = StitchedView::new(&plan, &job, s, select.as_deref(), &facts()).unwrap();
        let got = read_view(&view, &job, 0);
        assert_eq!(got.len() as u64, view.len(), "{format:?} {select:?}");
        assert!(
            got == want,
            "{format:?} {channels} {select:?}: bytes differ"
        );
    }
}

#[test]
fn s32_is_copied_exactly_and_an_odd_length_is_padded() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S32Le, 1);
    let (job, plan) = two_segments(dir.path(), s, 100);
    let view = StitchedView::new(&plan, &job, s, None, &facts()).unwrap();
    let got = read_view(&view, &job, 0);
    let header = view.header.len() / 2;
    let seg = std::fs::read(job.join("000001.wav")).unwrap();
    let seg_audio = &seg[seg.len() - 300 * 4..];
    assert_eq!(&got[header + 5 * 4..header + 305 * 4], seg_audio);
    // One 3-byte channel, an odd frame count: the data chunk is padded to even.
    let s = spec(SampleFormat::S24Le, 1);
    let dir = tempfile::tempdir().unwrap();
    let (job, plan) = two_segments(dir.path(), s, 101);
    let view = StitchedView::new(&plan, &job, s, None, &facts()).unwrap();
    assert_eq!(view.frames() % 2, 1);
    let got = read_view(&view, &job, 0);
    assert_eq!(got.len() as u64, view.len());
    assert_eq!(got.len() % 2, 0);
    assert_eq!(*got.last().unwrap(), 0);
}

#[test]
fn any_offset_gives_the_rest_of_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S24Le, 3);
    let (job, plan) = two_segments(dir.path(), s, 101);
    let view = StitchedView::new(&plan, &job, s, Some(&[2]), &facts()).unwrap();
    let whole = read_view(&view, &job, 0);
    let len = whole.len() as u64;
    let header = view.header.len() as u64 / 2;
    let mut offsets: Vec<u64> = (0..header + 40).collect();
    offsets.extend([
        len / 2,
        len / 2 + 1,
        len - 3,
        len - 2,
        len - 1,
        len,
        len + 5,
    ]);
    for at in offsets {
        let want = whole.get(at as usize..).unwrap_or(&[]);
        assert!(read_view(&view, &job, at) == want, "offset {at}");
    }
}

/// The view's bytes as `next_chunk` lends them, concatenated.
fn chunks(view: &StitchedView, job: &Path) -> Vec<u8> {
    let mut r = view.open_at(job, 0).unwrap();
    let mut got = Vec::new();
    loop {
        let c = r.next_chunk().unwrap();
        if c.is_empty() {
            return got;
        }
        got.extend_from_slice(c);
    }
}

#[test]
fn borrowed_chunks_are_the_bytes_read_across_steps() {
    // A segment longer than a step (STEP_BYTES), so both paths cross step boundaries:
    // bytes lent from the read itself (plain copy) and from the converted output.
    for (format, channels, select) in [
        (SampleFormat::S16Le, 2, None),
        (SampleFormat::S16Le, 2, Some(vec![1u16])),
        (SampleFormat::S24Le, 1, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(format, channels);
        let frames = STEP_BYTES / s.bytes_per_frame() * 2 + 333;
        let job = dir.path().join("job");
        std::fs::create_dir_all(&job).unwrap();
        let file = segment(&job, "000001.wav", s, frames, 3);
        let plan = vec![
            Piece::Segment {
                file: file.clone(),
                skip: 0,
                frames: frames as u64,
            },
            Piece::Silence { frames: 7 },
            Piece::Segment {
                file,
                skip: 1,
                frames: 101, // S24 mono: an odd data chunk, so the pad byte comes last
            },
        ];
        let view = StitchedView::new(&plan, &job, s, select.as_deref(), &facts()).unwrap();
        let whole = read_view(&view, &job, 0);
        assert_eq!(whole.len() as u64, view.len());
        if format == SampleFormat::S24Le {
            assert_eq!(view.data_bytes() % 2, 1, "the pad is exercised");
        }
        assert!(chunks(&view, &job) == whole, "{format:?} {select:?}");
        let want = pipeline_wav(&plan, s, select.as_deref(), &dir.path().join("p.wav"));
        assert!(
            whole == want,
            "{format:?} {select:?}: not the pipeline's WAV"
        );
    }
}

#[test]
fn a_view_names_only_the_job_and_its_group_leader() {
    let job = Path::new("/state/ctl-1");
    assert!(segment_path(job, "000001.wav").is_ok());
    assert!(segment_path(job, "../ctl-2/000001.wav").is_ok());
    for bad in ["/etc/passwd", "../../etc/passwd", "a/../../b", "x/../y"] {
        assert!(segment_path(job, bad).is_err(), "{bad}");
    }
    let outside = vec![Piece::Segment {
        file: PathBuf::from("/elsewhere/000001.wav"),
        skip: 0,
        frames: 1,
    }];
    let s = spec(SampleFormat::S16Le, 1);
    assert!(StitchedView::new(&outside, job, s, None, &facts()).is_err());
}

#[test]
fn a_segment_that_changed_is_an_error_not_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 2);
    let (job, plan) = two_segments(dir.path(), s, 179);
    let view = StitchedView::new(&plan, &job, s, None, &facts()).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(job.join("000002.wav"))
        .unwrap();
    f.set_len(100).unwrap();
    let mut sink = Vec::new();
    let e = view
        .open_at(&job, 0)
        .unwrap()
        .read_to_end(&mut sink)
        .unwrap_err();
    assert!(e.to_string().contains("000002.wav"), "{e}");
}

#[test]
fn a_written_view_is_the_pipelines_file_peaks_and_report() {
    // `record`'s WAV written from the view: same bytes, peaks and report as the pipeline.
    for (format, channels, select) in [
        (SampleFormat::S16Le, 2, None),
        (SampleFormat::S24Le, 3, Some(vec![2u16, 0])),
        (SampleFormat::S32Le, 1, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(format, channels);
        let (job, plan) = two_segments(dir.path(), s, 101);
        let req = wav_request(&plan, s, select.as_deref());
        let wav = req.codec;
        let (p_wav, p_peaks) = (dir.path().join("p.wav"), dir.path().join("p.json"));
        let want = pipeline::render(&req, &p_wav, Some(&p_peaks), &mut |_, _| {}).unwrap();
        let view = StitchedView::new(&plan, &job, s, select.as_deref(), &facts()).unwrap();
        let (v_wav, v_peaks) = (job.join("recording.wav"), job.join("peaks.json"));
        let got = crate::render::view_file::write(&view, wav, &job, &v_wav, &v_peaks).unwrap();
        let case = format!("{format:?} {channels} {select:?}");
        let written = std::fs::read(&v_wav).unwrap();
        assert!(written == read_view(&view, &job, 0), "{case}");
        assert_eq!(
            std::fs::read(&v_peaks).unwrap(),
            std::fs::read(&p_peaks).unwrap(),
            "{case}"
        );
        if format == SampleFormat::S32Le {
            // The pipeline passes S32 through f32 (24 bits); the view copies it exactly.
            let exact = pipeline::hash_file(&v_wav).unwrap().0;
            assert_eq!(
                got,
                RenderReport {
                    sha256: exact,
                    ..want
                },
                "{case}"
            );
        } else {
            assert!(written == std::fs::read(&p_wav).unwrap(), "{case}");
            assert_eq!(got, want, "{case}");
        }
        assert!(!job.join(".recording.wav.partial").exists(), "{case}");
    }
}
