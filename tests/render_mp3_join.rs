//! MP3 on two cores: the render is two spans encoded at once and joined. The joined file
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
fn two_spans_join_without_a_click_and_match_one_core() {
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
        // says whether it was made.
        assert!(
            log.contains("mp3 on two cores: joined at frame"),
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
        // The Xing/LAME tag's length: ffprobe's duration as for the one-core file.
        let (d1, d2) = (ffprobe_duration(&one), ffprobe_duration(&two));
        assert!(
            (d2 - SECONDS as f64).abs() <= 2.0 * 1152.0 / RATE as f64,
            "{case}: {d2} s"
        );
        assert!(
            (d2 - d1).abs() <= 1152.0 / RATE as f64,
            "{case}: {d2} s vs {d1} s"
        );
        let (dec1, dec2) = (decode(&one, ""), decode(&two, ""));
        assert_eq!(
            dec2.len(),
            src.len(),
            "{case}: gapless length = the input's"
        );
        assert_eq!(dec1.len(), dec2.len(), "{case}");
        // Error against the source, per 10 ms: around the middle (the join candidates
        // span 0.8 s there) against the rest of the same file, past the first second.
        let e2 = window_errors(&src, &dec2, ch);
        let e1 = window_errors(&src, &dec1, ch);
        let mid = e2.len() / 2;
        let near = mid - 150..mid + 150;
        let worst = |e: &[f32], r: std::ops::Range<usize>| e[r].iter().copied().fold(0.0, f32::max);
        let elsewhere = worst(&e2, 100..near.start).max(worst(&e2, near.end..e2.len() - 100));
        let (at_join, one_there) = (worst(&e2, near.clone()), worst(&e1, near.clone()));
        eprintln!(
            "{case}: max error near the join {at_join:.4} (one core {one_there:.4}), elsewhere {elsewhere:.4}"
        );
        assert!(
            at_join <= 1.5 * elsewhere,
            "{case}: a click at the join: {at_join} vs {elsewhere}"
        );
        assert!(at_join <= 1.5 * one_there.max(elsewhere), "{case}");
        assert!(
            elsewhere < 0.2,
            "{case}: the codec itself is off: {elsewhere}"
        );
    }
}
