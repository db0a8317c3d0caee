//! Rendering checked by tools nobody here wrote: `flac -t`, `ffprobe`, `ffmpeg` (decoding),
//! `sox` and `ffmpeg` (writing a `bext` chunk our parser must read).

mod common;

use common::tool;

use std::path::{Path, PathBuf};
use std::process::Command;

use edgerec::controller::protocol::{ChannelMap, ChannelMapEntry};
use edgerec::core::format::{SampleFormat, StreamSpec};
use edgerec::core::timeline::Piece;
use edgerec::render::channel_map::{self, Mix};
use edgerec::render::codec::{self, Facts, wav::read_bext};
use edgerec::render::pipeline::{self, RenderReport, RenderRequest};
use edgerec::segment::file::SegmentFile;

fn spec(format: SampleFormat, rate: u32, channels: u16) -> StreamSpec {
    StreamSpec {
        format,
        rate,
        channels,
    }
}

fn segment(dir: &Path, name: &str, s: StreamSpec, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut seg = SegmentFile::create(&path, s).unwrap();
    seg.write_frames(bytes).unwrap();
    seg.close().unwrap();
    path
}

/// Speech-like, deterministic: a few wandering partials under a syllable envelope, plus
/// a little noise. Channel `c` is shifted in pitch so channels differ.
fn speechy(frames: usize, channels: usize, rate: f32) -> Vec<f32> {
    let mut seed = 0x1234_5678u32;
    let mut out = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        let t = i as f32 / rate;
        let env = (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin()).powi(2);
        for c in 0..channels {
            let f0 = 140.0 + 30.0 * (t * 0.7).sin() + 25.0 * c as f32;
            let tone: f32 = (1..=5)
                .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                .sum();
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / 16_777_216.0 - 0.5;
            out.push(0.3 * env * tone / 2.3 + 0.01 * noise);
        }
    }
    out
}

fn s16_bytes(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&x| ((x * 32_767.0).round() as i16).to_le_bytes())
        .collect()
}

fn request(plan: Vec<Piece<PathBuf>>, s: StreamSpec, codec_name: &str) -> RenderRequest {
    RenderRequest {
        plan,
        spec: s,
        mix: Mix::identity(s.channels),
        codec: codec::codec(codec_name).unwrap(),
        bits: None,
        float: false,
        rate: None,
        bitrate_kbps: None,
        vbr: false,
        facts: Facts {
            job_id: "job-1".into(),
            recording_id: "rec-1".into(),
            started_at_ms: Some(1_764_547_200_000 + 3_600_000 * 9 + 30_000), // 09:00:30 UTC
        },
    }
}

/// MP3 of all of `seg`.
fn mp3_request(
    seg: &Path,
    frames: usize,
    s: StreamSpec,
    vbr: bool,
    kbps: Option<u32>,
) -> RenderRequest {
    let piece = Piece::Segment {
        file: seg.to_path_buf(),
        skip: 0,
        frames: frames as u64,
    };
    let mut req = request(vec![piece], s, "mp3");
    (req.vbr, req.bitrate_kbps) = (vbr, kbps);
    req
}

fn render(req: &RenderRequest, out: &Path) -> RenderReport {
    pipeline::render(req, out, None, &mut |_, _| {}).unwrap()
}

#[derive(Debug)]
struct Probe {
    codec: String,
    rate: u32,
    channels: u16,
    duration: f64,
}

fn ffprobe(path: &Path) -> Probe {
    let out = tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .arg("stream=codec_name,sample_rate,channels,duration:format=duration")
            .args(["-of", "json"])
            .arg(path),
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let s = &v["streams"][0];
    let duration = s["duration"]
        .as_str()
        .or(v["format"]["duration"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    Probe {
        codec: s["codec_name"].as_str().unwrap().to_string(),
        rate: s["sample_rate"].as_str().unwrap().parse().unwrap(),
        channels: s["channels"].as_u64().unwrap() as u16,
        duration,
    }
}

/// Decoded by ffmpeg as interleaved f32.
fn ffmpeg_f32(path: &Path) -> Vec<f32> {
    let raw = tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "f32le", "-acodec", "pcm_f32le", "-"]),
    );
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Decoded by ffmpeg as interleaved i32 (integer sources keep every bit, left-justified).
fn ffmpeg_s32(path: &Path) -> Vec<i32> {
    let raw = tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "s32le", "-acodec", "pcm_s32le", "-"]),
    );
    raw.chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn flac_passes_flac_t_and_decodes_to_exactly_the_source_with_gaps() {
    let dir = tempfile::tempdir().unwrap();
    for (format, bits) in [(SampleFormat::S16Le, 16u32), (SampleFormat::S24Le, 24)] {
        let s = spec(format, 48_000, 2);
        let frames = 48_000 * 3 + 77;
        let signal = speechy(frames, 2, 48_000.0);
        let ints: Vec<i32> = signal
            .iter()
            .map(|&x| (x * ((1 << (bits - 1)) as f32 - 1.0)) as i32)
            .collect();
        let bytes: Vec<u8> = match format {
            SampleFormat::S16Le => ints
                .iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect(),
            _ => ints.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let seg = segment(dir.path(), &format!("{bits}.wav"), s, &bytes);
        let plan = vec![
            Piece::Silence { frames: 1000 },
            Piece::Segment {
                file: seg.clone(),
                skip: 0,
                frames: 48_000,
            },
            Piece::Silence {
                frames: 4096 * 3 + 5,
            },
            Piece::Segment {
                file: seg,
                skip: 48_000,
                frames: frames as u64 - 48_000,
            },
        ];
        let total = 1000 + 4096 * 3 + 5 + frames;
        let out = dir.path().join(format!("out{bits}.flac"));
        let report = render(&request(plan, s, "flac"), &out);
        assert_eq!((report.frames, report.bits), (total as u64, bits as u16));
        tool(Command::new("flac").args(["-t", "-s"]).arg(&out));
        // libFLAC seeks it (a short last block must not make the stream look variable).
        let tail = dir.path().join(format!("tail{bits}.wav"));
        tool(
            Command::new("flac")
                .args(["-d", "-s", "-f", "--skip=48000", "-o"])
                .arg(&tail)
                .arg(&out),
        );
        let tail_frames = hound::WavReader::open(&tail).unwrap().duration() as usize;
        assert_eq!(tail_frames, total - 48_000, "frames after a seek to 1 s");
        let p = ffprobe(&out);
        assert_eq!((p.codec.as_str(), p.rate, p.channels), ("flac", 48_000, 2));
        assert!(
            (p.duration - total as f64 / 48_000.0).abs() <= 1.0 / 48_000.0,
            "{p:?}"
        );
        let mut want = vec![0i32; 2000];
        want.extend(&ints[..96_000]);
        want.extend(vec![0; 2 * (4096 * 3 + 5)]);
        want.extend(&ints[96_000..]);
        let got: Vec<i32> = ffmpeg_s32(&out)
            .into_iter()
            .map(|v| v >> (32 - bits))
            .collect();
        assert!(
            got == want,
            "{bits}-bit FLAC decodes to the source samples exactly"
        );
        assert_eq!(
            report.sha256,
            common::controller::sha256_file(&out).trim_start_matches("sha256:")
        );
    }
}

/// The lag (0..max) at which `b` best matches `a`, and the correlation there.
fn best_correlation(a: &[f32], b: &[f32], max_lag: usize) -> (usize, f64) {
    let n = a.len().min(b.len()).saturating_sub(max_lag);
    (0..max_lag)
        .map(|lag| {
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for i in 0..n {
                let (x, y) = (f64::from(a[i]), f64::from(b[i + lag]));
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            (lag, ab / (aa.sqrt() * bb.sqrt()).max(1e-12))
        })
        .fold((0, -1.0), |best, c| if c.1 > best.1 { c } else { best })
}

#[test]
fn mp3_vbr_and_cbr_decode_close_to_the_source_with_the_right_length() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 48_000, 2);
    let frames = 48_000 * 4;
    let signal = speechy(frames, 2, 48_000.0);
    let seg = segment(dir.path(), "a.wav", s, &s16_bytes(&signal));
    for (vbr, kbps) in [(true, Some(190)), (false, None)] {
        let req = mp3_request(&seg, frames, s, vbr, kbps);
        let out = dir.path().join(format!("out-{vbr}.mp3"));
        let report = render(&req, &out);
        assert_eq!(report.content_type, "audio/mpeg");
        let p = ffprobe(&out);
        assert_eq!((p.codec.as_str(), p.rate, p.channels), ("mp3", 48_000, 2));
        // ffprobe counts LAME's encoder delay and padding (1105 + up to 1152 samples) as
        // it does for `lame`'s own files; the decoded length below is the gapless one.
        assert!(
            (p.duration - 4.0).abs() <= 2.0 * 1152.0 / 48_000.0,
            "±1 MP3 frame + delay: {p:?}"
        );
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..3], b"ID3");
        let tag_end = 10
            + bytes[6..10]
                .iter()
                .fold(0usize, |a, &b| a << 7 | b as usize);
        let first_frame = &bytes[tag_end..tag_end + 400];
        assert!(
            first_frame.windows(4).any(|w| w == b"Xing" || w == b"Info"),
            "a Xing/LAME tag frame follows the ID3 tag"
        );
        let decoded = ffmpeg_f32(&out);
        let left_src: Vec<f32> = signal.iter().step_by(2).copied().collect();
        let left_dec: Vec<f32> = decoded.iter().step_by(2).copied().collect();
        assert!(
            (left_dec.len() as i64 - frames as i64).abs() <= 1152,
            "±1 MP3 frame decoded: {}",
            left_dec.len()
        );
        let (lag, r) = best_correlation(&left_src[4800..], &left_dec[4800..], 2400);
        eprintln!(
            "mp3 vbr={vbr}: lag {lag} frames, correlation {r:.4}, {} bytes",
            bytes.len()
        );
        assert!(r > 0.98, "correlation {r} at lag {lag}");
        let text = String::from_utf8_lossy(&bytes[..tag_end]);
        assert!(
            text.contains("edgerec job job-1 recording rec-1"),
            "ID3v2 TIT2"
        );
    }
}

#[test]
fn mp3_low_vbr_presets_keep_the_input_rate_the_report_names() {
    // LAME left to itself encodes V7-V9 at 48 kHz as 22.05 kHz MPEG-2.
    let dir = tempfile::tempdir().unwrap();
    for (rate, channels) in [(48_000u32, 1u16), (48_000, 2), (44_100, 2)] {
        let s = spec(SampleFormat::S16Le, rate, channels);
        let frames = rate as usize * 2;
        let signal = speechy(frames, channels as usize, rate as f32);
        let name = format!("low-{rate}-{channels}.wav");
        let seg = segment(dir.path(), &name, s, &s16_bytes(&signal));
        for kbps in [100, 85, 65] {
            let req = mp3_request(&seg, frames, s, true, Some(kbps));
            let out = dir.path().join(format!("low-{rate}-{channels}-{kbps}.mp3"));
            let report = render(&req, &out);
            let p = ffprobe(&out);
            assert_eq!(
                (p.rate, p.channels, report.rate, report.frames),
                (rate, channels, rate, frames as u64),
                "V at {kbps} kbps: {p:?}"
            );
            assert!(
                (p.duration - 2.0).abs() <= 2.0 * 1152.0 / rate as f64,
                "{p:?}"
            );
        }
    }
}

#[test]
fn wav_bext_reads_back_with_the_time_reference_at_the_output_rate() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S24Le3, 48_000, 2);
    let seg = segment(dir.path(), "a.wav", s, &vec![1u8; 6 * 4800]);
    let mut req = request(
        vec![Piece::Segment {
            file: seg,
            skip: 0,
            frames: 4800,
        }],
        s,
        "wav",
    );
    req.rate = Some(44_100);
    let out = dir.path().join("out.wav");
    let report = render(&req, &out);
    let p = ffprobe(&out);
    assert_eq!(
        (p.codec.as_str(), p.rate, p.channels),
        ("pcm_s24le", 44_100, 2)
    );
    assert_eq!(report.frames, 4410);
    let bext = read_bext(&out).unwrap().expect("a bext chunk");
    assert_eq!(bext.description, "edgerec job job-1 recording rec-1");
    assert_eq!(
        (
            bext.origination_date.as_str(),
            bext.origination_time.as_str()
        ),
        ("2025-12-01", "09:00:30")
    );
    assert_eq!(
        bext.time_reference,
        (9 * 3600 + 30) * 44_100,
        "samples since midnight at the file's rate"
    );
    // sox reads it as an ordinary WAV of the right length.
    let soxi = tool(Command::new("soxi").args(["-s"]).arg(&out));
    assert_eq!(String::from_utf8_lossy(&soxi).trim(), "4410");
}

#[test]
fn our_bext_parser_reads_what_ffmpeg_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ffmpeg.wav");
    tool(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "anullsrc=r=48000:cl=stereo",
                "-t",
                "0.5",
                "-write_bext",
                "1",
            ])
            .args([
                "-metadata",
                "description=written by ffmpeg",
                "-metadata",
                "originator=ffm",
                "-metadata",
                "origination_date=2024-02-29",
            ])
            .args([
                "-metadata",
                "origination_time=23:59:58",
                "-metadata",
                "time_reference=4147200000",
            ])
            .arg(&out),
    );
    let b = read_bext(&out).unwrap().expect("ffmpeg wrote a bext chunk");
    assert_eq!(b.description, "written by ffmpeg");
    assert_eq!(b.originator, "ffm");
    assert_eq!(b.origination_date, "2024-02-29");
    assert_eq!(b.origination_time, "23:59:58");
    assert_eq!(b.time_reference, 4_147_200_000);
    // And a file without one says so.
    let plain = dir.path().join("plain.wav");
    tool(
        Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1"])
            .arg(&plain)
            .args(["trim", "0", "0.1"]),
    );
    assert_eq!(read_bext(&plain).unwrap(), None);
}

/// A 4-channel capture where channel k (1-based) is the constant k/8, as float.
fn four_channel_capture(dir: &Path, frames: usize) -> (Vec<Piece<PathBuf>>, StreamSpec) {
    let s = spec(SampleFormat::FloatLe, 48_000, 4);
    let bytes: Vec<u8> = (0..frames * 4)
        .flat_map(|i| ((i % 4 + 1) as f32 / 8.0).to_le_bytes())
        .collect();
    let seg = segment(dir, "four.wav", s, &bytes);
    (
        vec![Piece::Segment {
            file: seg,
            skip: 0,
            frames: frames as u64,
        }],
        s,
    )
}

fn entry(source: u16, output: Option<u16>) -> ChannelMapEntry {
    ChannelMapEntry {
        included: true,
        label: String::new(),
        output_channel_index: output,
        source_channel_index: source,
    }
}

#[test]
fn channel_maps_put_each_channel_where_the_job_says() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, s) = four_channel_capture(dir.path(), 1000);
    let map = |mode: &str, entries: Vec<ChannelMapEntry>| ChannelMap {
        channel_mode: mode.into(),
        entries,
        ..Default::default()
    };
    // (case, selection, map, expected per-channel values in units of 1/8)
    type Case = (&'static str, Option<Vec<u16>>, Option<ChannelMap>, Vec<f32>);
    let cases: Vec<Case> = vec![
        (
            "selection [3,1] stereo",
            Some(vec![3, 1]),
            None,
            vec![3.0, 1.0],
        ),
        (
            "mono of 1 and 4",
            None,
            Some(map("mono", vec![entry(1, None), entry(4, None)])),
            vec![2.5],
        ),
        (
            "mono_to_stereo_mix",
            None,
            Some(map(
                "mono_to_stereo_mix",
                vec![entry(2, None), entry(3, None)],
            )),
            vec![2.5, 2.5],
        ),
        (
            "stereo pinned",
            None,
            Some(map("stereo", vec![entry(1, Some(2)), entry(4, Some(1))])),
            vec![4.0, 1.0],
        ),
        (
            "multichannel",
            None,
            Some(map(
                "multichannel",
                vec![entry(2, Some(3)), entry(4, Some(1)), entry(1, Some(2))],
            )),
            vec![4.0, 1.0, 2.0],
        ),
    ];
    for (name, sel, m, want) in cases {
        let mut req = request(plan.clone(), s, "wav");
        req.mix = channel_map::resolve(4, sel.as_deref(), m.as_ref()).unwrap();
        let out = dir.path().join("map.wav");
        render(&req, &out);
        let p = ffprobe(&out);
        assert_eq!(p.channels as usize, want.len(), "{name}");
        let got = ffmpeg_f32(&out);
        assert_eq!(got.len(), 1000 * want.len(), "{name}");
        for (i, x) in got.iter().enumerate() {
            assert_eq!(*x, want[i % want.len()] / 8.0, "{name}: sample {i}");
        }
    }
    // A 16-bit render of selection [3,1]: channel 3 left, 1 right, through the quantizer.
    let mut req = request(plan, s, "flac");
    req.mix = channel_map::resolve(4, Some(&[3, 1]), None).unwrap();
    let out = dir.path().join("sel.flac");
    render(&req, &out);
    let got = ffmpeg_s32(&out);
    // Float to 16 bits is dithered: within one LSB.
    let near = |v: i32, want: i32| ((v >> 16) - want).abs() <= 1;
    assert!(
        got.chunks(2)
            .all(|f| near(f[0], 12_288) && near(f[1], 4096)),
        "ch3 left, ch1 right"
    );
}

#[test]
fn a_map_naming_a_missing_channel_fails_with_its_number() {
    let err = channel_map::resolve(2, Some(&[1, 3]), None).unwrap_err();
    assert!(err.to_string().contains("channel 3"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("in.wav");
    tool(
        Command::new("sox")
            .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
            .arg(&wav)
            .args(["synth", "0.2", "sine", "440"]),
    );
    let out = common::run(
        common::edgerec()
            .arg("render")
            .arg(&wav)
            .args(["--map", "2,5", "--codec", "flac"]),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel 5"));
}

#[test]
fn resampling_48k_to_44k1_gives_exactly_rate_times_duration_frames() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 48_000, 2);
    let signal = speechy(48_000 * 3, 2, 48_000.0);
    let seg = segment(dir.path(), "a.wav", s, &s16_bytes(&signal));
    let plan = vec![
        Piece::Segment {
            file: seg.clone(),
            skip: 0,
            frames: 48_000,
        },
        Piece::Silence { frames: 48_000 },
        Piece::Segment {
            file: seg,
            skip: 48_000,
            frames: 48_000,
        },
    ];
    for codec in ["wav", "flac"] {
        let mut req = request(plan.clone(), s, codec);
        req.rate = Some(44_100);
        let out = dir.path().join(format!("rs.{codec}"));
        let report = render(&req, &out);
        assert_eq!(report.frames, 44_100 * 3, "{codec}");
        let p = ffprobe(&out);
        assert_eq!(p.rate, 44_100);
        assert!((p.duration - 3.0).abs() < 0.5 / 44_100.0, "{codec}: {p:?}");
        let decoded = ffmpeg_f32(&out);
        assert_eq!(decoded.len(), 44_100 * 3 * 2, "{codec}");
        // The gap stays silent (the resampler's ringing dies within a few ms).
        let gap = &decoded[2 * (44_100 + 441)..2 * (2 * 44_100 - 441)];
        assert!(gap.iter().all(|x| x.abs() < 1e-3), "{codec}: gap is silent");
    }
}

#[test]
fn record_renders_the_asked_codec_and_render_renders_it_again() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = common::run(
        common::edgerec()
            .args([
                "record",
                "--backend",
                "synth",
                "--device",
                "sine:440",
                "--duration",
                "2s",
            ])
            .args(["--codec", "flac", "--map", "2,1", "--out"])
            .arg(out_dir.path()),
    );
    assert!(out.status.success());
    let job = common::only_job(out_dir.path());
    let rec = job.join("recording.flac");
    tool(Command::new("flac").args(["-t", "-s"]).arg(&rec));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("render.json")).unwrap()).unwrap();
    assert_eq!(sidecar["report"]["contentType"], "audio/flac");
    assert_eq!(sidecar["fileName"], "recording.flac");
    assert!(job.join("peaks.json").exists());
    let d = edgerec::render::job::deliverable(&job).unwrap();
    assert_eq!(
        (d.path, d.content_type.as_str()),
        (rec.clone(), "audio/flac")
    );
    assert!(
        (d.duration_seconds - 2.0).abs() < 0.05,
        "{}",
        d.duration_seconds
    );

    let mp3 = out_dir.path().join("again.mp3");
    let again = common::run(
        common::edgerec()
            .arg("render")
            .arg(out_dir.path())
            .args([
                "--codec",
                "mp3",
                "--vbr",
                "--bitrate",
                "130",
                "--channels",
                "mono",
                "--rate",
                "44100",
                "--out",
            ])
            .arg(&mp3),
    );
    assert!(again.status.success());
    let p = ffprobe(&mp3);
    assert_eq!((p.codec.as_str(), p.rate, p.channels), ("mp3", 44_100, 1));
    let decoded = ffmpeg_f32(&mp3).len() as f64 / 44_100.0;
    assert!(
        (decoded - ffprobe(&rec).duration).abs() <= 1152.0 / 44_100.0,
        "{decoded} s"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("render: 100%"),
        "progress lines off a TTY"
    );
}

#[test]
fn render_threads_run_below_capture_priority() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(SampleFormat::S16Le, 48_000, 2);
    let seg = segment(dir.path(), "a.wav", s, &vec![0u8; 4 * 48_000]);
    let req = request(
        vec![Piece::Segment {
            file: seg,
            skip: 0,
            frames: 48_000,
        }],
        s,
        "flac",
    );
    let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let mut seen = Vec::new();
    // The progress callback runs on the render thread: read that thread's nice value.
    pipeline::render(&req, &dir.path().join("n.flac"), None, &mut |_, _| {
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        seen.push(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) });
    })
    .unwrap();
    assert!(!seen.is_empty());
    let want = (mine + pipeline::RENDER_NICE).min(19);
    assert!(
        seen.iter().all(|&n| n == want),
        "{seen:?}, caller at {mine}"
    );
    assert_eq!(
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
        mine,
        "the caller's priority is untouched"
    );
}
