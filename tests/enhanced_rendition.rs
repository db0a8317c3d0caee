//! The enhanced rendition against the reference controller (real HTTP on 127.0.0.1, real
//! `edgerec` processes, a real ALSA PCM playing a 1 kHz tone in white noise): the raw render
//! goes first as `rendition=raw`, byte for byte the plain render; the enhanced one is the
//! primary, in the same codec, rate, channels and length (ffprobe), with the noise floor
//! far lower in a band the tone leaves alone (sox).

mod common;

use common::controller::*;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RATE: usize = 48_000;

/// `seconds` of stereo S16: a 1 kHz tone at 0.3 from 1 s on, white noise at 0.02 throughout.
fn tone_in_noise(seconds: usize) -> Vec<i16> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(seconds * RATE * 2);
    for i in 0..seconds * RATE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = 0.02 * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0);
        let t = i as f64 / RATE as f64;
        let tone = if t >= 1.0 {
            0.3 * (std::f64::consts::TAU * 1000.0 * t).sin()
        } else {
            0.0
        };
        let s = ((noise + tone) * 32767.0).round() as i16;
        out.extend([s, s]);
    }
    out
}

/// sox's RMS amplitude (dB) of `file` past 1.5 s, band-passed to `band`. ffmpeg cuts
/// (decoding from the start: libFLAC cannot seek in these files, see the note).
fn band_rms_db(file: &Path, band: &str) -> f64 {
    let cut = tempfile::Builder::new().suffix(".wav").tempfile().unwrap();
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(file)
        .args(["-ss", "1.5"])
        .arg(cut.path())
        .status()
        .unwrap();
    assert!(ok.success(), "ffmpeg {}", file.display());
    let rms = sox_stat(cut.path(), &["sinc", band]).field("RMS     amplitude:");
    20.0 * rms.max(1e-9).log10()
}

/// ffprobe's `codec,rate,channels,duration` of a stored file.
fn probe(file: &Path) -> (String, u32, u16, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:format=duration",
        ])
        .args(["-of", "default=nw=1:nk=1"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Vec<&str> = text.lines().collect();
    assert_eq!(v.len(), 4, "ffprobe {}: {text}", file.display());
    (
        v[0].into(),
        v[1].parse().unwrap(),
        v[2].parse().unwrap(),
        v[3].parse().unwrap(),
    )
}

/// A fakemic PCM `name` looping `seconds` of [`tone_in_noise`] (keep the file while used).
fn noisy_mic(name: &str, seconds: usize) -> (tempfile::NamedTempFile, fakemic::Fakemic) {
    let source = tempfile::NamedTempFile::new().unwrap();
    fakemic::write_raw(source.path(), &tone_in_noise(seconds));
    let file = source.path().to_str().unwrap().to_string();
    let mic = fakemic::setup(&[(name, &["--file", &file])]);
    (source, mic)
}

#[test]
fn enhanced_and_raw_renditions_are_stored_apart_and_the_enhanced_one_is_cleaner() {
    let _rt = realtime();
    let (_source, mic) = noisy_mic("noisy", 6);
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job_with(
        "noisy",
        6.0,
        &[
            "--codec",
            "flac",
            "--file-name",
            "talk.flac",
            "--enhancement",
            r#"{"highpass": {"hz": 100}, "loudnorm": {"targetI": -20}}"#,
        ],
    );
    let mut agent = ctl
        .alsa_role("agent", state.path(), &mic.config_path)
        .spawn()
        .unwrap();
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(90));
    sigterm(&mut agent, Duration::from_secs(10));
    let rec = ctl.recording(&job.id);
    let enhanced = ctl.store.join(
        rec.enhanced_cache_path
            .as_deref()
            .expect("an enhanced rendition"),
    );
    let raw = ctl
        .store
        .join(rec.raw_cache_path.as_deref().expect("a raw rendition"));
    assert_eq!(
        rec.cache_path, rec.enhanced_cache_path,
        "the enhanced one is the primary"
    );
    assert_ne!(enhanced, raw);
    assert_eq!(rec.mime_type.as_deref(), Some("audio/flac"));
    assert_eq!(rec.file_name.as_deref(), Some("talk.flac"));
    for f in [&enhanced, &raw] {
        assert_eq!(f.extension().unwrap(), "flac", "{}", f.display());
        assert_eq!(&std::fs::read(f).unwrap()[..4], b"fLaC", "{}", f.display());
        assert!(
            Command::new("flac")
                .args(["-t", "-s"])
                .arg(f)
                .status()
                .unwrap()
                .success()
        );
    }
    let (pe, pr) = (probe(&enhanced), probe(&raw));
    assert_eq!((pe.0.as_str(), pe.1, pe.2), ("flac", 48_000, 2), "{pe:?}");
    assert_eq!((&pe.0, pe.1, pe.2), (&pr.0, pr.1, pr.2));
    assert!(
        (pe.3 - pr.3).abs() < 0.001 && (pe.3 - 6.0).abs() < 0.05,
        "{pe:?} {pr:?}"
    );
    // The raw one is the plain render, byte for byte.
    let dir = agent_job_dir(state.path(), &job.id);
    assert_eq!(sha256_file(&raw), sha256_file(&dir.join("recording.flac")));
    assert_eq!(rec.checksum.clone().unwrap(), sha256_file(&enhanced));
    // The tone's level against the noise floor in 4–8 kHz, where there is no tone.
    let snr = |f: &Path| {
        let (tone, floor) = (band_rms_db(f, "500-2000"), band_rms_db(f, "4000-8000"));
        eprintln!(
            "{}: tone {tone:.1} dB, 4-8 kHz floor {floor:.1} dB",
            f.display()
        );
        tone - floor
    };
    let (before, after) = (snr(&raw), snr(&enhanced));
    eprintln!("tone over the 4-8 kHz noise floor: raw {before:.1} dB, enhanced {after:.1} dB");
    assert!(
        after - before > 10.0,
        "raw {before:.1} dB, enhanced {after:.1} dB"
    );
    // The raw one went first: the primary completed the job.
    let journal =
        edgerec::journal::Journal::open_read_only(&state.path().join("edgerec.db")).unwrap();
    let agent_id = agent_job(state.path(), &job.id).id;
    let rows = journal.uploads(&agent_id).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let acked = |r: &edgerec::journal::UploadRow| r.acknowledged_at_ms.unwrap();
    assert!(
        rows[1].chunk > rows[0].chunk && acked(&rows[1]) <= acked(&rows[0]),
        "{rows:?}"
    );
}

/// While the node config's `monitorEnhancement` asks, each live-listen chunk is posted
/// twice: raw, and denoised with `?rendition=enhanced`, same rate and length, decodable,
/// with the noise floor lower in a band the tone leaves alone.
#[test]
fn enhanced_listen_chunks_are_posted_beside_the_raw_ones() {
    let _rt = realtime();
    let (_source, mic) = noisy_mic("noisylive", 4);
    let ctl = Ctl::start(Duration::from_secs(30));
    ctl.admin
        .run(&[
            "node",
            "set-monitor-enhancement",
            &ctl.node,
            "--engine",
            "deepfilternet3",
        ])
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let job = ctl.add_job_with("noisylive", 17.0, &["--codec", "flac"]);
    let mut agent = ctl
        .alsa_role("agent", state.path(), &mic.config_path)
        .spawn()
        .unwrap();
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(90));
    sigterm(&mut agent, Duration::from_secs(10));
    let out = tempfile::tempdir().unwrap();
    let listed = ctl
        .admin
        .run(&["listen", &ctl.node, "--out", out.path().to_str().unwrap()])
        .unwrap();
    let chunks: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let of = |r: &str| -> Vec<&serde_json::Value> {
        chunks.iter().filter(|c| c["rendition"] == r).collect()
    };
    let (raw, enhanced) = (of("raw"), of("enhanced"));
    assert!(enhanced.len() >= 2, "{chunks:#?}");
    assert_eq!(raw.len(), enhanced.len(), "{chunks:#?}");
    for e in &enhanced {
        let twin = raw
            .iter()
            .find(|r| r["capturedAt"] == e["capturedAt"])
            .unwrap_or_else(|| panic!("no raw chunk beside {e}"));
        assert_eq!(twin["durationMs"], e["durationMs"]);
        let (ep, rp) = (
            Path::new(e["path"].as_str().unwrap()),
            Path::new(twin["path"].as_str().unwrap()),
        );
        let (pe, pr) = (probe(ep), probe(rp));
        assert_eq!(
            (pe.0.as_str(), pe.1, pe.2),
            ("pcm_s16le", pr.1, 1),
            "{pe:?} {pr:?}"
        );
        assert!((pe.3 - pr.3).abs() < 0.001, "{pe:?} {pr:?}");
        let floor = |f: &Path| band_rms_db(f, "4000-8000");
        let (before, after) = (floor(rp), floor(ep));
        eprintln!(
            "listen chunk {}: 4-8 kHz floor raw {before:.1} dB, enhanced {after:.1} dB",
            e["capturedAt"]
        );
        assert!(
            after < before - 10.0,
            "raw {before:.1} dB, enhanced {after:.1} dB"
        );
    }
}

/// An enhancement the agent cannot make (a value out of Rakkr's range) loses nothing: the
/// raw render is delivered as the primary, and one `enhancement_failed` warning says why;
/// a chunked job's chunks go as rendered, with one warning for the job.
#[test]
fn a_bad_enhancement_delivers_the_raw_render_and_says_why() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let bad = r#"{"highpass": {"hz": 5}}"#;
    let job = ctl.add_job_with("sine:440", 2.0, &["--codec", "mp3", "--enhancement", bad]);
    let chunked = ctl.add_job_with(
        "sine:440",
        4.0,
        &[
            "--codec",
            "flac",
            "--command-json",
            r#"{"chunkSeconds": 2}"#,
            "--enhancement",
            bad,
        ],
    );
    let mut agent = ctl.spawn_agent(state.path());
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
    ctl.wait_status(&chunked.id, Some("completed"), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2)); // the warning follows the upload
    sigterm(&mut agent, Duration::from_secs(10));
    let rec = ctl.recording(&job.id);
    assert_eq!(
        (
            rec.enhanced_cache_path.as_deref(),
            rec.raw_cache_path.as_deref()
        ),
        (None, None)
    );
    let stored = ctl.store.join(rec.cache_path.as_deref().unwrap());
    assert_eq!(probe(&stored).0, "mp3");
    let dir = agent_job_dir(state.path(), &job.id);
    assert_eq!(
        sha256_file(&stored),
        sha256_file(&dir.join("recording.mp3"))
    );
    let warned: Vec<_> = ctl
        .health_events()
        .into_iter()
        .filter(|e| e["type"] == "agent.recording_job.enhancement_failed")
        .collect();
    assert_eq!(warned.len(), 2, "one per job: {warned:#?}");
    for w in &warned {
        let reason = w["details"]["reason"].as_str().unwrap();
        assert!(reason.contains("highpass.hz"), "{reason}");
    }
    let stored = stored_renditions(&ctl, &chunked.id);
    let dir = agent_job_dir(state.path(), &chunked.id);
    for (k, s) in stored.iter().enumerate() {
        assert_eq!((s.0 as usize, s.1.as_str()), (k, "primary"), "{stored:?}");
        assert_eq!(
            s.3,
            sha256_file(&dir.join(format!("chunks/chunk-{k:04}.flac")))
        );
    }
    assert_eq!(stored.len(), 2, "{stored:?}");
}

/// The controller's stored chunks of `job`: (index, rendition, cache path, checksum,
/// duration header), by index then rendition.
fn stored_renditions(ctl: &Ctl, job: &str) -> Vec<(u32, String, String, String, f64)> {
    let shown: serde_json::Value =
        serde_json::from_str(&ctl.admin.run(&["job", "show", job]).unwrap()).unwrap();
    let recording = shown["job"]["recordingId"].as_str().unwrap().to_string();
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(&ctl.db, flags).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT chunk_index, rendition, cache_path, checksum, duration_seconds FROM chunks \
             WHERE recording_id = ?1 ORDER BY chunk_index, rendition",
        )
        .unwrap();
    let rows = stmt.query_map([recording], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    });
    rows.unwrap().map(Result::unwrap).collect()
}

/// The `uploads` rows the agent's journal holds acknowledged (raw ones at `RAW_ROW + k`).
fn acked_rows(state: &Path) -> Vec<u32> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(db) = rusqlite::Connection::open_with_flags(state.join("edgerec.db"), flags) else {
        return Vec::new();
    };
    let Ok(mut stmt) = db.prepare("SELECT chunk FROM uploads WHERE acknowledged_at_ms IS NOT NULL")
    else {
        return Vec::new(); // not migrated yet
    };
    let rows = stmt.query_map([], |r| r.get(0));
    rows.map(|r| r.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Each cache-file PUT the proxy saw: (chunk, raw?, carries chunkTotal?).
fn rendition_puts(proxy: &common::proxy::Proxy) -> Vec<(u32, bool, bool)> {
    let lines = proxy.lines();
    let puts = lines
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains("/cache-file"));
    puts.filter_map(|l| {
        let after = l.split("chunk=").nth(1)?;
        let chunk = after.split(|c: char| !c.is_ascii_digit()).next()?;
        let raw = l.contains("rendition=raw");
        assert!(raw || l.contains("rendition=enhanced"), "{l}");
        Some((chunk.parse().ok()?, raw, l.contains("chunkTotal=")))
    })
    .collect()
}

/// A chunked job with enhancement and `keepRaw` (8 s of a tone in noise from a real ALSA
/// PCM, 2 s chunks, FLAC): each chunk is stored twice, its raw rendition sent before its
/// enhanced primary, `chunkTotal` only on the final primary; both renditions of a chunk
/// have the codec, rate, channels and length of each other, the enhanced one a far
/// cleaner tone. The link is cut during chunk 2's first PUT and the agent killed (-9),
/// then both come back: no acknowledged PUT of either rendition goes again.
#[test]
fn a_chunked_job_sends_each_chunk_raw_then_enhanced_and_resumes_without_resending() {
    const RAW_ROW: u32 = edgerec::journal::RAW_ROW;
    let _rt = realtime();
    // Long enough that the kill (when chunk 2 goes out, ~8 s in: its span is looked for
    // 1.5 s after it is captured) comes well inside the window, which the agent resumes.
    let (seconds, chunk) = (12u32, 2u32);
    let n = seconds / chunk;
    let (_source, mic) = noisy_mic("noisychunks", seconds as usize);
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    // The link is cut 4 KiB into the first PUT of chunk 2 (its raw rendition) and stays
    // down: the agent is killed then, mid-job whatever the box's speed.
    let cut = common::proxy::Fault::CutThenRefuse {
        matching: "chunk=2".into(),
        after: 4096,
    };
    let proxy = common::proxy::Proxy::start(ctl.addr, Some(cut));
    let fields = serde_json::json!({ "chunkSeconds": chunk }).to_string();
    let job = ctl.add_job_with(
        "noisychunks",
        f64::from(seconds),
        &[
            "--codec",
            "flac",
            "--file-name",
            "talk.flac",
            "--command-json",
            &fields,
            "--enhancement",
            r#"{"highpass": {"hz": 100}, "loudnorm": {"targetI": -20}}"#,
        ],
    );
    let spawn = || {
        let mut cmd = ctl.alsa_role_at("agent", state.path(), &mic.config_path, &proxy.url());
        cmd.stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    let mut agent = spawn();
    let until = std::time::Instant::now() + Duration::from_secs(u64::from(seconds) + 90);
    while !proxy.was_cut() {
        assert!(std::time::Instant::now() < until, "{:?}", proxy.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    let (mut acked_at_kill, puts_at_kill) =
        (acked_rows(state.path()), rendition_puts(&proxy).len());
    acked_at_kill.sort_unstable();
    assert_eq!(acked_at_kill, [0, 1, RAW_ROW, RAW_ROW + 1]);
    assert_eq!(ctl.job(&job.id).status, "running", "killed mid-job");
    proxy.pass();
    let mut agent = spawn();
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(90));
    sigterm(&mut agent, Duration::from_secs(10));

    let puts = rendition_puts(&proxy);
    eprintln!("PUTs (chunk, raw, total): {puts:?}; acknowledged at the kill {acked_at_kill:?}");
    let row = |&(k, raw, _): &(u32, bool, bool)| if raw { RAW_ROW + k } else { k };
    let again: Vec<_> = (puts[puts_at_kill..].iter())
        .filter(|p| acked_at_kill.contains(&row(p)))
        .collect();
    assert!(again.is_empty(), "sent again after the restart: {again:?}");
    for k in 0..n {
        let first = |raw| puts.iter().position(|p| p.0 == k && p.1 == raw).unwrap();
        assert!(first(true) < first(false), "chunk {k}: {puts:?}");
    }
    let totals: Vec<_> = puts.iter().filter(|p| p.2).collect();
    assert!(
        !totals.is_empty() && totals.iter().all(|p| (p.0, p.1) == (n - 1, false)),
        "chunkTotal only on the final primary: {puts:?}"
    );
    assert_eq!(puts.last(), Some(&(n - 1, false, true)), "{puts:?}");
    // All in all: raw k, enhanced k, in order; only the raw chunk 2 the cut stopped went
    // twice.
    let (raw, primary) = (|k| (k, true, false), |k| (k, false, k == n - 1));
    let mut want: Vec<_> = (0..n).flat_map(|k| [raw(k), primary(k)]).collect();
    want.insert(4, raw(2));
    assert_eq!(puts, want);

    let stored = stored_renditions(&ctl, &job.id);
    assert_eq!(stored.len(), 2 * n as usize, "{stored:?}");
    let dir = agent_job_dir(state.path(), &job.id);
    // The kill is a crash_recovered gap on the timeline: the chunks it falls in.
    let timeline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("timeline.json")).unwrap()).unwrap();
    let chunk_frames = u64::from(chunk) * 48_000;
    let gap_chunks: Vec<u32> = (timeline["events"].as_array().unwrap().iter())
        .filter(|e| e["kind"] == "crash_recovered")
        .flat_map(|e| {
            let (at, len) = (
                e["frame"].as_u64().unwrap(),
                e["gap_frames"].as_u64().unwrap(),
            );
            (at / chunk_frames)..=((at + len.max(1) - 1) / chunk_frames)
        })
        .map(|k| k as u32)
        .collect();
    assert!(!gap_chunks.is_empty(), "the kill left a gap: {timeline}");
    for k in 0..n {
        let of = |r: &str| stored.iter().find(|s| s.0 == k && s.1 == r).unwrap();
        let (primary, raw) = (of("primary"), of("raw"));
        assert_eq!(
            primary.3,
            sha256_file(&dir.join(format!("chunks/enhanced-{k:04}.flac")))
        );
        assert_eq!(
            raw.3,
            sha256_file(&dir.join(format!("chunks/chunk-{k:04}.flac")))
        );
        let (pe, pr) = (ctl.store.join(&primary.2), ctl.store.join(&raw.2));
        for f in [&pe, &pr] {
            assert_eq!(f.extension().unwrap(), "flac", "{}", f.display());
            let ok = Command::new("flac").args(["-t", "-s"]).arg(f).status();
            assert!(ok.unwrap().success(), "flac -t {}", f.display());
        }
        let (e, r) = (probe(&pe), probe(&pr));
        assert_eq!(
            (e.0.as_str(), e.1, e.2),
            ("flac", 48_000, 2),
            "chunk {k}: {e:?}"
        );
        assert_eq!((&e.0, e.1, e.2), (&r.0, r.1, r.2), "chunk {k}");
        let want = f64::from(chunk);
        assert!(
            (e.3 - want).abs() < 0.01 && (r.3 - want).abs() < 0.01,
            "{e:?} {r:?}"
        );
        assert!(
            (primary.4 - e.3).abs() < 0.01 && (raw.4 - r.3).abs() < 0.01,
            "chunk {k}"
        );
        // The tone over the 4-8 kHz noise floor, past 1.5 s of the chunk. A chunk that
        // holds the kill's gap is silence and wherever the device's file resumed: no tone
        // to measure there.
        let snr = |f: &Path| band_rms_db(f, "500-2000") - band_rms_db(f, "4000-8000");
        let (before, after) = (snr(&pr), snr(&pe));
        eprintln!("chunk {k}: tone over the floor raw {before:.1} dB, enhanced {after:.1} dB");
        assert!(
            gap_chunks.contains(&k) || after - before > 10.0,
            "chunk {k}: raw {before:.1}, enhanced {after:.1}"
        );
    }
    let rec = ctl.recording(&job.id);
    assert!(rec.cached);
    assert!((rec.duration_seconds.unwrap() - f64::from(seconds)).abs() < 0.05);
    let mut acked = acked_rows(state.path());
    acked.sort_unstable();
    let want: Vec<u32> = (0..n).chain((0..n).map(|k| RAW_ROW + k)).collect();
    assert_eq!(acked, want);
    let failed = ctl.health_events().into_iter();
    let failed: Vec<_> = failed
        .filter(|e| e["type"] == "agent.recording_job.enhancement_failed")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
