//! A hostile recorder-node controller on 127.0.0.1: real HTTP over a std `TcpListener`,
//! answering the agent's calls from a script (hostile jobs, malformed JSON, lying
//! `Content-Length`, 1 byte per second) and recording what the agent sent and when.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 `{"data": value}`.
    Data(Value),
    /// 204, no body.
    NoContent,
    /// These bytes after the status line and headers (`Content-Length` is set right).
    Body(Vec<u8>),
    /// A status line and headers claiming `declared` bytes, then `body`, then close.
    LyingLength { declared: u64, body: Vec<u8> },
    /// A valid reply written one byte every `every`.
    Trickle { body: Vec<u8>, every: Duration },
    /// This status with a JSON error body.
    Status(u16, &'static str),
}

/// What the agent sent, with when.
#[derive(Default)]
pub struct Seen {
    /// Controller job id (decoded) -> times of its heartbeats.
    pub heartbeats: HashMap<String, Vec<Instant>>,
    /// (decoded job id, x-rakkr-reason, when).
    pub failed: Vec<(String, String, Instant)>,
    pub cancelled: Vec<(String, String, Instant)>,
    /// When each claim was answered, and by which script entry (None: 204).
    pub claims: Vec<(Instant, Option<usize>)>,
    /// (decoded recording id, bytes, checksum it was answered with, when).
    pub uploads: Vec<(String, u64, String, Instant)>,
    pub health_events: Vec<Value>,
    /// Every request line, decoded.
    pub requests: Vec<String>,
}

/// Per call kind, how to answer; `None` is the normal answer.
#[derive(Default)]
pub struct Script {
    pub claims: VecDeque<Reply>,
    /// Answer for node config (every time).
    pub config: Option<Reply>,
    /// Answer for node heartbeat and inventory (every time).
    pub node: Option<Reply>,
    /// Job ids whose heartbeats trickle.
    pub slow_heartbeats: Vec<String>,
    /// Recording ids whose upload replies trickle.
    pub slow_uploads: Vec<String>,
    /// Job ids the controller forgets once claimed: every later call about them (and
    /// their recording) answers 404.
    pub forgotten: Vec<String>,
    /// Count of claims answered so far from the script.
    pub served: usize,
    /// Seconds the controller's clock (every reply's `Date`) is ahead of the box's.
    pub clock_offset_s: i64,
}

pub struct Hostile {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    pub fn start(script: Script) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script = Arc::new(Mutex::new(script));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, sc, st) = (seen.clone(), script.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (s, sc) = (s.clone(), sc.clone());
                std::thread::spawn(move || serve(conn, &s, &sc));
            }
        });
        Hostile {
            addr,
            seen,
            script,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

/// A job the agent can run (synth backend), as the controller sends it.
pub fn good_job(id: &str, seconds: f64) -> Value {
    json!({
        "id": id,
        "nodeId": "node_hostile",
        "recordingId": format!("rec_{id}"),
        "status": "running",
        "command": {
            "type": "alsa_capture",
            "captureBackend": "alsa",
            "captureDevice": "sine:440",
            "captureFormat": "S16_LE",
            "captureSampleRate": 48000,
            "captureChannels": 2,
            "durationSeconds": seconds,
            "outputFileName": format!("{id}.wav"),
        }
    })
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

fn serve(conn: TcpStream, seen: &Mutex<Seen>, script: &Mutex<Script>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let Some(req) = read_head(&mut reader) else {
        return;
    };
    // Read (and hash) the body so the client's send completes.
    let len: u64 = req
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut hasher = sha2::Sha256::new();
    // Small bodies (JSON) are kept for the answer to look at; uploads are only hashed.
    let mut small = Vec::new();
    let read = if len <= 64 * 1024 {
        let n = (&mut reader).take(len).read_to_end(&mut small).unwrap_or(0) as u64;
        hasher.update(&small);
        n
    } else {
        std::io::copy(&mut (&mut reader).take(len), &mut hasher).unwrap_or(0)
    };
    let digest = format!("sha256:{:x}", hasher.finalize());
    let reply = answer(&req, seen, script, read, &digest, &small);
    let offset = script.lock().map_or(0, |s| s.clock_offset_s);
    write_reply(conn, reply, offset);
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

/// Percent-decodes a path segment (lossy: the agent encodes UTF-8).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(
    req: &Request,
    seen: &Mutex<Seen>,
    script: &Mutex<Script>,
    body_len: u64,
    digest: &str,
    body: &[u8],
) -> Reply {
    let now = Instant::now();
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let parts: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    seen.lock()
        .unwrap()
        .requests
        .push(format!("{} {}", req.method, decode(&path)));
    let reason = req
        .headers
        .get("x-rakkr-reason")
        .cloned()
        .unwrap_or_default();
    if forgotten(req.method.as_str(), &parts, script) {
        return Reply::Status(404, "Recording job not found");
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["nodes", _, "heartbeat" | "inventory"]) => script
            .lock()
            .unwrap()
            .node
            .clone()
            .unwrap_or(Reply::Data(json!({}))),
        ("GET", ["nodes", _, "config"]) => script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
            .unwrap_or(Reply::Data(
                json!({"recordingCapacity": {"maxConcurrentRecordings": 8}}),
            )),
        ("POST", ["nodes", _, "health-events"]) => {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .health_events
                .push(serde_json::from_slice(body).unwrap_or(json!({})));
            Reply::Data(json!({"id": "hev_1"}))
        }
        ("POST", ["nodes", _, "recording-jobs", "claim-next-group"]) => {
            let mut sc = script.lock().unwrap_or_else(|p| p.into_inner());
            let reply = sc.claims.pop_front();
            let index = reply.as_ref().map(|_| sc.served);
            if reply.is_some() {
                sc.served += 1;
            }
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .claims
                .push((now, index));
            reply.unwrap_or(Reply::NoContent)
        }
        ("POST", ["recording-jobs", id, "heartbeat"]) => {
            let id = decode(id);
            seen.lock()
                .unwrap()
                .heartbeats
                .entry(id.clone())
                .or_default()
                .push(now);
            let body = serde_json::to_vec(&json!({"data": {"id": id, "status": "running"}}));
            if script
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .slow_heartbeats
                .contains(&id)
            {
                Reply::Trickle {
                    body: body.unwrap(),
                    every: Duration::from_secs(1),
                }
            } else {
                Reply::Body(body.unwrap())
            }
        }
        ("GET", ["recording-jobs", id]) => {
            Reply::Data(json!({"id": decode(id), "status": "running"}))
        }
        ("POST", ["recording-jobs", id, "failed"]) => {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed
                .push((decode(id), reason, now));
            Reply::Data(json!({}))
        }
        ("POST", ["recording-jobs", id, "cancelled"]) => {
            seen.lock()
                .unwrap()
                .cancelled
                .push((decode(id), reason, now));
            Reply::Data(json!({}))
        }
        ("PUT", ["recordings", rec, "cache-file"]) => {
            let rec = decode(rec);
            let data = json!({
                "file": {"checksum": digest, "size": body_len, "cachePath": "x"},
                "recording": {}, "uploadQueueItems": []
            });
            let slow = script
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .slow_uploads
                .contains(&rec);
            if slow {
                return Reply::Trickle {
                    body: serde_json::to_vec(&json!({ "data": data })).unwrap(),
                    every: Duration::from_secs(1),
                };
            }
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .uploads
                .push((rec, body_len, digest.to_string(), now));
            Reply::Data(data)
        }
        _ => Reply::Body(br#"{"error":"not_found"}"#.to_vec()),
    }
}

/// Whether the call is about a job (or its recording) the script says was forgotten.
fn forgotten(method: &str, parts: &[&str], script: &Mutex<Script>) -> bool {
    let sc = script.lock().unwrap_or_else(|p| p.into_inner());
    let about = match (method, parts) {
        (_, ["recording-jobs", id, ..]) => decode(id),
        ("PUT", ["recordings", rec, "cache-file"]) => {
            decode(rec).trim_start_matches("rec_").to_string()
        }
        _ => return false,
    };
    sc.forgotten.contains(&about)
}

fn write_reply(mut conn: TcpStream, reply: Reply, clock_offset_s: i64) {
    let now = std::time::SystemTime::now();
    let offset = Duration::from_secs(clock_offset_s.unsigned_abs());
    let date = edgerec::controller::client::format_http_date(if clock_offset_s >= 0 {
        now + offset
    } else {
        now - offset
    });
    let head = |status: &str, len: u64| {
        format!(
            "HTTP/1.1 {status}\r\ndate: {date}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        )
    };
    let _ = conn.set_write_timeout(Some(Duration::from_secs(20)));
    let result = match reply {
        Reply::Data(v) => {
            let body = serde_json::to_vec(&json!({ "data": v })).unwrap();
            conn.write_all(head("200 OK", body.len() as u64).as_bytes())
                .and_then(|_| conn.write_all(&body))
        }
        Reply::NoContent => conn.write_all(
            format!(
                "HTTP/1.1 204 No Content\r\ndate: {date}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        Reply::Body(body) => conn
            .write_all(head("200 OK", body.len() as u64).as_bytes())
            .and_then(|_| conn.write_all(&body)),
        Reply::LyingLength { declared, body } => conn
            .write_all(head("200 OK", declared).as_bytes())
            .and_then(|_| conn.write_all(&body)),
        Reply::Status(code, error) => {
            let body = serde_json::to_vec(&json!({ "error": error })).unwrap();
            let status = format!("{code} Error");
            conn.write_all(head(&status, body.len() as u64).as_bytes())
                .and_then(|_| conn.write_all(&body))
        }
        Reply::Trickle { body, every } => {
            let mut r = conn.write_all(head("200 OK", body.len() as u64).as_bytes());
            for b in body {
                if r.is_err() {
                    break;
                }
                std::thread::sleep(every);
                r = conn.write_all(&[b]).and_then(|_| conn.flush());
            }
            r
        }
    };
    let _ = result;
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// The largest gap between consecutive times, and how many there were.
pub fn largest_gap(times: &[Instant]) -> (Duration, usize) {
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (gap, times.len())
}

/// Every file and directory under `root`, relative, sorted.
pub fn tree(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a whole stream into a string, lossily (the agent's stderr).
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}
