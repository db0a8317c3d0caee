//! The reference controller over real HTTP on 127.0.0.1 (port 0) with a real SQLite file
//! in a temp dir. The client is a hand-written HTTP/1.1 exchange over `TcpStream` (so the
//! tests control every byte: missing headers, huge declared lengths, stalls), plus `ureq`
//! where a real client's framing matters.

use edgerec_controller::{
    Admin, JobStatus, JobSummary, NewJobSpec, RecordingStatus, Server, ServerConfig, StoppedUpload,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// Reads a whole reply (the server closes after each one) and checks the `Date` header.
fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    let date = reply.header("date").expect("every reply has a Date header");
    assert!(date.ends_with(" GMT"), "{date}");
    reply
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// One request with a `Content-Length` body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut s = connect(addr);
    let mut head = format!(
        "{method} /api/v1{path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_reply(&mut s)
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

struct Ctl {
    dir: TempDir,
    server: Option<Server>,
    addr: SocketAddr,
    admin: Admin,
}

struct Node {
    id: String,
    token: String,
}

impl Ctl {
    fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Ctl {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join("controller.db"),
            dir.path().join("store"),
        );
        tweak(&mut cfg);
        let server = Server::start(cfg).unwrap();
        let addr = server.addr();
        assert!(server.base_url().starts_with("http://127.0.0.1:"));
        let admin = Admin::open(&dir.path().join("controller.db")).unwrap();
        Ctl {
            dir,
            server: Some(server),
            addr,
            admin,
        }
    }

    /// 1 s leases, 200 ms runner.
    fn fast() -> Ctl {
        Ctl::start(|c| {
            c.lease = Duration::from_secs(1);
            c.lease_runner_interval = Duration::from_millis(200);
        })
    }

    fn node(&self, name: &str) -> Node {
        let (id, token) = self.admin.add_node(name).unwrap();
        Node { id, token }
    }

    fn job(&self, node: &Node) -> JobSummary {
        self.admin
            .add_job(&NewJobSpec::new(&node.id, "hw:CARD=USB", 30.0))
            .unwrap()
    }

    fn post(&self, node: &Node, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![bearer(&node.token)];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json".into()));
        }
        http(self.addr, "POST", path, &headers, body.as_bytes())
    }

    fn get(&self, node: &Node, path: &str) -> Reply {
        http(self.addr, "GET", path, &[bearer(&node.token)], b"")
    }

    fn job_status(&self, node: &Node, job: &str) -> Value {
        self.get(node, &format!("/recording-jobs/{job}"))
            .expect(200)
            .data()
    }

    fn claim(&self, node: &Node) -> Value {
        self.post(
            node,
            &format!("/nodes/{}/recording-jobs/claim-next-group", node.id),
            None,
        )
        .expect(200)
        .data()
    }

    fn put(&self, node: &Node, job: &JobSummary, query: &str, bytes: &[u8]) -> Reply {
        let headers = [
            bearer(&node.token),
            ("Content-Type", "audio/wav".into()),
            ("x-rakkr-duration-seconds", "1.5".into()),
            ("x-rakkr-file-name", "take.wav".into()),
            ("x-rakkr-recording-job-id", job.id.clone()),
        ];
        let path = format!("/recordings/{}/cache-file{query}", job.recording_id);
        http(self.addr, "PUT", &path, &headers, bytes)
    }

    fn store_file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("store").join(rel)).unwrap()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn heartbeat_body() -> Value {
    json!({"agentVersion": "edgerec 0.1.0", "hostname": "box-1",
           "ipAddresses": ["10.0.0.5"], "status": "online",
           "runtime": {"audioBackends": ["alsa"], "uptimeSeconds": 5}})
}

fn audio(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------

#[test]
fn auth_401_and_403() {
    let ctl = Ctl::start(|_| {});
    let a = ctl.node("a");
    let b = ctl.node("b");
    let job_b = ctl.job(&b);
    let hb = heartbeat_body().to_string();
    let path = format!("/nodes/{}/heartbeat", a.id);

    let r = http(ctl.addr, "POST", &path, &[], hb.as_bytes()).expect(401);
    assert_eq!(r.json(), json!({"error": "Node credential required"}));
    let bad = [("Authorization", "Bearer rakkr_node_nope".to_string())];
    http(ctl.addr, "POST", &path, &bad, hb.as_bytes()).expect(401);
    let basic = [("Authorization", format!("Basic {}", a.token))];
    http(ctl.addr, "POST", &path, &basic, hb.as_bytes()).expect(401);

    // The token's node is not the path's node.
    let r = ctl.post(
        &a,
        &format!("/nodes/{}/heartbeat", b.id),
        Some(heartbeat_body()),
    );
    assert_eq!(
        r.expect(403).json()["error"],
        "Node credential cannot access this node"
    );
    ctl.get(&a, &format!("/nodes/{}/config", b.id)).expect(403);
    ctl.post(
        &a,
        &format!("/nodes/{}/recording-jobs/claim-next-group", b.id),
        None,
    )
    .expect(403);
    // Another node's job and recording.
    ctl.get(&a, &format!("/recording-jobs/{}", job_b.id))
        .expect(403);
    ctl.post(&a, &format!("/recording-jobs/{}/heartbeat", job_b.id), None)
        .expect(403);
    ctl.post(&a, &format!("/recording-jobs/{}/cancelled", job_b.id), None)
        .expect(403);
    ctl.put(&a, &job_b, "", b"abc").expect(403);
    // Unknown ids.
    ctl.get(&a, "/recording-jobs/job_nope").expect(404);
    http(ctl.addr, "GET", "/nope", &[], b"").expect(404);

    // The right token works, and only its hash is stored.
    ctl.post(&a, &path, Some(heartbeat_body())).expect(202);
    let db = std::fs::read(ctl.dir.path().join("controller.db")).unwrap();
    let token = a.token.as_bytes();
    assert!(!db.windows(token.len()).any(|w| w == token));
}

// ---------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------

#[test]
fn two_concurrent_claimers_never_share_a_job() {
    let ctl = Ctl::start(|_| {});
    let node = Arc::new(ctl.node("box"));
    let ids: Vec<String> = (0..24).map(|_| ctl.job(&node).id).collect();
    let barrier = Arc::new(Barrier::new(2));
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let (node, barrier, addr) = (node.clone(), barrier.clone(), ctl.addr);
            thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                loop {
                    let path = format!("/nodes/{}/recording-jobs/claim-next", node.id);
                    let r = http(addr, "POST", &path, &[bearer(&node.token)], b"");
                    match r.status {
                        200 => mine.push(r.data()["id"].as_str().unwrap().to_string()),
                        204 => return mine,
                        s => panic!("claim-next: {s}"),
                    }
                }
            })
        })
        .collect();
    let mut all: Vec<String> = claimers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "every job claimed exactly once");

    // The single-job claim: exactly one of two simultaneous claimers wins.
    for _ in 0..5 {
        let job = ctl.job(&node);
        let barrier = Arc::new(Barrier::new(2));
        let statuses: Vec<u16> = (0..2)
            .map(|_| {
                let (node, barrier, addr, id) =
                    (node.clone(), barrier.clone(), ctl.addr, job.id.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let path = format!("/recording-jobs/{id}/claim");
                    http(addr, "POST", &path, &[bearer(&node.token)], b"").status
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [200, 409], "{statuses:?}");
    }
}

#[test]
fn claim_sets_running_lease_and_recording_status() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let path = format!("/nodes/{}/recording-jobs/claim-next-group", node.id);
    let r = ctl.post(&node, &path, None).expect(204);
    assert!(r.body.is_empty());
    let job = ctl.job(&node);
    let before = Instant::now();
    let claimed = ctl.claim(&node);
    assert_eq!(claimed.as_array().unwrap().len(), 1);
    let c = &claimed[0];
    assert_eq!(c["id"], job.id.as_str());
    assert_eq!(c["status"], "running");
    assert_eq!(c["claimedBy"], node.id.as_str());
    for k in [
        "startedAt",
        "leaseExpiresAt",
        "createdAt",
        "lastHeartbeatAt",
    ] {
        let t = c[k].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 24, "{k}: {t}");
    }
    assert_eq!(c["command"]["captureDevice"], "hw:CARD=USB");
    assert_eq!(
        c["command"]["outputFileName"],
        format!("{}.wav", job.recording_id)
    );
    let lease = lease_ms(c) - started_ms(c);
    assert_eq!(lease, 30_000);
    assert!(before.elapsed() < Duration::from_secs(5));
    let rec = ctl.admin.recording(&job.recording_id).unwrap().unwrap();
    assert_eq!(rec.status, RecordingStatus::Recording);
    ctl.post(&node, &format!("/recording-jobs/{}/claim", job.id), None)
        .expect(409);
}

fn ms(v: &Value) -> i64 {
    let t = humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn lease_ms(job: &Value) -> i64 {
    ms(&job["leaseExpiresAt"])
}

fn started_ms(job: &Value) -> i64 {
    ms(&job["startedAt"])
}

#[test]
fn capture_group_is_claimed_together() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let other = ctl.node("other");
    let spec = |group: Option<&str>, sel: u16| {
        let mut s = NewJobSpec::new(&node.id, "hw:CARD=X32", 60.0);
        s.capture_channels = 8;
        s.capture_channel_selection = Some(vec![sel]);
        s.capture_group_id = group.map(str::to_string);
        s
    };
    let a = ctl.admin.add_job(&spec(Some("g1"), 1)).unwrap();
    thread::sleep(Duration::from_millis(5));
    let b = ctl.admin.add_job(&spec(None, 2)).unwrap();
    thread::sleep(Duration::from_millis(5));
    let c = ctl.admin.add_job(&spec(Some("g1"), 3)).unwrap();
    thread::sleep(Duration::from_millis(5));
    let d = ctl.admin.add_job(&spec(Some("g2"), 4)).unwrap();
    // Another node's job in the same group id is not this node's.
    let mut foreign = spec(Some("g1"), 1);
    foreign.node_id = other.id.clone();
    let foreign = ctl.admin.add_job(&foreign).unwrap();

    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(ctl.claim(&node)), [a.id.clone(), c.id.clone()]);
    assert_eq!(ids(ctl.claim(&node)), vec![b.id]);
    // claim-next takes one job even if it has a group.
    let one = ctl
        .post(
            &node,
            &format!("/nodes/{}/recording-jobs/claim-next", node.id),
            None,
        )
        .expect(200)
        .data();
    assert_eq!(one["id"], d.id.as_str());
    ctl.post(
        &node,
        &format!("/nodes/{}/recording-jobs/claim-next-group", node.id),
        None,
    )
    .expect(204);
    assert_eq!(
        ctl.admin.job(&foreign.id).unwrap().unwrap().status,
        JobStatus::Queued
    );
}

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------

#[test]
fn heartbeat_extends_the_lease_and_expiry_fails_the_job() {
    let ctl = Ctl::fast();
    let node = ctl.node("box");
    let job = ctl.job(&node);
    let claimed = ctl.claim(&node)[0].clone();
    let mut lease = lease_ms(&claimed);
    assert_eq!(lease - started_ms(&claimed), 1000);
    // Heartbeats every 300 ms keep a 1 s lease alive well past its first expiry.
    let hb = format!("/recording-jobs/{}/heartbeat", job.id);
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(300));
        let j = ctl.post(&node, &hb, None).expect(200).data();
        assert_eq!(j["status"], "running");
        assert!(lease_ms(&j) > lease, "the lease moves forward");
        assert_eq!(lease_ms(&j), ms(&j["lastHeartbeatAt"]) + 1000);
        lease = lease_ms(&j);
    }
    // Silence: the lease runner (not a request) ends it.
    thread::sleep(Duration::from_millis(1700));
    let rec = ctl.admin.recording(&job.recording_id).unwrap().unwrap();
    assert_eq!(rec.status, RecordingStatus::Failed, "the runner settled it");
    let j = ctl.job_status(&node, &job.id);
    assert_eq!(j["status"], "failed");
    assert_eq!(j["failureReason"], "lease_expired");
    assert!(j["completedAt"].is_string());
    let r = ctl.post(&node, &hb, None).expect(409);
    assert_eq!(r.json()["error"], "Recording job is not heartbeatable");
    // The controller refuses the late upload; the agent keeps its audio.
    let r = ctl.put(&node, &job, "", b"RIFF....").expect(409);
    assert_eq!(r.json()["error"], "Recording is in a terminal failed state");
    // The agent's own failed post agrees (same terminal state), cancelled does not.
    ctl.post(&node, &format!("/recording-jobs/{}/failed", job.id), None)
        .expect(200);
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/cancelled", job.id),
        None,
    )
    .expect(404);
}

#[test]
fn expiry_also_runs_before_each_job_call() {
    // A runner too slow to matter: the request path must expire the lease itself.
    let ctl = Ctl::start(|c| {
        c.lease = Duration::from_millis(300);
        c.lease_runner_interval = Duration::from_secs(3600);
    });
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    thread::sleep(Duration::from_millis(500));
    let j = ctl.job_status(&node, &job.id);
    assert_eq!(
        (j["status"].as_str(), j["failureReason"].as_str()),
        (Some("failed"), Some("lease_expired"))
    );
}

// ---------------------------------------------------------------------------------------
// Stop
// ---------------------------------------------------------------------------------------

/// The order the agent depends on, as the Rakkr controller behaves (the default): the
/// stopped partial is uploaded while the job is `stop_requested`; that upload completes
/// the job, so the `cancelled` the agent posts next gets 404 and a GET shows `completed`.
#[test]
fn stop_then_upload_completes_and_cancel_is_404() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let stopped = ctl.admin.stop_job(&job.id).unwrap();
    assert_eq!(stopped.status, JobStatus::StopRequested);
    assert!(stopped.stop_requested_at.is_some());
    let r = ctl
        .post(
            &node,
            &format!("/recording-jobs/{}/heartbeat", job.id),
            None,
        )
        .expect(409);
    assert_eq!(r.json()["error"], "Recording job is not heartbeatable");
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "stop_requested");
    let bytes = audio(5000, 1);
    let up = ctl.put(&node, &job, "", &bytes).expect(201).data();
    assert_eq!(up["file"]["checksum"], sha256(&bytes).as_str());
    let j = ctl.job_status(&node, &job.id);
    assert_eq!(j["status"], "completed");
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/cancelled", job.id),
        None,
    )
    .expect(404);
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "completed");
    assert_eq!(
        ctl.admin
            .recording(&job.recording_id)
            .unwrap()
            .unwrap()
            .status,
        RecordingStatus::Cached
    );
}

/// With `StoppedUpload::KeepsStopRequested`: the upload is stored, the job stays
/// `stop_requested`, the agent's `cancelled` ends it, and an upload after that is refused.
#[test]
fn stop_then_upload_then_cancelled_when_uploads_keep_the_stop() {
    let ctl = Ctl::start(|c| c.stopped_upload = StoppedUpload::KeepsStopRequested);
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    ctl.admin.stop_job(&job.id).unwrap();
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/heartbeat", job.id),
        None,
    )
    .expect(409);
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "stop_requested");
    ctl.put(&node, &job, "", &audio(100, 2)).expect(201);
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "stop_requested");
    let cancel = vec![
        bearer(&node.token),
        ("x-rakkr-reason", "controller_stop_requested".to_string()),
    ];
    let path = format!("/recording-jobs/{}/cancelled", job.id);
    let j = http(ctl.addr, "POST", &path, &cancel, b"")
        .expect(200)
        .data();
    assert_eq!(j["status"], "cancelled");
    assert_eq!(j["failureReason"], "controller_stop_requested");
    let r = ctl.put(&node, &job, "", &audio(100, 3)).expect(409);
    assert_eq!(
        r.json()["error"],
        "Recording job is in a terminal state and cannot be completed"
    );
    // The recording keeps what was uploaded.
    let rec = ctl.admin.recording(&job.recording_id).unwrap().unwrap();
    assert_eq!(rec.status, RecordingStatus::Cached);
    assert_eq!(rec.checksum.unwrap(), sha256(&audio(100, 2)));
}

#[test]
fn cancel_before_upload_loses_the_upload() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    ctl.admin.stop_job(&job.id).unwrap();
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/cancelled", job.id),
        None,
    )
    .expect(200);
    ctl.put(&node, &job, "", b"late").expect(409);
    // A queued job can be stopped too; the operator cannot stop an ended one.
    let queued = ctl.job(&node);
    ctl.admin.stop_job(&queued.id).unwrap();
    assert!(ctl.admin.stop_job(&job.id).is_err());
}

#[test]
fn unanswered_stop_ends_cancelled_after_a_lease() {
    let ctl = Ctl::fast();
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    ctl.admin.stop_job(&job.id).unwrap();
    thread::sleep(Duration::from_millis(1500));
    let j = ctl.job_status(&node, &job.id);
    assert_eq!(j["status"], "cancelled");
    assert_eq!(j["failureReason"], "stop_request_lease_expired");
}

// ---------------------------------------------------------------------------------------
// Terminal posts
// ---------------------------------------------------------------------------------------

#[test]
fn terminal_posts_are_idempotent_per_state() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let failed = format!("/recording-jobs/{}/failed", job.id);
    let with_reason = [
        bearer(&node.token),
        ("x-rakkr-reason", "device_lost".into()),
    ];
    let j = http(ctl.addr, "POST", &failed, &with_reason, b"")
        .expect(200)
        .data();
    assert_eq!(
        (j["status"].as_str(), j["failureReason"].as_str()),
        (Some("failed"), Some("device_lost"))
    );
    // Again: 200, unchanged.
    let again = ctl.post(&node, &failed, None).expect(200).data();
    assert_eq!(again, j);
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/cancelled", job.id),
        None,
    )
    .expect(404);
    // Default reasons.
    let other = ctl.job(&node);
    let j = ctl
        .post(
            &node,
            &format!("/recording-jobs/{}/cancelled", other.id),
            None,
        )
        .expect(200)
        .data();
    assert_eq!(j["failureReason"], "agent_cancelled");
    let third = ctl.job(&node);
    let j = ctl
        .post(&node, &format!("/recording-jobs/{}/failed", third.id), None)
        .expect(200)
        .data();
    assert_eq!(j["failureReason"], "agent_failed");
    // A completed job: both terminal posts are a different state.
    let done = ctl.job(&node);
    ctl.claim(&node);
    ctl.put(&node, &done, "", b"RIFF").expect(201);
    ctl.post(&node, &format!("/recording-jobs/{}/failed", done.id), None)
        .expect(404);
    ctl.post(
        &node,
        &format!("/recording-jobs/{}/cancelled", done.id),
        None,
    )
    .expect(404);
}

// ---------------------------------------------------------------------------------------
// Health events and node calls
// ---------------------------------------------------------------------------------------

#[test]
fn health_events_are_strict_and_never_deduplicated() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let other = ctl.node("other");
    let path = format!("/nodes/{}/health-events", node.id);
    let event = json!({"type": "agent.capture.device_lost", "severity": "critical",
        "details": {"device": "hw:CARD=USB"}, "id": "evt_1",
        "openedAt": "2026-11-23T01:00:00.000Z"});
    let first = ctl
        .post(&node, &path, Some(event.clone()))
        .expect(201)
        .data();
    let second = ctl
        .post(&node, &path, Some(event.clone()))
        .expect(201)
        .data();
    assert_ne!(first["id"], second["id"], "a resend is a new event");
    assert_eq!(first["details"]["localEventId"], "evt_1");
    assert_eq!(first["details"]["device"], "hw:CARD=USB");
    let stored = ctl.admin.health_events(&node.id).unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|e| e["details"]["localEventId"] == "evt_1")
    );

    let mut unknown = event.clone();
    unknown["jobId"] = json!("job_1");
    let r = ctl.post(&node, &path, Some(unknown)).expect(400);
    assert_eq!(r.json()["issues"][0]["code"], "unrecognized_keys");
    for bad in [
        json!({"type": "controller.x", "severity": "info"}),
        json!({"type": "watchdog.node_offline", "severity": "info"}),
        json!({"type": "agent.x", "severity": "fatal"}),
        json!({"type": "agent.x"}),
        json!({"type": "agent.x", "severity": "info", "details": []}),
        json!({"type": "agent.x", "severity": "info", "recordingId": null}),
    ] {
        let r = ctl.post(&node, &path, Some(bad.clone())).expect(400);
        assert!(r.json()["issues"].as_array().is_some(), "{bad}");
    }
    let r = http(
        ctl.addr,
        "POST",
        &path,
        &[bearer(&node.token)],
        b"{not json",
    );
    r.expect(400);
    // A recording of another node.
    let job = ctl.job(&other);
    let ev = json!({"type": "agent.x", "severity": "info", "recordingId": job.recording_id});
    ctl.post(&node, &path, Some(ev)).expect(403);
    let ev = json!({"type": "agent.x", "severity": "info", "recordingId": "rec_nope"});
    ctl.post(&node, &path, Some(ev)).expect(404);
    assert_eq!(ctl.admin.health_events(&node.id).unwrap().len(), 2);
}

#[test]
fn node_heartbeat_inventory_config_meters() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let hb = format!("/nodes/{}/heartbeat", node.id);
    let mut body = heartbeat_body();
    body["ipAddresses"] = json!((0..20).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>());
    body["futureField"] = json!({"x": 1});
    let n = ctl.post(&node, &hb, Some(body)).expect(202).data();
    assert_eq!(n["id"], node.id.as_str());
    assert_eq!(n["agentVersion"], "edgerec 0.1.0");
    assert_eq!(n["ipAddresses"].as_array().unwrap().len(), 16);
    assert!(n["lastSeenAt"].is_string());
    let mut long = heartbeat_body();
    long["agentVersion"] = json!("v".repeat(81));
    let r = ctl.post(&node, &hb, Some(long)).expect(400);
    assert_eq!(r.json()["issues"][0]["path"], json!(["agentVersion"]));
    ctl.post(&node, &hb, Some(json!({"hostname": "x"})))
        .expect(400);

    let inv = format!("/nodes/{}/inventory", node.id);
    let usb = json!({"alias": "USB", "backend": "alsa", "channelCount": 2,
        "channels": [{"alias": "L", "index": 1}], "sampleRates": [48000],
        "systemName": "hw:CARD=USB", "systemRef": "usb-1-1"});
    let hdmi = json!({"alias": "HDMI", "channelCount": 2, "systemName": "hw:CARD=HDMI"});
    let r = ctl
        .post(&node, &inv, Some(json!({"interfaces": [usb, hdmi]})))
        .expect(202)
        .data();
    assert_eq!(
        r["summary"]["added"],
        json!(["hw:CARD=USB", "hw:CARD=HDMI"])
    );
    // The USB card moved to another card index: same systemRef, so the same interface.
    let mut moved = usb.clone();
    moved["systemName"] = json!("hw:2");
    let r = ctl
        .post(&node, &inv, Some(json!({"interfaces": [moved]})))
        .expect(202)
        .data();
    assert_eq!(r["summary"]["updated"], json!(["hw:2"]));
    assert_eq!(r["summary"]["absent"], json!(["hw:CARD=HDMI"]));
    let ifaces = r["node"]["interfaces"].as_array().unwrap().clone();
    assert_eq!(ifaces.len(), 2);
    assert!(
        ifaces
            .iter()
            .any(|i| i["absent"] == true && i["alias"] == "HDMI")
    );
    let too_many: Vec<Value> = (0..65).map(|_| usb.clone()).collect();
    ctl.post(&node, &inv, Some(json!({"interfaces": too_many})))
        .expect(400);

    let cfg = format!("/nodes/{}/config", node.id);
    let c = ctl.get(&node, &cfg).expect(200).data();
    assert_eq!(c["recordingCapacity"]["maxConcurrentRecordings"], 1);
    assert_eq!(c["recorderCachePolicies"], json!([]));
    ctl.admin
        .set_max_concurrent_recordings(&node.id, 4)
        .unwrap();
    let c = ctl.get(&node, &cfg).expect(200).data();
    assert_eq!(c["recordingCapacity"]["maxConcurrentRecordings"], 4);

    let maps = format!("/nodes/{}/channel-map-assignments", node.id);
    assert_eq!(ctl.get(&node, &maps).expect(200).data(), json!([]));

    let meter = format!("/nodes/{}/meter-frame", node.id);
    let frame = json!({"capturedAt": "2026-11-23T01:00:00.000Z", "interfaceId": "if_1",
        "nodeId": node.id, "levels": [{"channelIndex": 1, "label": "L", "peakDbfs": -6.0,
        "rmsDbfs": -20.0, "clipping": false}]});
    ctl.post(&node, &meter, Some(frame.clone())).expect(202);
    let mut wrong = frame.clone();
    wrong["nodeId"] = json!("node_other");
    ctl.post(&node, &meter, Some(wrong)).expect(403);
    let mut loud = frame.clone();
    loud["levels"][0]["peakDbfs"] = json!(30);
    ctl.post(&node, &meter, Some(loud)).expect(400);
}

// ---------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------

#[test]
fn cache_file_checksum_completes_the_job_and_repeats_overwrite() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let bytes = audio(300_000, 7);
    let r = ctl.put(&node, &job, "", &bytes).expect(201).data();
    let file = &r["file"];
    assert_eq!(file["checksum"], sha256(&bytes).as_str());
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["durationSeconds"], 1.5);
    assert_eq!(file["mimeType"], "audio/wav");
    assert_eq!(file["fileName"], "take.wav");
    assert_eq!(r["uploadQueueItems"], json!([]));
    assert_eq!(r["recording"]["status"], "cached");
    let rel = file["cachePath"].as_str().unwrap();
    assert_eq!(ctl.store_file(rel), bytes);
    let j = ctl.job_status(&node, &job.id);
    assert_eq!(j["status"], "completed");
    assert!(j["completedAt"].is_string());
    let rec = ctl.admin.recording(&job.recording_id).unwrap().unwrap();
    assert_eq!(
        (rec.cached, rec.duration_seconds, rec.size),
        (true, Some(1.5), Some(300_000))
    );

    // A repeat overwrites (201), the job stays completed.
    let again = audio(1000, 9);
    let r = ctl.put(&node, &job, "", &again).expect(201).data();
    assert_eq!(r["file"]["checksum"], sha256(&again).as_str());
    assert_eq!(ctl.store_file(rel), again);
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "completed");

    // A raw rendition is supplementary: it does not complete a job.
    let raw_job = ctl.job(&node);
    ctl.claim(&node);
    let r = ctl
        .put(&node, &raw_job, "?rendition=raw", b"raw")
        .expect(201)
        .data();
    assert!(
        r["file"]["cachePath"]
            .as_str()
            .unwrap()
            .ends_with(".raw.wav")
    );
    assert_eq!(ctl.job_status(&node, &raw_job.id)["status"], "running");
    ctl.put(&node, &raw_job, "?rendition=enhanced", b"enh")
        .expect(201);
    assert_eq!(ctl.job_status(&node, &raw_job.id)["status"], "completed");

    // Through a real client, with a chunked (no Content-Length) body.
    let third = ctl.job(&node);
    ctl.claim(&node);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!(
        "http://{}/api/v1/recordings/{}/cache-file",
        ctl.addr, third.recording_id
    );
    let body = audio(200_000, 3);
    let mut reader = std::io::Cursor::new(body.clone());
    let mut resp = agent
        .put(&url)
        .header("Authorization", &format!("Bearer {}", node.token))
        .header("Content-Type", "audio/flac")
        .header("x-rakkr-recording-job-id", &third.id)
        .send(ureq::SendBody::from_reader(&mut reader))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers().get("date").is_some());
    let v: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(v["data"]["file"]["checksum"], sha256(&body).as_str());
    assert_eq!(v["data"]["file"]["mimeType"], "audio/flac");
    assert_eq!(ctl.job_status(&node, &third.id)["status"], "completed");
}

#[test]
fn cache_file_refusals_in_order() {
    let ctl = Ctl::start(|c| c.max_upload_bytes = 1000);
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let put = |headers: &[(&str, String)], query: &str, body: &[u8]| {
        let path = format!("/recordings/{}/cache-file{query}", job.recording_id);
        http(ctl.addr, "PUT", &path, headers, body)
    };
    let auth = bearer(&node.token);
    let jid = ("x-rakkr-recording-job-id", job.id.clone());
    put(&[], "", b"x").expect(401);
    http(
        ctl.addr,
        "PUT",
        "/recordings/rec_nope/cache-file",
        std::slice::from_ref(&auth),
        b"x",
    )
    .expect(404);
    put(std::slice::from_ref(&auth), "", &[0; 1001]).expect(413);
    put(
        &[
            auth.clone(),
            ("x-rakkr-recording-job-id", "job_nope".into()),
        ],
        "",
        b"x",
    )
    .expect(404);
    put(&[auth.clone(), jid.clone()], "", b"").expect(400);
    let bad_duration = ("x-rakkr-duration-seconds", "-1".to_string());
    put(&[auth.clone(), jid.clone(), bad_duration], "", b"x").expect(400);
    let nan = ("x-rakkr-duration-seconds", "NaN".to_string());
    put(&[auth.clone(), jid.clone(), nan], "", b"x").expect(400);
    put(&[auth.clone(), jid.clone()], "?chunk=-1", b"x").expect(400);
    put(&[auth.clone(), jid.clone()], "?chunk=1.5", b"x").expect(400);
    put(&[auth.clone(), jid.clone()], "?chunk=2&chunkTotal=2", b"x").expect(400);
    // A job of another recording of the same node.
    let other = ctl.job(&node);
    put(
        &[auth.clone(), ("x-rakkr-recording-job-id", other.id.clone())],
        "",
        b"x",
    )
    .expect(403);
    // Nothing was stored by the refusals.
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "running");
    let tmp = ctl.dir.path().join("store/.tmp");
    assert_eq!(std::fs::read_dir(tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn chunked_recording_completes_only_on_the_final_chunk() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let chunks: Vec<Vec<u8>> = (0..3).map(|i| audio(2000 + i, i as u8)).collect();
    for (i, c) in chunks.iter().enumerate().take(2) {
        let r = ctl
            .put(&node, &job, &format!("?chunk={i}"), c)
            .expect(201)
            .data();
        assert_eq!(r["file"]["checksum"], sha256(c).as_str());
        assert_eq!(r["chunk"]["index"], i);
        assert_eq!(ctl.job_status(&node, &job.id)["status"], "running");
    }
    // A raw rendition of the final chunk, even with chunkTotal, does not finish it.
    ctl.put(&node, &job, "?chunk=2&chunkTotal=3&rendition=raw", b"raw")
        .expect(201);
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "running");
    let r = ctl
        .put(&node, &job, "?chunk=2&chunkTotal=3", &chunks[2])
        .expect(201)
        .data();
    assert_eq!(r["recording"]["status"], "cached");
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "completed");
    let rec = ctl.admin.recording(&job.recording_id).unwrap().unwrap();
    assert_eq!((rec.chunk_total, rec.chunk_count), (Some(3), 3));
    assert_eq!(rec.size, Some(chunks.iter().map(|c| c.len() as u64).sum()));
    assert_eq!(rec.duration_seconds, Some(4.5));
    assert_eq!(
        ctl.store_file(&format!("ad-hoc/{}/part0001.wav", job.recording_id)),
        chunks[0]
    );
}

#[test]
fn oversize_content_length_is_refused_before_the_body() {
    let ctl = Ctl::start(|c| c.max_upload_bytes = 1 << 20);
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    // Declare 100 GB, send nothing: the 413 must come without the body. (tiny_http 0.12
    // would abort the process here, allocating the declared length to drain it.)
    for auth in [true, false] {
        let mut s = connect(ctl.addr);
        let token = if auth {
            format!("Authorization: Bearer {}\r\n", node.token)
        } else {
            String::new()
        };
        let head = format!(
            "PUT /api/v1/recordings/{}/cache-file HTTP/1.1\r\nHost: t\r\n{token}\
             x-rakkr-recording-job-id: {}\r\nContent-Length: 100000000000\r\n\r\nRIFF",
            job.recording_id, job.id
        );
        s.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let r = read_reply(&mut s);
        assert_eq!(r.status, if auth { 413 } else { 401 });
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // A chunked body (no Content-Length) over the cap: 413 while streaming.
    let mut s = connect(ctl.addr);
    let head = format!(
        "PUT /api/v1/recordings/{}/cache-file HTTP/1.1\r\nHost: t\r\n\
         Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        job.recording_id, node.token
    );
    s.write_all(head.as_bytes()).unwrap();
    let piece = vec![7u8; 64 * 1024];
    for _ in 0..17 {
        if s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .is_err()
            || s.write_all(&piece).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let r = read_reply(&mut s);
    assert_eq!(r.status, 413);
    // The server is alive and the job untouched.
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "running");
}

// ---------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------

#[test]
fn stalled_clients_time_out_and_do_not_block_others() {
    let ctl = Ctl::start(|c| {
        c.io_timeout = Duration::from_millis(800);
        c.workers = 3;
    });
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    // A half-sent head and a stalled upload body, each holding a worker.
    let mut head_only = connect(ctl.addr);
    head_only
        .write_all(b"POST /api/v1/nodes/x/heartbeat HTTP/1.1\r\nHo")
        .unwrap();
    let mut body_stall = connect(ctl.addr);
    let head = format!(
        "PUT /api/v1/recordings/{}/cache-file HTTP/1.1\r\nHost: t\r\n\
         Authorization: Bearer {}\r\nContent-Length: 1000\r\n\r\nRIFF",
        job.recording_id, node.token
    );
    body_stall.write_all(head.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(100));
    // Meanwhile heartbeats are served (the third worker).
    let hb = format!("/nodes/{}/heartbeat", node.id);
    let started = Instant::now();
    for _ in 0..5 {
        ctl.post(&node, &hb, Some(heartbeat_body())).expect(202);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Both stalled connections are cut off near the idle timeout: the half head by hyper's
    // header read timeout (closed without a reply), the stalled body with a 408.
    let mut rest = Vec::new();
    let _ = head_only.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(read_reply(&mut body_stall).status, 408);
    // A trickler (1 byte / 100 ms) is cut off by the overall body deadline.
    let mut trickle = connect(ctl.addr);
    let path = format!("/nodes/{}/heartbeat", node.id);
    let head = format!(
        "POST /api/v1{path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 1000\r\n\r\n",
        node.token
    );
    trickle.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let writer = {
        let mut w = trickle.try_clone().unwrap();
        thread::spawn(move || {
            for _ in 0..40 {
                if w.write_all(b" ").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    assert_eq!(read_reply(&mut trickle).status, 408);
    assert!(started.elapsed() < Duration::from_millis(2500));
    writer.join().unwrap();
    assert_eq!(ctl.job_status(&node, &job.id)["status"], "running");
}

#[test]
fn shutdown_is_bounded_with_a_client_connected() {
    let mut ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let mut s = connect(ctl.addr);
    s.write_all(b"POST /api/v1/nodes/x/heartbeat HTTP/1.1\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    ctl.server.take().unwrap().shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(TcpStream::connect_timeout(&ctl.addr, Duration::from_millis(500)).is_err());
    // The database is still usable without the server.
    let job = ctl.job(&node);
    assert_eq!(
        ctl.admin.job(&job.id).unwrap().unwrap().status,
        JobStatus::Queued
    );
}

#[test]
fn admin_operations() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    assert!(
        ctl.admin
            .add_job(&NewJobSpec::new("node_nope", "hw:0", 1.0))
            .is_err()
    );
    let mut bad = NewJobSpec::new(&node.id, "hw:0", 1.0);
    bad.output_codec = "ogg".into();
    assert!(ctl.admin.add_job(&bad).is_err());
    let a = ctl.job(&node);
    let b = ctl.job(&node);
    assert!(a.id.starts_with("job_") && a.recording_id.starts_with("rec_"));
    let c = ctl.admin.cancel_job(&a.id).unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert!(ctl.admin.cancel_job(&a.id).is_err());
    let f = ctl.admin.fail_job(&b.id, "operator_said_so").unwrap();
    assert_eq!(f.failure_reason.as_deref(), Some("operator_said_so"));
    let list = ctl.admin.list_jobs().unwrap();
    assert_eq!(
        list.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [a.id, b.id]
    );
    let nodes = ctl.admin.list_nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    let old = node.token.clone();
    let new = ctl.admin.rotate_token(&node.id).unwrap();
    let path = format!("/nodes/{}/config", node.id);
    http(ctl.addr, "GET", &path, &[bearer(&old)], b"").expect(401);
    http(ctl.addr, "GET", &path, &[bearer(&new)], b"").expect(200);
}

#[test]
fn expect_100_continue_and_chunked_framing() {
    let ctl = Ctl::start(|_| {});
    let node = ctl.node("box");
    let job = ctl.job(&node);
    ctl.claim(&node);
    let body = audio(5000, 4);
    let head = |token: &str| {
        format!(
            "PUT /api/v1/recordings/{}/cache-file HTTP/1.1\r\nHost: t\r\n\
             Authorization: Bearer {token}\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            job.recording_id,
            body.len()
        )
    };
    // Refused before the body: the final status comes instead of 100 Continue.
    let mut s = connect(ctl.addr);
    s.write_all(head("rakkr_node_wrong").as_bytes()).unwrap();
    assert_eq!(read_reply(&mut s).status, 401);
    // Accepted: 100 Continue, then the body, then 201.
    let mut s = connect(ctl.addr);
    s.write_all(head(&node.token).as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(&body).unwrap();
    let r = read_reply(&mut s).expect(201);
    assert_eq!(r.data()["file"]["checksum"], sha256(&body).as_str());

    // Chunked JSON with a chunk extension and a trailer.
    let hb = heartbeat_body().to_string();
    let (a, b) = hb.as_bytes().split_at(10);
    let mut s = connect(ctl.addr);
    let mut req = format!(
        "POST /api/v1/nodes/{}/heartbeat HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n",
        node.id,
        node.token,
        a.len()
    )
    .into_bytes();
    req.extend_from_slice(a);
    req.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
    req.extend_from_slice(b);
    req.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
    s.write_all(&req).unwrap();
    read_reply(&mut s).expect(202);
    // A bad chunk size.
    let mut s = connect(ctl.addr);
    let req = format!(
        "POST /api/v1/nodes/{}/heartbeat HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        node.id, node.token
    );
    s.write_all(req.as_bytes()).unwrap();
    read_reply(&mut s).expect(400);
    // Garbage instead of HTTP.
    let mut s = connect(ctl.addr);
    s.write_all(b"HELLO\r\n\r\n").unwrap();
    read_reply(&mut s).expect(400);
}

// ---------------------------------------------------------------------------------------
// Live listen
// ---------------------------------------------------------------------------------------

#[test]
fn listen_chunks_are_checked_as_rakkr_checks_them_and_the_newest_kept() {
    let ctl = Ctl::start(|_| {});
    let a = ctl.node("a");
    let b = ctl.node("b");
    let path = format!("/nodes/{}/listen/chunk", a.id);
    let wav = audio(4_844, 1);
    let headers = |ty: &str, at: &str, ms: &str| {
        vec![
            bearer(&a.token),
            ("Content-Type", ty.to_string()),
            ("x-rakkr-captured-at", at.to_string()),
            ("x-rakkr-duration-ms", ms.to_string()),
        ]
    };
    let good = headers("audio/wav", "2026-12-01T10:00:00.000Z", "5000");
    // (what, headers, body, status)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("no token", good[1..].to_vec(), wav.clone(), 401),
        (
            "json, not audio",
            headers("application/json", "2026-12-01T10:00:00Z", "5000"),
            wav.clone(),
            400,
        ),
        (
            "duration 0",
            headers("audio/wav", "2026-12-01T10:00:00Z", "0"),
            wav.clone(),
            400,
        ),
        (
            "duration over 10 s",
            headers("audio/wav", "2026-12-01T10:00:00Z", "10001"),
            wav.clone(),
            400,
        ),
        (
            "captured-at not a time",
            headers("audio/wav", "yesterday", "5000"),
            wav.clone(),
            400,
        ),
        ("shorter than a header", good.clone(), vec![0; 43], 400),
        ("over 512 KiB", good.clone(), vec![0; 512 * 1024 + 1], 413),
        ("a good chunk", good.clone(), wav.clone(), 202),
    ];
    for (what, h, body, status) in cases {
        let r = http(ctl.addr, "POST", &path, &h, &body);
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let other = format!("/nodes/{}/listen/chunk", b.id);
    http(ctl.addr, "POST", &other, &good, &wav).expect(403);
    // The newest 20 are kept, byte for byte.
    for i in 0..25u8 {
        http(
            ctl.addr,
            "POST",
            &path,
            &good,
            &audio(100 + usize::from(i), i),
        )
        .expect(202);
    }
    let kept = ctl.admin.listen_chunks(&a.id).unwrap();
    assert_eq!(kept.len(), 20);
    assert_eq!(kept.last().unwrap().wav, audio(124, 24));
    assert_eq!(kept[0].captured_at, "2026-12-01T10:00:00.000Z");
    assert!(ctl.admin.listen_chunks(&b.id).unwrap().is_empty());
}
