//! MP3 on two cores: the render is N spans (here four, `EDGEREC_MP3_SPAN_SECONDS`)
//! encoded two at a time and joined. The joined file
//! is checked by tools nobody here wrote (sox makes the input, ffmpeg/ffprobe read the
//! output) against a one-core render of the same input: same length, no decoder error,
//! and around the join no more error against the source than anywhere else. The input
//! is pure tones, where a click, a lost granule or a frame out of place shows as a large
//! error at the join.

mod common;

use common::{ffprobe_duration, tool};

use std::path::Path;
use std::process::Command;

const RATE: usize = 48_000;
const SECONDS: usize = 70;
/// The longest span asked: 70 s gives four spans of 17.5 s, three joins.
const SPAN_SECONDS: &str = "20";
const SPANS: usize = 4;

/// Left: a 440 Hz tone; right: a 200 Hz → 3 kHz sweep under a tremolo (bitrates and
/// block types move). One channel when `channels` is 1.
fn input(dir: &Path, channels: u16) -> std::path::PathBuf {
    let (l, r, out) = (
        dir.join("l.wav"),
        dir.join("r.wav"),
        dir.join(format!("in{channels}.wav")),
    );
    let secs = SECONDS.to_string();
    tool(
        Command::new("sox")
            .args(["-n", "-r", "48000", "-c", "1"])
            .arg(&l)
            .args(["synth", &secs, "sine", "440", "vol", "0.5"]),
    );
    if channels == 1 {
        tool(Command::new("sox").arg(&l).args(["-b", "16"]).arg(&out));
        return out;
    }
    tool(
        Command::new("sox")
            .args(["-n", "-r", "48000", "-c", "1"])
            .arg(&r)
            .args([
                "synth", &secs, "sine", "200:3000", "vol", "0.4", "tremolo", "4", "90",
            ]),
    );
    tool(
        Command::new("sox")
            .arg("-M")
            .arg(&l)
            .arg(&r)
            .args(["-b", "16"])
            .arg(&out),
    );
    out
}

fn decode(path: &Path, format: &str) -> Vec<f32> {
    let raw = tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "f32le", "-acodec", "pcm_f32le"])
            .args(format.split_whitespace())
            .arg("-"),
    );
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Renders on `cores` cores; its log (debug level).
fn render(input: &Path, out: &Path, cores: &str, args: &[&str]) -> String {
    let done = common::run(
        common::edgerec()
            .env("EDGEREC_RENDER_CORES", cores)
            .env("EDGEREC_MP3_SPAN_SECONDS", SPAN_SECONDS)
            .env("EDGEREC_LOG", "debug")
            .arg("render")
            .arg(input)
            .args(["--codec", "mp3"])
            .args(args)
            .arg("--out")
            .arg(out),
    );
    let log = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{log}");
    log
}

/// Max |a - b| over each 10 ms window.
fn window_errors(a: &[f32], b: &[f32], channels: usize) -> Vec<f32> {
    let w = RATE / 100 * channels;
    a.chunks(w)
        .zip(b.chunks(w))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        })
        .collect()
}

#[test]
fn spans_join_without_a_click_and_match_one_core() {
    let dir = tempfile::tempdir().unwrap();
    for (channels, args) in [
        (2u16, &["--vbr", "--bitrate", "190"][..]),
        (2, &["--bitrate", "128"][..]),
        (1, &["--bitrate", "64"][..]),
        // V9: LAME now keeps 48 kHz (MPEG-1 frames), so it joins too.
        (1, &["--vbr", "--bitrate", "65"][..]),
    ] {
        let src_path = input(dir.path(), channels);
        let ch = usize::from(channels);
        let src = decode(&src_path, "");
        let (one, two) = (dir.path().join("one.mp3"), dir.path().join("two.mp3"));
        let case = format!("{channels} ch {args:?}");
        assert!(
            !render(&src_path, &one, "1", args).contains("joined at frame"),
            "{case}"
        );
        let log = render(&src_path, &two, "2", args);
        // The join may give one core's very bytes (the encoders' states met), so the log
        // says each was made.
        assert_eq!(
            log.matches("mp3 on two cores: joined at frame").count(),
            SPANS - 1,
            "{case}: {log}"
        );
        // ffmpeg reads every frame without a complaint.
        let errors = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&two)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            errors.status.success() && errors.stderr.is_empty(),
            "{case}: {}",
            String::from_utf8_lossy(&errors.stderr)
        );
        // The Xing/LAME tag's length: ffprobe's duration within a frame of the one-core
        // file's (ffprobe counts whole frames less LAME's delay: 70.032 s for 70 s).
        let frame = 1152.0 / RATE as f64;
        let (d1, d2) = (ffprobe_duration(&one), ffprobe_duration(&two));
        eprintln!("{case}: ffprobe {d2} s, one core {d1} s");
        assert!((d2 - SECONDS as f64).abs() <= 2.0 * frame, "{case}: {d2} s");
        assert!((d2 - d1).abs() <= frame, "{case}: {d2} s vs {d1} s");
        let (dec1, dec2) = (decode(&one, ""), decode(&two, ""));
        assert_eq!(
            dec2.len(),
            src.len(),
            "{case}: gapless length = the input's"
        );
        assert_eq!(dec1.len(), dec2.len(), "{case}");
        // Error against the source, per 10 ms: within 1.5 s of each span boundary (the
        // join candidates span 0.8 s there) against the rest of the same file, past the
        // first and before the last second.
        let e2 = window_errors(&src, &dec2, ch);
        let e1 = window_errors(&src, &dec1, ch);
        let worst = |e: &[f32], r: &[std::ops::Range<usize>]| {
            r.iter()
                .flat_map(|r| e[r.clone()].iter().copied())
                .fold(0.0, f32::max)
        };
        let near: Vec<_> = (1..SPANS)
            .map(|k| e2.len() * k / SPANS)
            .map(|at| at - 150..at + 150)
            .collect();
        let mut rest = Vec::new();
        let mut from = 100;
        for r in &near {
            rest.push(from..r.start);
            from = r.end;
        }
        rest.push(from..e2.len() - 100);
        let elsewhere = worst(&e2, &rest);
        for (k, r) in near.iter().enumerate() {
            let r = std::slice::from_ref(r);
            let (at_join, one_there) = (worst(&e2, r), worst(&e1, r));
            eprintln!(
                "{case}: join {k}: max error {at_join:.4} (one core {one_there:.4}), elsewhere {elsewhere:.4}"
            );
            assert!(
                at_join <= 1.5 * elsewhere,
                "{case}: a click at join {k}: {at_join} vs {elsewhere}"
            );
            assert!(at_join <= 1.5 * one_there.max(elsewhere), "{case}");
        }
        assert!(
            elsewhere < 0.2,
            "{case}: the codec itself is off: {elsewhere}"
        );
    }
}
