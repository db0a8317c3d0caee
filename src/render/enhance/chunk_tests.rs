use super::*;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::timeline::Piece;
use crate::render::codec::Facts;
use crate::render::job::OutputOptions;
use crate::segment::file::SegmentFile;

/// 44.1 kHz, so the chain's resamplers (to 48 kHz and back) cross the edges too.
const SPEC: StreamSpec = StreamSpec {
    format: SampleFormat::S16Le,
    rate: 44_100,
    channels: 1,
};
const RATE: u64 = 44_100;
const CHUNKS: u64 = 3;

/// A segment of `CHUNKS` seconds: a 440 Hz tone at 0.3 (0.6 from 1.5 s to 2 s, so chunk
/// 1 is louder than the others) in white noise at 0.02.
fn tone_in_noise(dir: &Path) -> Vec<Piece<std::path::PathBuf>> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let bytes: Vec<u8> = (0..CHUNKS * RATE)
        .flat_map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = 0.02 * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0);
            let t = i as f64 / RATE as f64;
            let amp = if (1.5..2.0).contains(&t) { 0.6 } else { 0.3 };
            let tone = amp * (std::f64::consts::TAU * 440.0 * t).sin();
            (((noise + tone) * 32767.0).round() as i16).to_le_bytes()
        })
        .collect();
    let file = dir.join("seg.wav");
    let mut seg = SegmentFile::create(&file, SPEC).unwrap();
    seg.write_frames(&bytes).unwrap();
    seg.close().unwrap();
    vec![Piece::Segment {
        file,
        skip: 0,
        frames: CHUNKS * RATE,
    }]
}

fn request(dir: &Path) -> RenderRequest {
    let options = OutputOptions::from_command_json(r#"{"outputCodec": "wav"}"#);
    options
        .request(tone_in_noise(dir), SPEC, Facts::default())
        .unwrap()
}

fn enhancement(json: &str) -> Enhancement {
    Enhancement::from_value(&serde_json::from_str(json).unwrap())
        .unwrap()
        .unwrap()
}

fn samples(path: &Path) -> Vec<f64> {
    let mut r = hound::WavReader::open(path).unwrap();
    r.samples::<i16>()
        .map(|s| f64::from(s.unwrap()) / 32768.0)
        .collect()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|s| s * s).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Renders every chunk in order, as the capture role does.
fn render_all(req: &RenderRequest, asked: &Asked, dir: &Path) -> Vec<RenderedChunk> {
    let mut made: Vec<RenderedChunk> = Vec::new();
    for k in 0..CHUNKS {
        let part = Part {
            index: k as usize,
            span: (k * RATE, (k + 1) * RATE),
            delivered_name: "talk.wav",
            job_dir: dir,
            before: made.last().map(|m| &m.chunk),
        };
        made.push(render(req, asked, &part).unwrap());
    }
    made
}

#[test]
fn enhanced_chunks_joined_match_one_pass_across_their_edges() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    // No loudness stage: a gain per chunk would differ from the whole file's by design.
    let e = enhancement(r#"{"loudnorm": {"enabled": false}}"#);
    let whole = dir.path().join("whole.wav");
    crate::render::enhance::render(&req, &e, &whole).unwrap();
    let whole = samples(&whole);
    let made = render_all(&req, &Ok(Some(e)), dir.path());
    let mut joined = Vec::new();
    for (k, m) in made.iter().enumerate() {
        assert_eq!(m.chunk.file, enhanced_file(k, "wav"));
        assert_eq!(m.chunk.file_name, format!("talk-{k:03}.wav"));
        assert_eq!(m.chunk.raw_file, Some(chunks::chunk_file(k, "wav")));
        assert_eq!(m.chunk.enhanced_gain, Some(1.0));
        assert_eq!(m.chunk.enhancement_error, None);
        let raw = m.raw.as_ref().expect("keepRaw");
        assert_eq!((m.primary.frames, raw.frames), (RATE, RATE));
        assert!((m.chunk.duration_seconds - 1.0).abs() < 1e-9);
        let own = samples(&dir.path().join(&m.chunk.file));
        assert_eq!(own.len() as u64, RATE, "chunk {k}");
        joined.extend(own);
    }
    assert_eq!(joined.len(), whole.len());
    // 20 ms either side of each edge: the chunks agree with the one pass (dither and
    // RNNoise's state after a second's pre-roll differ a little), no reset, no click.
    for edge in 1..CHUNKS {
        let b = (edge * RATE) as usize;
        let around = b - 882..b + 882;
        let diff: Vec<f64> = around.clone().map(|i| joined[i] - whole[i]).collect();
        let ratio = rms(&diff) / rms(&whole[around]);
        eprintln!("edge {edge}: difference / signal {ratio:.4}");
        assert!(ratio < 0.05, "edge {edge}: {ratio}");
    }
}

#[test]
fn chunks_of_options_that_cannot_be_used_go_as_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    let asked: Asked = Err("enhancement.gate.thresholdDb: out of range".into());
    for (k, m) in render_all(&req, &asked, dir.path()).into_iter().enumerate() {
        assert_eq!(m.chunk.file, chunks::chunk_file(k, "wav"));
        assert_eq!((m.chunk.raw_file, m.chunk.enhanced_gain), (None, None));
        // The job's end says why, once for the job (`enhanced.json`).
        assert_eq!(m.chunk.enhancement_error, None);
        assert_eq!(m.primary.frames, RATE);
        assert!(m.raw.is_none());
    }
}

/// A chunk whose enhanced render fails (here its file cannot be made) is delivered as
/// rendered, with the reason for its own warning.
#[test]
fn a_chunk_whose_enhancement_fails_goes_as_rendered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    // A directory where chunk 1's enhanced file would go: its render cannot be renamed.
    std::fs::create_dir_all(dir.path().join(enhanced_file(1, "wav"))).unwrap();
    let e = enhancement(r#"{"loudnorm": {"enabled": false}}"#);
    let made = render_all(&req, &Ok(Some(e)), dir.path());
    let failed = &made[1].chunk;
    assert_eq!(failed.file, chunks::chunk_file(1, "wav"));
    assert_eq!(
        (failed.raw_file.as_ref(), failed.enhanced_gain),
        (None, None)
    );
    let why = failed.enhancement_error.as_deref().unwrap();
    assert!(why.contains("chunk 1"), "{why}");
    assert_eq!(made[1].primary.frames, RATE);
    for k in [0, 2] {
        assert_eq!(made[k].chunk.file, enhanced_file(k, "wav"));
        assert_eq!(made[k].chunk.enhancement_error, None);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path().join(chunks::CHUNK_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Chunk 2 follows a chunk with no gain of its own: it starts at its own.
    assert!(made[2].chunk.enhanced_gain.is_some());
}

#[test]
fn without_keep_raw_only_the_enhanced_chunk_is_written_and_loudness_is_per_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    let e = enhancement(r#"{"keepRaw": false, "loudnorm": {"targetI": -20}}"#);
    let made = render_all(&req, &Ok(Some(e)), dir.path());
    let db = |m: &RenderedChunk| 20.0 * f64::from(m.chunk.enhanced_gain.unwrap()).log10();
    for (k, m) in made.iter().enumerate() {
        assert_eq!((m.chunk.raw_file.as_ref(), m.raw.as_ref()), (None, None));
        assert!(!dir.path().join(chunks::chunk_file(k, "wav")).exists());
    }
    // Each chunk measured on its own: the tone (-13.5 dBFS RMS) brought down to -20 LUFS;
    // chunk 1, 4 dB louder, brought down 4 dB more.
    let (g0, g1, g2) = (db(&made[0]), db(&made[1]), db(&made[2]));
    eprintln!("gains {g0:.2} {g1:.2} {g2:.2} dB");
    assert!(
        (-8.0..-4.0).contains(&g0) && (g2 - g0).abs() < 1.0,
        "{g0} {g2}"
    );
    assert!((2.5..5.5).contains(&(g0 - g1)), "{g0} {g1}");
    // Chunk 1 starts at chunk 0's gain and ramps to its own: no step at the edge.
    let (a, b) = (
        samples(&dir.path().join(&made[0].chunk.file)),
        samples(&dir.path().join(&made[1].chunk.file)),
    );
    let (end, start) = (rms(&a[a.len() - 441..]), rms(&b[..441]));
    eprintln!("edge: {end:.4} then {start:.4}");
    assert!((start / end - 1.0).abs() < 0.05, "{end} then {start}");
}
