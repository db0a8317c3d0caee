//! The controller client against small hand-written servers on 127.0.0.1: canned replies,
//! a blackhole that accepts and never answers, a server that answers one byte per second.
//! Each test asserts what the server received as well as what the client returned.

use edgerec::controller::client::{
    CallError, Client, ClientConfig, ClientError, FileBody, Rendition, UploadRequest,
    format_http_date,
};
use edgerec::controller::protocol::{
    HealthEvent, JobStatus, NodeHeartbeat, NodeStatus, Runtime, Severity,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

const TOKEN: &str = "rakkr_node_c2VjcmV0LXRva2VuLXZhbHVl";

// ---- test servers -------------------------------------------------------------------

/// What the server received.
#[derive(Debug)]
struct Recorded {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A reply to send, or a function of the request that makes one.
type Responder = Box<dyn FnOnce(&Recorded) -> Vec<u8> + Send>;

fn reply(status: u16, body: &str) -> Responder {
    let body = body.to_string();
    Box::new(move |_| response(status, &[], body.as_bytes()))
}

fn response(status: u16, extra_headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Canned\r\n");
    for (k, v) in extra_headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if status != 204 {
        out.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn read_request(stream: &mut TcpStream) -> Recorded {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Recorded {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    }
}

/// Serves one connection per responder, in order; reports each request received.
fn serve(responders: Vec<Responder>) -> (String, mpsc::Receiver<Recorded>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for respond in responders {
            let (mut stream, _) = listener.accept().unwrap();
            let rec = read_request(&mut stream);
            let bytes = respond(&rec);
            let _ = tx.send(rec);
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
        }
    });
    (base, rx)
}

/// Accepts connections and never answers.
fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
        }
    });
    base
}

/// Answers every request one byte per second; with `headers_first`, the headers go at
/// once and only the body dribbles.
fn dribbler(headers_first: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    thread::spawn(move || {
        while let Ok((mut stream, _)) = listener.accept() {
            thread::spawn(move || {
                read_request(&mut stream);
                let body = br#"{"data":{"id":"job_1","status":"running"}}"#;
                let bytes = response(200, &[], body);
                let fast = if headers_first {
                    bytes.len() - body.len()
                } else {
                    0
                };
                if stream.write_all(&bytes[..fast]).is_err() {
                    return;
                }
                for b in &bytes[fast..] {
                    if stream.write_all(&[*b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            });
        }
    });
    base
}

// ---- fixtures -----------------------------------------------------------------------

fn token_file(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join("node.token");
    std::fs::write(&path, format!("  {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config(base: &str, dir: &Path) -> ClientConfig {
    let mut cfg = ClientConfig::new(base, "node_1", token_file(dir, 0o600));
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.read_timeout = Duration::from_secs(5);
    cfg.call_timeout = Duration::from_secs(5);
    cfg.upload_timeout = Duration::from_secs(20);
    cfg
}

fn client(base: &str) -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(config(base, dir.path())).unwrap();
    (client, dir)
}

fn job(id: &str, status: &str) -> Value {
    json!({
        "id": id, "nodeId": "node_1", "recordingId": "rec_1", "status": status,
        "createdAt": "2026-11-23T01:00:00.000Z", "leaseExpiresAt": "2026-11-23T01:00:30.000Z",
        "unknownTopLevel": true,
        "command": {
            "type": "alsa_capture", "captureDevice": "plughw:CARD=USB,DEV=0",
            "captureFormat": "S16_LE", "captureSampleRate": 48000, "captureChannels": 2,
            "durationSeconds": 60, "outputCodec": "wav", "outputFileName": "a.wav",
            "unknownInCommand": [1, 2]
        }
    })
}

fn heartbeat() -> NodeHeartbeat {
    NodeHeartbeat {
        agent_version: "edgerec 0.1.0".into(),
        hostname: "box-1".into(),
        ip_addresses: vec!["10.0.0.5".into()],
        status: NodeStatus::Online,
        runtime: Some(Runtime {
            uptime_seconds: Some(42),
            ..Runtime::default()
        }),
        interfaces: None,
    }
}

fn assert_bearer(rec: &Recorded) {
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

// ---- happy paths --------------------------------------------------------------------

#[test]
fn happy_path_of_the_job_calls() {
    let broken = json!({"id": "job_bad", "nodeId": "node_1", "status": "running",
                        "command": {"captureDevice": "hw:0"}});
    let group = json!({"data": [job("job_1", "running"), broken]}).to_string();
    let (base, rx) = serve(vec![
        reply(202, r#"{"data":{"id":"node_1","status":"online"}}"#),
        reply(200, &group),
        reply(200, &json!({"data": job("job_1", "running")}).to_string()),
        reply(200, &json!({"data": job("job_bad", "failed")}).to_string()),
        reply(
            200,
            &json!({"data": job("job_1", "stop_requested")}).to_string(),
        ),
        reply(200, &json!({"data": job("job_1", "cancelled")}).to_string()),
        reply(204, ""),
    ]);
    let (client, _dir) = client(&base);

    client.node_heartbeat(&heartbeat()).unwrap();
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/nodes/node_1/heartbeat HTTP/1.1"
    );
    assert_bearer(&rec);
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert_eq!(
        rec.json(),
        json!({"agentVersion": "edgerec 0.1.0", "hostname": "box-1",
               "ipAddresses": ["10.0.0.5"], "status": "online",
               "runtime": {"audioBackends": [], "uptimeSeconds": 42}})
    );

    let jobs = client.claim_next_group().unwrap();
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/nodes/node_1/recording-jobs/claim-next-group HTTP/1.1"
    );
    assert_bearer(&rec);
    assert!(rec.body.is_empty());
    assert_eq!(jobs.len(), 2);
    let valid = jobs[0].validate().unwrap();
    assert_eq!(valid.id, "job_1");
    assert_eq!(valid.sample_rate, 48000);
    let rejection = jobs[1].validate().unwrap_err();
    assert_eq!(rejection.job_id.as_deref(), Some("job_bad"));

    let hb = client.job_heartbeat("job_1").unwrap();
    assert_eq!(hb.status, Some(JobStatus::Running));
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/recording-jobs/job_1/heartbeat HTTP/1.1"
    );
    assert_bearer(&rec);

    // The broken job is reported failed with the validation's reason.
    client.post_failed("job_bad", &rejection.reason()).unwrap();
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/recording-jobs/job_bad/failed HTTP/1.1"
    );
    assert_bearer(&rec);
    assert_eq!(
        rec.header("x-rakkr-reason"),
        Some("invalid_job: recordingId missing")
    );
    assert!(rec.body.is_empty());

    let polled = client.get_job("job_1").unwrap();
    assert_eq!(polled.status, Some(JobStatus::StopRequested));
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "GET /api/v1/recording-jobs/job_1 HTTP/1.1"
    );
    assert_bearer(&rec);

    client
        .post_cancelled("job_1", "controller_stop_requested")
        .unwrap();
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/recording-jobs/job_1/cancelled HTTP/1.1"
    );
    assert_eq!(
        rec.header("x-rakkr-reason"),
        Some("controller_stop_requested")
    );

    assert!(
        client.claim_next_group().unwrap().is_empty(),
        "204 = nothing"
    );
    rx.recv().unwrap();
}

#[test]
fn happy_path_of_the_node_calls() {
    let config = json!({"data": {"recordingCapacity": {"maxConcurrentRecordings": 2},
        "recorderCachePolicies": [{"policyId": "p1", "deleteAfterUpload": true,
        "maxAgeDays": null, "maxBytes": null, "minFreeDiskPercent": null}],
        "audioDefaults": null, "newThing": 1}});
    let maps = json!({"data": [{"assignment": {"assignedAt": "2026-11-01T00:00:00Z",
        "id": "asg_1", "targetId": "node_1", "targetType": "node", "templateId": "tpl_1"},
        "template": {"channelMode": "stereo", "id": "tpl_1", "name": "Room", "tags": [],
        "entries": [{"included": true, "label": "L", "outputChannelIndex": 1,
                     "sourceChannelIndex": 1}]}}]});
    let (base, rx) = serve(vec![
        reply(200, &config.to_string()),
        reply(201, r#"{"data":{"id":"evt_srv_1"}}"#),
        reply(200, r#"{"data":{"id":"evt_srv_2"}}"#),
        reply(200, &maps.to_string()),
    ]);
    let (client, _dir) = client(&base);

    let cfg = client.node_config().unwrap();
    assert_eq!(cfg.recording_capacity.max_concurrent_recordings, 2);
    assert!(cfg.recorder_cache_policies[0].delete_after_upload);
    let rec = rx.recv().unwrap();
    assert_eq!(rec.request_line, "GET /api/v1/nodes/node_1/config HTTP/1.1");
    assert_bearer(&rec);

    let mut ev = HealthEvent::new("agent.capture.device_lost", Severity::Warning);
    ev.id = Some("local_7".into());
    ev.details.insert("device".into(), json!("hw:CARD=USB"));
    client.health_event(&ev).unwrap();
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "POST /api/v1/nodes/node_1/health-events HTTP/1.1"
    );
    assert_eq!(
        rec.json(),
        json!({"type": "agent.capture.device_lost", "severity": "warning",
               "details": {"device": "hw:CARD=USB"}, "id": "local_7"})
    );

    // Any success means the event is stored (Rakkr answers 201): resending after a 200
    // would duplicate it on a server that keeps no idempotency.
    client.health_event(&ev).unwrap();
    rx.recv().unwrap();

    let bundles = client.channel_map_assignments().unwrap();
    assert_eq!(bundles[0].template.entries[0].label, "L");
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "GET /api/v1/nodes/node_1/channel-map-assignments HTTP/1.1"
    );

    // A reserved event type is refused before sending anything.
    let reserved = HealthEvent::new("controller.nope", Severity::Info);
    assert!(matches!(
        client.health_event(&reserved),
        Err(CallError::Invalid(_))
    ));
}

// ---- errors -------------------------------------------------------------------------

#[test]
fn status_errors_say_what_to_do() {
    let (base, rx) = serve(vec![
        reply(500, r#"{"error":"Internal"}"#),
        reply(503, "store down"),
        reply(200, r#"{"data": {"id": "job_1", "status": "runn"#),
        reply(200, "<html>proxy</html>"),
        reply(
            409,
            r#"{"error":"Recording job is not heartbeatable","status":"stop_requested"}"#,
        ),
        reply(401, r#"{"error":"Invalid node credential"}"#),
        reply(404, r#"{"error":"Recording job not found"}"#),
        reply(
            400,
            r#"{"error":"Invalid health event","issues":[{"code":"unrecognized_keys"}]}"#,
        ),
    ]);
    let (client, _dir) = client(&base);

    let e = client.get_job("job_1").unwrap_err();
    assert!(
        matches!(&e, CallError::Server { status: 500, body } if body.error == "Internal"),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let e = client.get_job("job_1").unwrap_err();
    assert!(
        matches!(&e, CallError::Server { status: 503, body } if body.error == "store down"),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let e = client.get_job("job_1").unwrap_err();
    assert!(matches!(e, CallError::Malformed(_)), "{e:?}");
    assert!(e.is_retryable());
    let e = client.node_config().unwrap_err();
    assert!(matches!(e, CallError::Malformed(_)), "{e:?}");

    let e = client.job_heartbeat("job_1").unwrap_err();
    match &e {
        CallError::Conflict(body) => assert_eq!(body.error, "Recording job is not heartbeatable"),
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());
    assert_eq!(e.status(), Some(409));

    let e = client.get_job("job_1").unwrap_err();
    assert!(matches!(e, CallError::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable());

    let e = client.post_cancelled("job_1", "").unwrap_err();
    assert!(matches!(e, CallError::NotFound(_)), "{e:?}");

    let e = client
        .health_event(&HealthEvent::new("agent.x", Severity::Info))
        .unwrap_err();
    match &e {
        CallError::Rejected { status: 400, body } => {
            assert_eq!(body.issues.as_ref().unwrap().len(), 1)
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());

    let recs: Vec<Recorded> = rx.iter().take(8).collect();
    assert_eq!(recs[6].header("x-rakkr-reason"), Some("agent_cancelled"));
}

#[test]
fn unreachable_controller() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (client, _dir) = client(&format!("http://127.0.0.1:{port}/api/v1"));
    let e = client.get_job("job_1").unwrap_err();
    assert!(matches!(e, CallError::Unreachable(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn blackhole_ends_within_the_timeout() {
    let base = blackhole();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&base, dir.path());
    cfg.read_timeout = Duration::from_secs(1);
    cfg.call_timeout = Duration::from_secs(1);
    let client = Client::new(cfg).unwrap();
    let started = Instant::now();
    let e = client.job_heartbeat("job_1").unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(e, CallError::Timeout(_)), "{e:?}");
    assert!(e.is_retryable());
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn one_byte_per_second_ends_within_the_global_timeout() {
    // The read timeout alone would allow 30 s; the global one ends the call.
    for headers_first in [false, true] {
        let base = dribbler(headers_first);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&base, dir.path());
        cfg.read_timeout = Duration::from_secs(30);
        cfg.call_timeout = Duration::from_millis(1500);
        let client = Client::new(cfg).unwrap();
        let started = Instant::now();
        let e = client.get_job("job_1").unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(e, CallError::Timeout(_)),
            "headers first {headers_first}: {e:?}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "headers first {headers_first}: {elapsed:?}"
        );
    }
}

/// Each call kind has its own bound: a job heartbeat or poll that dribbles ends at the
/// short job-call timeout and a claim at the claim timeout, while ordinary calls keep
/// the longer one.
#[test]
fn job_calls_and_claims_have_their_own_short_bounds() {
    let base = dribbler(true);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&base, dir.path());
    cfg.read_timeout = Duration::from_secs(30);
    cfg.call_timeout = Duration::from_secs(30);
    cfg.job_call_timeout = Duration::from_millis(800);
    cfg.claim_timeout = Duration::from_millis(1200);
    let client = Client::new(cfg).unwrap();
    let bounded = |what: &str, bound: Duration, call: &dyn Fn() -> Option<CallError>| {
        let started = Instant::now();
        let e = call().unwrap_or_else(|| panic!("{what}: a dribbled reply cannot succeed"));
        let elapsed = started.elapsed();
        eprintln!("{what}: {e} after {elapsed:?}");
        assert!(matches!(e, CallError::Timeout(_)), "{what}: {e:?}");
        assert!(
            elapsed >= bound && elapsed < bound + Duration::from_millis(900),
            "{what}: {elapsed:?} for a bound of {bound:?}"
        );
    };
    let ms = Duration::from_millis;
    bounded("job heartbeat", ms(800), &|| {
        client.job_heartbeat("job_1").err()
    });
    bounded("job poll", ms(800), &|| client.get_job("job_1").err());
    bounded("claim", ms(1200), &|| client.claim_next_group().err());
}

// ---- construction -------------------------------------------------------------------

#[test]
fn token_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ClientConfig::new("http://127.0.0.1:1/api/v1", "node_1", "");
    for mode in [0o644, 0o640, 0o604, 0o620] {
        cfg.token_file = token_file(dir.path(), mode);
        let e = Client::new(cfg.clone()).unwrap_err();
        assert!(
            matches!(e, ClientError::TokenPermissions { .. }),
            "{mode:o}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", cfg.token_file.display())),
            "{msg}"
        );
        assert!(!msg.contains(TOKEN));
    }
    for mode in [0o600, 0o400] {
        cfg.token_file = token_file(dir.path(), mode);
        Client::new(cfg.clone()).unwrap();
    }
    std::fs::write(&cfg.token_file, " \n").ok();
    std::fs::set_permissions(&cfg.token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        Client::new(cfg.clone()),
        Err(ClientError::BadToken { .. })
    ));
    cfg.token_file = dir.path().join("missing");
    assert!(matches!(
        Client::new(cfg),
        Err(ClientError::TokenFile { .. })
    ));
}

#[test]
fn plain_http_off_loopback_is_refused_before_any_traffic() {
    // A listener on a loopback port stands in for "the network": with the non-loopback
    // URL refused at construction, no call can exist to reach anything.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("http://192.0.2.10:8787/api/v1", dir.path());
    let e = Client::new(cfg.clone()).unwrap_err();
    assert!(matches!(e, ClientError::Insecure { .. }), "{e:?}");
    assert!(e.to_string().contains("allow_insecure"));
    cfg.base_url = "http://controller.example:8787/api/v1".into();
    assert!(matches!(
        Client::new(cfg.clone()),
        Err(ClientError::Insecure { .. })
    ));
    cfg.allow_insecure = true;
    Client::new(cfg.clone()).unwrap();
    cfg.allow_insecure = false;
    for ok in [
        "https://controller.example/api/v1",
        "http://localhost:8787/api/v1",
        "http://127.0.0.1:8787/api/v1",
        "http://[::1]:8787/api/v1",
    ] {
        cfg.base_url = ok.into();
        Client::new(cfg.clone()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn token_never_appears_in_debug_output() {
    let (client, _dir) = client("http://127.0.0.1:9/api/v1");
    let shown = format!("{client:?} {client:#?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
    assert!(shown.contains("redacted"));
}

#[test]
fn token_reload_after_401() {
    let (base, rx) = serve(vec![
        reply(401, r#"{"error":"Invalid node credential"}"#),
        reply(200, &json!({"data": job("job_1", "running")}).to_string()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&base, dir.path());
    let client = Client::new(cfg.clone()).unwrap();
    assert!(matches!(
        client.get_job("job_1"),
        Err(CallError::Unauthorized(_))
    ));
    std::fs::write(&cfg.token_file, "rakkr_node_new\n").unwrap();
    client.reload_token().unwrap();
    client.get_job("job_1").unwrap();
    let recs: Vec<Recorded> = rx.iter().take(2).collect();
    assert_eq!(
        recs[1].header("authorization"),
        Some("Bearer rakkr_node_new")
    );
}

// ---- clock skew ---------------------------------------------------------------------

#[test]
fn clock_skew_from_the_date_header() {
    let ahead = format_http_date(SystemTime::now() + Duration::from_secs(3600));
    let now = format_http_date(SystemTime::now());
    let (base, _rx) = serve(vec![
        Box::new(move |_| response(202, &[("date", &ahead)], b"{}")),
        Box::new(move |_| response(202, &[("date", &now)], b"{}")),
    ]);
    let (client, _dir) = client(&base);
    assert_eq!(client.clock_skew(), None);
    client.node_heartbeat(&heartbeat()).unwrap();
    let skew = client.clock_skew().unwrap();
    assert!(skew.controller_ahead());
    assert!((skew.as_millis() - 3_600_000).abs() < 2_000, "{skew}");
    client.node_heartbeat(&heartbeat()).unwrap();
    assert!(client.clock_skew().unwrap().magnitude() < Duration::from_secs(2));
}

// ---- upload -------------------------------------------------------------------------

fn write_random_file(path: &Path, len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, &data).unwrap();
    hex(&Sha256::digest(&data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replies 201 with the checksum of what it received (or a wrong one).
fn storing_server(lie: bool) -> Responder {
    Box::new(move |rec: &Recorded| {
        let sum = if lie {
            "0".repeat(64)
        } else {
            hex(&Sha256::digest(&rec.body))
        };
        let body = json!({"data": {
            "file": {"cachePath": "cache/rec_1/a.wav", "checksum": format!("sha256:{sum}"),
                     "durationSeconds": 30.5, "fileName": "a.wav", "mimeType": "audio/wav",
                     "size": rec.body.len()},
            "recording": {"id": "rec_1", "status": "cached"},
            "uploadQueueItems": [], "chunk": {"index": 1}}});
        response(201, &[], body.to_string().as_bytes())
    })
}

#[test]
fn upload_streams_the_file_and_checks_the_checksum() {
    const LEN: usize = 5 * 1024 * 1024;
    let (base, rx) = serve(vec![storing_server(false), storing_server(true)]);
    let (client, dir) = client(&base);
    let path = dir.path().join("a.wav");
    let file_sha = write_random_file(&path, LEN);
    let body = FileBody(path.clone());
    let req = UploadRequest {
        body: &body,
        job_id: "job_1",
        file_name: "a.wav",
        mime_type: "audio/wav",
        duration_seconds: 30.5,
        rendition: None,
        chunk: Some(0),
        chunk_total: Some(1),
    };

    let stored = client.put_cache_file("rec_1", &req).unwrap();
    assert_eq!(stored.checksum, format!("sha256:{file_sha}"));
    assert_eq!(stored.size, LEN as u64);

    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "PUT /api/v1/recordings/rec_1/cache-file?chunk=0&chunkTotal=1 HTTP/1.1"
    );
    assert_bearer(&rec);
    assert_eq!(rec.header("content-length"), Some(LEN.to_string().as_str()));
    assert_eq!(rec.header("transfer-encoding"), None);
    assert_eq!(rec.header("content-type"), Some("audio/wav"));
    assert_eq!(rec.header("x-rakkr-duration-seconds"), Some("30.5"));
    assert_eq!(rec.header("x-rakkr-file-name"), Some("a.wav"));
    assert_eq!(rec.header("x-rakkr-recording-job-id"), Some("job_1"));
    assert_eq!(rec.body.len(), LEN);
    assert_eq!(hex(&Sha256::digest(&rec.body)), file_sha);

    // A controller that stored something else: retry, delete nothing.
    let raw = UploadRequest {
        rendition: Some(Rendition::Raw),
        chunk: None,
        chunk_total: None,
        ..req.clone()
    };
    let e = client.put_cache_file("rec_1", &raw).unwrap_err();
    assert!(matches!(e, CallError::ChecksumMismatch { .. }), "{e:?}");
    assert!(e.is_retryable());
    let rec = rx.recv().unwrap();
    assert_eq!(
        rec.request_line,
        "PUT /api/v1/recordings/rec_1/cache-file?rendition=raw HTTP/1.1"
    );

    // Refused locally, nothing sent: a missing file, an empty one, a bad chunk total.
    let missing = dir.path().join("gone.wav");
    let e = client
        .put_cache_file(
            "rec_1",
            &UploadRequest {
                body: &FileBody(missing),
                ..req.clone()
            },
        )
        .unwrap_err();
    assert!(matches!(e, CallError::LocalFile { .. }), "{e:?}");
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let e = client
        .put_cache_file(
            "rec_1",
            &UploadRequest {
                body: &FileBody(empty),
                ..req.clone()
            },
        )
        .unwrap_err();
    assert!(matches!(e, CallError::Invalid(_)), "{e:?}");
    let e = client
        .put_cache_file(
            "rec_1",
            &UploadRequest {
                chunk: Some(3),
                ..req.clone()
            },
        )
        .unwrap_err();
    assert!(matches!(e, CallError::Invalid(_)), "{e:?}");
}

/// A controller that keeps connections alive (as HTTP/1.1 servers do by default) gets one
/// connection for a run of calls: no connect, no resolver thread, no handshake per call.
#[test]
fn calls_reuse_a_kept_alive_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let tx = tx.clone();
            thread::spawn(move || {
                // Each request on this connection, answered 202 and kept open.
                loop {
                    let mut peek = [0u8; 1];
                    if stream.peek(&mut peek).map_or(true, |got| got == 0) {
                        return;
                    }
                    let rec = read_request(&mut stream);
                    let _ = tx.send((n, rec.request_line));
                    let reply = "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n\
                                 content-length: 2\r\n\r\n{}";
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (client, _dir) = client(&base);
    for _ in 0..3 {
        client.node_heartbeat(&heartbeat()).unwrap();
    }
    let seen: Vec<(usize, String)> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert!(
        seen.iter()
            .all(|(conn, line)| *conn == 0 && line.contains("/heartbeat")),
        "{seen:?}"
    );
}
