//! Chunked recordings (`chunkSeconds`) against the reference controller, through a TCP
//! proxy that cuts the link mid-chunk: each chunk is its own playable file with its own
//! duration, `chunkTotal` rides only the final one, and after the agent is killed and
//! restarted the chunks the controller acknowledged are not sent again.

mod common;

use common::controller::*;
use common::proxy::{Fault, Proxy};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// The controller's stored chunks of a recording: (index, cache path, checksum, duration).
fn stored_chunks(ctl: &Ctl, recording: &str) -> Vec<(u32, String, String, f64)> {
    let db =
        rusqlite::Connection::open_with_flags(&ctl.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = db
        .prepare(
            "SELECT chunk_index, cache_path, checksum, duration_seconds FROM chunks \
             WHERE recording_id = ?1 AND rendition = 'primary' ORDER BY chunk_index",
        )
        .unwrap();
    stmt.query_map([recording], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn recording_id(ctl: &Ctl, job: &str) -> String {
    let out = ctl.admin.run(&["job", "show", job]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["job"]["recordingId"].as_str().unwrap().to_string()
}

/// `chunk=N` of each cache-file PUT the proxy saw, in order.
fn chunk_puts(proxy: &Proxy) -> Vec<u32> {
    proxy
        .lines()
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains("/cache-file"))
        .filter_map(|l| {
            let q = l.split("chunk=").nth(1)?;
            q.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// A FLAC job of `seconds` on `device`, delivered as `hall.flac` in `chunk`-second chunks.
fn chunked_flac_job(ctl: &Ctl, device: &str, seconds: u32, chunk: u32) -> JobView {
    let fields = serde_json::json!({ "chunkSeconds": chunk }).to_string();
    ctl.add_job_with(
        device,
        f64::from(seconds),
        &[
            "--codec",
            "flac",
            "--file-name",
            "hall.flac",
            "--command-json",
            &fields,
        ],
    )
}

#[test]
fn chunks_resume_after_a_cut_and_a_restart_without_resending() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    // 8 s in 2 s chunks (CHUNKED_TEST="60,10" for the full size): the link is
    // cut 4 KiB into chunk 3's body.
    let (seconds, chunk) = std::env::var("CHUNKED_TEST")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
        })
        .unwrap_or((8, 2));
    let n = seconds / chunk;
    assert!(n >= 4, "chunk 3 must not be the only one cut");
    let fault = Fault::CutThenRefuse {
        matching: "chunk=3".into(),
        after: 4096,
    };
    let proxy = Proxy::start(ctl.addr, Some(fault));
    let job = chunked_flac_job(&ctl, "sine:440", seconds, chunk);
    let mut agent = ctl
        .role_at("agent", state.path(), &proxy.url())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(u64::from(seconds) + 60);
    while !proxy.was_cut() {
        assert!(
            Instant::now() < until,
            "no PUT of chunk 3: {:?}",
            proxy.lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The agent dies with the link down; it comes back once the link does.
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(chunk_puts(&proxy), vec![0, 1, 2, 3]);
    proxy.pass();
    let mut agent = ctl
        .role_at("agent", state.path(), &proxy.url())
        .spawn()
        .unwrap();
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
    // Chunks 0-2 were acknowledged before the cut: only chunk 3 went again, then the rest.
    let mut want = vec![0, 1, 2, 3];
    want.extend(3..n);
    assert_eq!(chunk_puts(&proxy), want);
    let final_put = proxy
        .lines()
        .into_iter()
        .rfind(|l| l.contains(&format!("chunk={}", n - 1)))
        .unwrap();
    assert!(
        final_put.contains(&format!("chunkTotal={n}")),
        "{final_put}"
    );
    let with_total: Vec<String> = proxy
        .lines()
        .into_iter()
        .filter(|l| l.contains("chunkTotal"))
        .collect();
    assert!(
        with_total
            .iter()
            .all(|l| l.contains(&format!("chunk={}&", n - 1))),
        "chunkTotal only on the final chunk: {with_total:?}"
    );

    let rec_id = recording_id(&ctl, &job.id);
    let chunks = stored_chunks(&ctl, &rec_id);
    assert_eq!(chunks.len(), n as usize, "{chunks:?}");
    let local = agent_job_dir(state.path(), &job.id);
    let mut total = 0.0;
    for (i, (index, path, checksum, duration)) in chunks.iter().enumerate() {
        assert_eq!(*index as usize, i);
        let stored = ctl.store.join(path);
        let t = Command::new("flac")
            .args(["-t", "-s"])
            .arg(&stored)
            .status()
            .unwrap();
        assert!(t.success(), "flac -t {}", stored.display());
        let probed = ffprobe_duration(&stored);
        let want = f64::from(chunk);
        assert!((probed - want).abs() < 0.01, "chunk {i}: ffprobe {probed}");
        assert!(
            (duration - probed).abs() < 0.01,
            "chunk {i}: header {duration}"
        );
        let own = local.join(format!("chunks/chunk-{i:04}.flac"));
        assert_eq!(*checksum, sha256_file(&own), "chunk {i}");
        total += duration;
    }
    let whole = f64::from(seconds);
    assert!((total - whole).abs() < 0.02, "{total}");
    eprintln!(
        "{n} chunks of {chunk} s, {total} s in all; PUTs by chunk {:?}",
        chunk_puts(&proxy)
    );
    let rec = ctl.recording(&job.id);
    assert!(rec.cached);
    assert!((rec.duration_seconds.unwrap() - whole).abs() < 0.05);
    // The journal says every chunk was acknowledged.
    let journal =
        edgerec::journal::Journal::open_read_only(&state.path().join("edgerec.db")).unwrap();
    let uploads = journal
        .uploads(&agent_job(state.path(), &job.id).id)
        .unwrap();
    assert_eq!(uploads.len(), n as usize);
    assert!(uploads.iter().all(|u| u.acknowledged_at_ms.is_some()));
    sigterm(&mut agent, Duration::from_secs(10));
}

fn puts_of(proxy: &Proxy, matching: &str) -> usize {
    proxy
        .lines()
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains(matching))
        .count()
}

/// Waits (boundedly) for a health event of `kind` on the controller.
fn wait_event(ctl: &Ctl, kind: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = ctl.health_events().into_iter().find(|e| e["type"] == kind) {
            return e;
        }
        assert!(
            Instant::now() < until,
            "no {kind}: {:?}",
            ctl.health_events()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A body corrupted in transit: the controller's checksum is not ours. Once: the upload is
/// sent again and the controller ends with our bytes. Always, on a chunk before the last:
/// three tries, then the job is reported failed (`checksum_mismatch`) and the audio kept.
#[test]
fn a_checksum_mismatch_is_sent_again_then_fails_the_job() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let once = Fault::Corrupt {
        matching: "cache-file".into(),
        times: 1,
    };
    let proxy = Proxy::start(ctl.addr, Some(once));
    let job = ctl.add_job_with("sine:440", 1.0, &["--codec", "flac"]);
    let mut agent = ctl
        .role_at("agent", state.path(), &proxy.url())
        .spawn()
        .unwrap();
    // The corrupted PUT already completed the job on the controller; the second one
    // replaces its bytes with ours.
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
    let local = agent_job_dir(state.path(), &job.id).join("recording.flac");
    let until = Instant::now() + Duration::from_secs(30);
    while ctl.recording(&job.id).checksum != Some(sha256_file(&local)) {
        assert!(
            Instant::now() < until,
            "stored {:?}",
            ctl.recording(&job.id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(puts_of(&proxy, "cache-file"), 2, "{:?}", proxy.lines());
    let event = wait_event(&ctl, "agent.upload.checksum_mismatch");
    assert!(event["recordingId"].is_string(), "{event}");
    sigterm(&mut agent, Duration::from_secs(10));

    // Every try of chunk 0 corrupted: the job cannot complete.
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let always = Fault::Corrupt {
        matching: "chunk=0".into(),
        times: 99,
    };
    let proxy = Proxy::start(ctl.addr, Some(always));
    let fields = serde_json::json!({"chunkSeconds": 1}).to_string();
    let job = ctl.add_job_with(
        "sine:440",
        2.0,
        &["--codec", "wav", "--command-json", &fields],
    );
    let mut agent = ctl
        .role_at("agent", state.path(), &proxy.url())
        .spawn()
        .unwrap();
    let done = ctl.wait_status(&job.id, Some("failed"), Duration::from_secs(90));
    assert_eq!(done.failure_reason.as_deref(), Some("checksum_mismatch"));
    assert_eq!(puts_of(&proxy, "chunk=0"), 3, "{:?}", proxy.lines());
    assert_eq!(puts_of(&proxy, "chunk=1"), 0, "{:?}", proxy.lines());
    let dir = agent_job_dir(state.path(), &job.id);
    assert!(dir.join("chunks/chunk-0000.wav").exists());
    assert!(!segment_files(&dir).is_empty(), "the audio is kept");
    sigterm(&mut agent, Duration::from_secs(10));
}

/// The chunks whose acknowledgement the agent's journal holds, and whether chunk 0's
/// `chunk_uploaded` event was journaled delivered.
fn acknowledged(state: &std::path::Path) -> (Vec<u32>, bool) {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(db) = rusqlite::Connection::open_with_flags(state.join("edgerec.db"), flags) else {
        return (Vec::new(), false);
    };
    let Ok(mut stmt) =
        db.prepare("SELECT chunk FROM uploads WHERE acknowledged_at_ms IS NOT NULL ORDER BY chunk")
    else {
        return (Vec::new(), false); // not migrated yet
    };
    let acked = stmt
        .query_map([], |r| r.get(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default();
    let told = db
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE '%-chunk-0-uploaded' \
             AND delivered_at_ms IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n > 0);
    (acked, told)
}

/// Decodes `path` with ffmpeg into interleaved 32-bit samples (lossless for 16/24-bit).
fn decoded(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s32le", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg {}", path.display());
    out.stdout
}

/// A 40 s job in 10 s chunks: chunks 0 and 1 are stored while the job is still
/// `running`, each chunk is a playable FLAC with its own length, and together they hold
/// exactly the audio of the capture (real ALSA, fakemic), each chunk sent once though the
/// agent is killed and restarted after chunk 0, chunk 0's PUT is refused thrice without
/// holding up the job's heartbeats, and the capture had no overrun.
#[test]
fn chunks_go_up_while_the_job_still_captures() {
    let _rt = realtime();
    let mic = common::fakemic::setup(&[("chunkmic", &[])]);
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    // Chunk 0's first three PUTs meet a 503: retried with backoff (at least 0.5 + 1 + 2 s
    // in all, against a 2 s job heartbeat), and the heartbeats go on meanwhile.
    let refused = Fault::Answer {
        matching: "chunk=0".into(),
        status: 503,
        times: 3,
    };
    let proxy = Proxy::start(ctl.addr, Some(refused));
    let (seconds, chunk) = (40u32, 10u32);
    let n = (seconds / chunk) as usize;
    let job = chunked_flac_job(&ctl, "chunkmic", seconds, chunk);
    // A real ALSA capture (no synth override): the chunks render beside it.
    let spawn = || {
        edgerec()
            .arg("agent")
            .arg("--state-dir")
            .arg(state.path())
            .args([
                "--controller",
                &proxy.url(),
                "--node-id",
                &ctl.node,
                "--token-file",
            ])
            .arg(&ctl.token_file)
            .env("ALSA_CONFIG_PATH", &mic.config_path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut agent = spawn();
    let rec_id = recording_id(&ctl, &job.id);
    // The controller's status when each of chunks 0 and 1 had been stored. Once chunk 0
    // is acknowledged in the journal the agent is killed (-9) and started again: the job
    // resumes, and chunk 0 is not sent again.
    let mut seen_while: Vec<String> = Vec::new();
    // The chunks acknowledged, and the PUTs seen, when the agent was killed.
    let mut killed: Option<(Vec<u32>, usize)> = None;
    let until = Instant::now() + Duration::from_secs(u64::from(seconds) + 60);
    while seen_while.len() < 2 {
        assert!(
            Instant::now() < until,
            "stored {:?}",
            stored_chunks(&ctl, &rec_id)
        );
        let stored = stored_chunks(&ctl, &rec_id).len();
        if stored > seen_while.len() {
            let status = ctl.job(&job.id).status;
            seen_while.extend(std::iter::repeat_n(status, stored - seen_while.len()));
        }
        // Killed once chunk 0's acknowledgement and its event are journaled: a kill
        // between the controller's 201 and that commit would send either again (the
        // outbox delivers at least once; the health event endpoint keeps duplicates).
        if killed.is_none() && matches!(acknowledged(state.path()), (a, true) if !a.is_empty()) {
            agent.kill().unwrap();
            agent.wait().unwrap();
            killed = Some((acknowledged(state.path()).0, chunk_puts(&proxy).len()));
            agent = spawn();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen_while[..2], ["running", "running"], "{seen_while:?}");
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));

    // Each chunk in order, once (chunk 0 after its three 503s; a chunk whose PUT the kill
    // cut short may go again), and none acknowledged before the kill went again;
    // `chunkTotal` only on the last.
    let puts = chunk_puts(&proxy);
    let (acked_at_kill, puts_at_kill) = killed.expect("killed once chunk 0 was acknowledged");
    assert!(acked_at_kill.contains(&0), "{acked_at_kill:?}");
    let again: Vec<_> = (puts[puts_at_kill..].iter())
        .filter(|c| acked_at_kill.contains(c))
        .collect();
    assert!(
        again.is_empty(),
        "sent again after the restart: {again:?} of {puts:?}"
    );
    let mut order = puts.clone();
    order.dedup();
    assert_eq!(order, [0, 1, 2, 3], "{puts:?}");
    assert_eq!(puts.iter().filter(|&&c| c == 0).count(), 4, "{puts:?}");
    assert!(
        (1..n as u32).all(|c| (1..=2).contains(&puts.iter().filter(|&&p| p == c).count())),
        "{puts:?}"
    );
    let lines = proxy.lines();
    let puts_of_0: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("PUT ") && lines[i].contains("chunk=0"))
        .collect();
    let beats = lines[puts_of_0[0]..puts_of_0[3]]
        .iter()
        .filter(|l| l.contains("/heartbeat") && l.contains("recording-jobs"))
        .count();
    assert!(
        beats >= 1,
        "no job heartbeat while chunk 0 was retried: {lines:?}"
    );
    let with_total: Vec<String> = (proxy.lines().into_iter())
        .filter(|l| l.contains("chunkTotal"))
        .collect();
    assert_eq!(with_total.len(), 1, "{with_total:?}");
    assert!(
        with_total[0].contains(&format!("chunk={}&chunkTotal={n}", n - 1)),
        "{with_total:?}"
    );

    let chunks = stored_chunks(&ctl, &rec_id);
    assert_eq!(chunks.len(), n, "{chunks:?}");
    let local = agent_job_dir(state.path(), &job.id);
    let rate = 48_000.0;
    let mut joined = Vec::new();
    for (i, (index, path, checksum, duration)) in chunks.iter().enumerate() {
        assert_eq!(*index as usize, i);
        let stored = ctl.store.join(path);
        let t = Command::new("flac")
            .args(["-t", "-s"])
            .arg(&stored)
            .status()
            .unwrap();
        assert!(t.success(), "flac -t {}", stored.display());
        // Its own duration header: 10 s, within a frame.
        let probed = ffprobe_duration(&stored);
        assert!(
            (probed - f64::from(chunk)).abs() <= 1.0 / rate,
            "chunk {i}: ffprobe {probed}"
        );
        assert!(
            (duration - probed).abs() < 0.01,
            "chunk {i}: header {duration}"
        );
        let own = local.join(format!("chunks/chunk-{i:04}.flac"));
        assert_eq!(*checksum, sha256_file(&own), "chunk {i}");
        joined.extend(decoded(&stored));
    }
    // The chunks hold the capture's audio exactly: the segments, decoded and placed on
    // the timeline, the restart's gap silent.
    let timeline = timeline(&local);
    let frame = 4 * timeline["channels"].as_u64().unwrap() as usize;
    let mut capture = Vec::new();
    for seg in timeline["segments"].as_array().unwrap() {
        let first = seg["first_frame"].as_u64().unwrap() as usize * frame;
        assert!(capture.len() <= first, "segments overlap: {timeline}");
        capture.resize(first, 0);
        let audio = decoded(&local.join(seg["file"].as_str().unwrap()));
        let frames = seg["frames"].as_u64().unwrap() as usize * frame;
        capture.extend_from_slice(&audio[..frames.min(audio.len())]);
    }
    // The window was captured to its end: silence pads it past the last frame.
    assert!(joined.len() >= capture.len() && joined[capture.len()..].iter().all(|&b| b == 0));
    capture.resize(joined.len(), 0);
    assert_eq!(
        events_of(&timeline, "crash_recovered").len(),
        1,
        "{timeline}"
    );
    assert!(
        joined == capture,
        "the chunks' audio differs from the capture's"
    );
    // Rendering beside the capture cost it nothing: no overrun, no device gap.
    for kind in ["overrun", "stall", "device_lost"] {
        assert!(events_of(&timeline, kind).is_empty(), "{kind}: {timeline}");
    }

    // One `chunk_uploaded` per chunk, and the journal says each was acknowledged.
    let uploaded: Vec<_> = (ctl.health_events().into_iter())
        .filter(|e| e["type"] == "agent.recording_job.chunk_uploaded")
        .collect();
    assert_eq!(uploaded.len(), n, "{uploaded:?}");
    // How long after its span's last frame each chunk's acknowledgement was told (chunk
    // 0 includes its three 503s; the last includes the job's end).
    let started = at_ms(&timeline["started_at"]);
    let mut after_span: Vec<(i64, f64)> = uploaded
        .iter()
        .map(|e| {
            let k = e["details"]["chunk"].as_i64().unwrap();
            let span_end = started + (k + 1) * i64::from(chunk) * 1000;
            (k, (at_ms(&e["receivedAt"]) - span_end) as f64 / 1000.0)
        })
        .collect();
    after_span.sort_by_key(|&(k, _)| k);
    let journal =
        edgerec::journal::Journal::open_read_only(&state.path().join("edgerec.db")).unwrap();
    let uploads = journal
        .uploads(&agent_job(state.path(), &job.id).id)
        .unwrap();
    assert_eq!(uploads.len(), n);
    assert!(uploads.iter().all(|u| u.acknowledged_at_ms.is_some()));
    eprintln!(
        "{n} chunks; statuses when chunks 0 and 1 were stored: {seen_while:?}; PUTs by \
         chunk {:?}, killed with {acked_at_kill:?} acknowledged; told {after_span:?} s \
         after the spans ended",
        chunk_puts(&proxy)
    );
    sigterm(&mut agent, Duration::from_secs(10));
}
