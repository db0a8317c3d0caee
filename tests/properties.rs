//! Property tests (proptest) over hostile input: the config parser and segment repair.
//! Neither may panic on any input; repair never deletes an audio file, never modifies one
//! it cannot read, and what it repairs hound reads with exactly the frames it reports.

use edgerec::config::{ConfigError, Overrides, RawConfig, RecordSettings};
use edgerec::core::format::{SampleFormat, StreamSpec};
use edgerec::segment::file::SegmentFile;
use edgerec::segment::repair::{RepairError, repair_segment, segment_frames};
use edgerec::segment::wav::{self, SegmentIdentity};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const KEYS: &[(&str, &str)] = &[
    ("capture", "backend"),
    ("capture", "device"),
    ("capture", "format"),
    ("capture", "rate"),
    ("capture", "channels"),
    ("capture", "period"),
    ("capture", "ring_seconds"),
    ("capture", "ring_max_mib"),
    ("capture", "stall_guard"),
    ("capture", "reopen_cap"),
    ("segments", "segment_seconds"),
    ("segments", "flush_interval"),
    ("segments", "sync_interval"),
    ("output", "dir"),
    ("output", "gap_fill"),
    ("capture", "no_such_key"),
];

/// A TOML value of any type, including the extremes and the nonsensical.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        prop_oneof![Just(u64::MAX as f64), Just(-0.0), any::<f64>()].prop_map(|v| {
            if v.is_nan() {
                "nan".to_string()
            } else if v.is_infinite() {
                if v > 0.0 { "inf" } else { "-inf" }.to_string()
            } else {
                format!("{v:?}")
            }
        }),
        any::<bool>().prop_map(|v| v.to_string()),
        ".{0,40}".prop_map(|s| format!("{:?}", s)), // any string, escaped by Rust's Debug
        prop_oneof![
            Just("\"999999999999999999999999h\""),
            Just("\"0s\""),
            Just("\"-5s\""),
            Just("\"1ns\""),
            Just("[1, 2]"),
            Just("{ a = 1 }"),
        ]
        .prop_map(str::to_string),
    ]
}

fn config_text() -> impl Strategy<Value = String> {
    prop::collection::vec((0..KEYS.len(), toml_value()), 0..10).prop_map(|pairs| {
        let mut text = String::new();
        for (table, _) in [("capture", 0), ("segments", 0), ("output", 0)] {
            text.push_str(&format!("[{table}]\n"));
            for (k, v) in &pairs {
                let (t, key) = KEYS[*k];
                if t == table {
                    text.push_str(&format!("{key} = {v}\n"));
                }
            }
        }
        text
    })
}

/// Parses and resolves `text`; whatever happens, it returns (no panic), and an error
/// names the file or the key.
fn parse_and_resolve(text: &str) -> Result<RecordSettings, ConfigError> {
    let path = Path::new("/etc/edgerec/prop.toml");
    let raw = RawConfig::parse(text, path)?;
    RecordSettings::resolve(
        raw,
        Overrides {
            backend: Some("synth".into()),
            ..Default::default()
        },
    )
}

fn check_config_error(e: &ConfigError) {
    let msg = e.to_string();
    assert!(!msg.is_empty());
    assert!(!msg.contains('\n'), "one-line error: {msg:?}");
    match e {
        ConfigError::Parse { path, .. } => assert!(path.ends_with("prop.toml")),
        ConfigError::Invalid { key, .. } => assert!(msg.contains(key)),
        ConfigError::Read { .. } => panic!("parse never reads a file"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn config_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_and_resolve(&text) {
            check_config_error(&e);
        }
    }

    #[test]
    fn config_parser_accepts_only_values_in_range(text in config_text()) {
        match parse_and_resolve(&text) {
            Ok(s) => {
                // Whatever was accepted is within the documented bounds.
                prop_assert!((8_000..=384_000).contains(&s.spec.rate));
                prop_assert!((1..=256).contains(&s.spec.channels));
                prop_assert!((0.5..=120.0).contains(&s.ring_seconds));
                prop_assert!((1..=86_400).contains(&s.segment_seconds));
                prop_assert!(s.period.as_millis() >= 1 && s.period.as_millis() <= 500);
            }
            Err(e) => check_config_error(&e),
        }
    }
}

const SPECS: [StreamSpec; 3] = [
    StreamSpec {
        format: SampleFormat::S16Le,
        rate: 48_000,
        channels: 2,
    },
    StreamSpec {
        format: SampleFormat::S24Le3,
        rate: 44_100,
        channels: 1,
    },
    StreamSpec {
        format: SampleFormat::FloatLe,
        rate: 48_000,
        channels: 6,
    },
];

/// A real segment as the writer makes it (with its identity chunk, or without as older
/// segments are), `frames` frames long, closed; returns its bytes.
fn real_segment(dir: &Path, spec: StreamSpec, frames: usize, identified: bool) -> Vec<u8> {
    let path = dir.join("template.wav");
    let identity = SegmentIdentity {
        job: "job_20261201T000000Z_prop".into(),
        seq: 7,
        first_frame: 480_000,
        opened_at_ms: 1_764_547_200_000,
    };
    let mut seg =
        SegmentFile::create_identified(&path, spec, identified.then_some(&identity)).unwrap();
    let audio: Vec<u8> = (0..frames * spec.bytes_per_frame())
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    seg.write_frames(&audio).unwrap();
    seg.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

#[derive(Clone, Debug)]
enum Damage {
    /// Cut the file at this fraction of its length.
    Truncate(f64),
    /// Overwrite bytes at this fraction of the length.
    Overwrite(f64, Vec<u8>),
    /// Append bytes (a torn write past the last frame).
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..=1.0f64).prop_map(Damage::Truncate),
        (0.0..=1.0f64, prop::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(at, b)| Damage::Overwrite(at, b)),
        prop::collection::vec(any::<u8>(), 1..20).prop_map(Damage::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let at = |f: f64, len: usize| ((len as f64 * f) as usize).min(len);
    match d {
        Damage::Truncate(f) => bytes.truncate(at(*f, bytes.len())),
        Damage::Overwrite(f, b) => {
            let start = at(*f, bytes.len());
            for (i, x) in b.iter().enumerate() {
                match bytes.get_mut(start + i) {
                    Some(slot) => *slot = *x,
                    None => bytes.push(*x),
                }
            }
        }
        Damage::Append(b) => bytes.extend_from_slice(b),
    }
}

/// Repairs `path` and checks the promises: no panic, the file is still there, an
/// unreadable one is byte-for-byte untouched, a repaired one is read by hound with the
/// reported frames (in the `expected` format, when the job's is known) and stays clean on
/// a second repair.
fn repair_keeps_its_promises(
    path: &PathBuf,
    before: &[u8],
    expected: Option<StreamSpec>,
) -> Result<(), TestCaseError> {
    let result = repair_segment(path, expected);
    prop_assert!(path.exists(), "repair deleted {}", path.display());
    match result {
        Ok(report) => {
            let reader = hound::WavReader::open(path)
                .map_err(|e| TestCaseError::fail(format!("hound cannot read it: {e}")))?;
            prop_assert_eq!(reader.duration() as u64, report.frames);
            let spec = reader.spec();
            prop_assert_eq!(spec.channels, report.spec.channels);
            prop_assert_eq!(spec.sample_rate, report.spec.rate);
            if let Some(expected) = expected {
                prop_assert_eq!(report.spec, expected);
            }
            // Every sample decodes (hound checks the data fits the declared size).
            let samples = match spec.sample_format {
                hound::SampleFormat::Float => reader.into_samples::<f32>().count(),
                hound::SampleFormat::Int => reader.into_samples::<i32>().count(),
            };
            prop_assert_eq!(samples as u64, report.frames * report.spec.channels as u64);
            prop_assert_eq!(
                segment_frames(path).ok().map(|(_, f)| f),
                Some(report.frames)
            );
            let again = repair_segment(path, expected).unwrap();
            prop_assert!(again.was_clean(), "second repair: {:?}", again);
            // Only the size fields and a torn tail may change; the audio kept is the same.
            let after = std::fs::read(path).unwrap();
            prop_assert!(after.len() <= before.len());
        }
        Err(RepairError::Unreadable { .. }) => {
            prop_assert_eq!(
                std::fs::read(path).unwrap(),
                before,
                "unreadable file was modified"
            );
        }
        Err(RepairError::Io { source, .. }) => {
            return Err(TestCaseError::fail(format!(
                "I/O error on a local file: {source}"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn repair_of_a_damaged_real_segment_never_loses_the_file(
        spec_i in 0..SPECS.len(),
        frames in 0usize..300,
        identified in any::<bool>(),
        journal_knows_the_format in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = real_segment(dir.path(), SPECS[spec_i], frames, identified);
        for d in &damages {
            apply(&mut bytes, d);
        }
        let path = dir.path().join("000001.wav");
        std::fs::write(&path, &bytes).unwrap();
        let expected = journal_knows_the_format.then_some(SPECS[spec_i]);
        repair_keeps_its_promises(&path, &bytes, expected)?;
        // The identity reader tolerates the same damage.
        if let Ok(mut f) = std::fs::File::open(&path)
            && let Ok(info) = wav::parse_header(&mut f)
        {
            let _ = wav::read_identity(&mut f, &info);
        }
    }

    #[test]
    fn repair_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.wav");
        std::fs::write(&path, &bytes).unwrap();
        repair_keeps_its_promises(&path, &bytes, None)?;
    }

    #[test]
    fn repair_of_arbitrary_bytes_behind_a_real_header(
        spec_i in 0..SPECS.len(),
        identified in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = real_segment(dir.path(), SPECS[spec_i], 0, identified);
        bytes.extend_from_slice(&tail);
        let path = dir.path().join("000001.wav");
        std::fs::write(&path, &bytes).unwrap();
        repair_keeps_its_promises(&path, &bytes, None)?;
        let (_, frames) = segment_frames(&path).unwrap();
        let bpf = SPECS[spec_i].bytes_per_frame();
        prop_assert_eq!(frames, (tail.len() / bpf) as u64, "every whole frame is kept");
    }
}

#[test]
fn identified_segment_round_trips_its_identity_and_hound_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    for spec in SPECS {
        let bytes = real_segment(dir.path(), spec, 10, true);
        let path = dir.path().join("000007.wav");
        std::fs::write(&path, &bytes).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let info = wav::parse_header(&mut f).unwrap();
        let id = wav::read_identity(&mut f, &info)
            .unwrap()
            .expect("identity");
        assert_eq!((id.seq, id.first_frame), (7, 480_000));
        assert_eq!(id.job, "job_20261201T000000Z_prop");
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 10);
        std::fs::remove_file(&path).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `repair --rebuild` over a job directory of damaged real segments: no panic, no
    /// file deleted, every file it could not read left byte for byte, every other one
    /// readable by hound, and a recording no longer than the audio that survived.
    #[test]
    fn rebuild_over_damaged_segments_keeps_every_file(
        damages in prop::collection::vec(prop::option::of(damage()), 1..5),
    ) {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("job_prop");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = SPECS[0];
        let mut written = Vec::new();
        for (i, d) in damages.iter().enumerate() {
            let seq = i as u32 + 1;
            let identity = SegmentIdentity {
                job: "job_prop".into(),
                seq,
                first_frame: i as u64 * 200,
                opened_at_ms: 1_764_547_200_000 + i as i64 * 1000,
            };
            let path = dir.join(format!("{seq:06}.wav"));
            let mut seg = SegmentFile::create_identified(&path, spec, Some(&identity)).unwrap();
            seg.write_frames(&vec![3; 200 * spec.bytes_per_frame()]).unwrap();
            seg.close().unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(d) = d {
                apply(&mut bytes, d);
            }
            std::fs::write(&path, &bytes).unwrap();
            written.push((path, bytes));
        }
        let summary = edgerec::roles::rebuild::rebuild_dir(
            out.path(),
            edgerec::core::timeline::GapFill::Silence,
        );
        summary.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut audio = 0u64;
        for (path, bytes) in &written {
            prop_assert!(path.exists(), "{} deleted", path.display());
            match hound::WavReader::open(path) {
                Ok(r) => audio += r.duration() as u64,
                Err(_) => prop_assert_eq!(&std::fs::read(path).unwrap(), bytes),
            }
        }
        let recording = dir.join("recording.wav");
        if recording.exists() {
            let frames = hound::WavReader::open(&recording).unwrap().duration() as u64;
            prop_assert!(frames >= audio.min(1), "{frames} < {audio}");
            prop_assert!(frames <= written.len() as u64 * 200 + audio, "{frames}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The writer's page policy: a segment that appends whole pages and holds the partial
    /// last one, killed after any write (or closed), repairs to exactly what it took
    /// minus the held bytes (less than a page), and hound reads those frames.
    #[test]
    fn a_segment_holding_its_last_page_repairs_to_all_it_wrote(
        spec_i in 0..SPECS.len(),
        identified in any::<bool>(),
        batches in prop::collection::vec((1usize..3000, any::<bool>()), 1..8),
        closed in any::<bool>(),
    ) {
        use edgerec::segment::file::PAGE;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.wav");
        let spec = SPECS[spec_i];
        let bpf = spec.bytes_per_frame();
        let identity = identified.then(|| SegmentIdentity {
            job: "job_prop".into(),
            seq: 1,
            first_frame: 0,
            opened_at_ms: 1_764_547_200_000,
        });
        let mut seg = SegmentFile::create_identified(&path, spec, identity.as_ref()).unwrap();
        seg.hold_partial_page(true);
        let header = std::fs::metadata(&path).unwrap().len();
        let mut audio = Vec::new();
        let first = header + (batches[0].0 * bpf) as u64; // the first audio goes out whole
        for (frames, sync) in &batches {
            let start = audio.len();
            audio.extend((0..frames * bpf).map(|k| ((start + k) * 31 % 251) as u8));
            seg.write_frames(&audio[start..]).unwrap();
            if *sync {
                seg.sync_data().unwrap();
            }
            let len = std::fs::metadata(&path).unwrap().len();
            prop_assert!(seg.held_bytes() < PAGE as usize);
            prop_assert!(len == first || len % PAGE == 0, "{len}");
            prop_assert_eq!(len + seg.held_bytes() as u64, header + audio.len() as u64);
        }
        let kept = if closed {
            prop_assert_eq!(seg.close().unwrap() as usize, audio.len() / bpf);
            audio.len()
        } else {
            let held = seg.held_bytes();
            drop(seg); // kill -9
            (audio.len() - held) / bpf * bpf
        };
        let r = repair_segment(&path, Some(spec)).unwrap();
        prop_assert_eq!(r.frames as usize, kept / bpf);
        let bytes = std::fs::read(&path).unwrap();
        prop_assert_eq!(&bytes[bytes.len() - kept..], &audio[..kept]);
        let reader = hound::WavReader::open(&path).unwrap();
        prop_assert_eq!(reader.duration() as usize, kept / bpf);
    }
}
