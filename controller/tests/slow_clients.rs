//! Slow clients cost memory, not service: 200 connections trickling their request heads
//! (one byte a second) and 200 trickling JSON bodies, all held for 30 s on 127.0.0.1,
//! while a normal client reads `GET /nodes/{id}/config` every 100 ms: every one of its
//! calls must answer within 1 s. The hand-written server this replaced (8 workers) stopped
//! answering anyone with 10 such connections.

use edgerec_controller::{Admin, Server, ServerConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const SLOW_HEADS: usize = 200;
const SLOW_BODIES: usize = 200;
const HOLD: Duration = Duration::from_secs(30);
const CALL_EVERY: Duration = Duration::from_millis(100);
const CALL_BOUND: Duration = Duration::from_secs(1);

/// One `GET`, answered (the server closes after each reply); returns the status.
fn get(addr: SocketAddr, path: &str, token: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let head =
        format!("GET /api/v1{path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let status = String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

/// A connection that sends `prefix` at once, then `trickle` one byte a second.
struct Slow {
    stream: TcpStream,
    trickle: Vec<u8>,
    sent: usize,
    alive: bool,
}

impl Slow {
    fn open(addr: SocketAddr, prefix: &[u8], trickle: Vec<u8>) -> Slow {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        stream.write_all(prefix).expect("prefix");
        Slow {
            stream,
            trickle,
            sent: 0,
            alive: true,
        }
    }

    /// Sends the next byte; false once the server has closed the connection.
    fn step(&mut self) -> bool {
        if self.alive && self.sent < self.trickle.len() {
            let byte = [self.trickle[self.sent]];
            self.alive = self.stream.write_all(&byte).is_ok();
            self.sent += 1;
        }
        self.alive
    }
}

#[test]
fn trickling_heads_and_bodies_do_not_slow_a_normal_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("controller.db"),
        dir.path().join("store"),
    );
    // Longer than the hold, so the slow connections stay for all of it.
    cfg.io_timeout = HOLD + Duration::from_secs(15);
    let server = Server::start(cfg).unwrap();
    let addr = server.addr();
    let admin = Admin::open(&dir.path().join("controller.db")).unwrap();
    let (node, token) = admin.add_node("box").unwrap();

    // A head that never ends within the hold, and a heartbeat body that never ends.
    let head_trickle = format!("X-Slow: {}\r\n", "a".repeat(100)).into_bytes();
    let mut slow: Vec<Slow> = (0..SLOW_HEADS)
        .map(|_| {
            Slow::open(
                addr,
                b"GET /api/v1/nodes/x/config HTTP/1.1\r\nHost: t\r\n",
                head_trickle.clone(),
            )
        })
        .collect();
    let body_head = format!(
        "POST /api/v1/nodes/{node}/heartbeat HTTP/1.1\r\nHost: t\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n"
    );
    slow.extend((0..SLOW_BODIES).map(|_| Slow::open(addr, body_head.as_bytes(), vec![b' '; 100])));

    let stop = Arc::new(AtomicBool::new(false));
    let tricklers = {
        let stop = stop.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let mut alive = slow.len();
            while started.elapsed() < HOLD && !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_secs(1));
                alive = slow.iter_mut().map(|s| s.step()).filter(|a| *a).count();
            }
            (alive, slow)
        })
    };

    let path = format!("/nodes/{node}/config");
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < HOLD {
        let call = Instant::now();
        let status = get(addr, &path, &token);
        let took = call.elapsed();
        assert_eq!(
            status.ok(),
            Some(200),
            "call {} after {took:?}",
            latencies.len()
        );
        latencies.push(took);
        thread::sleep(CALL_EVERY.saturating_sub(took));
    }
    stop.store(true, Ordering::SeqCst);
    let (alive, slow) = tricklers.join().unwrap();
    latencies.sort();
    let max = *latencies.last().unwrap();
    let median = latencies[latencies.len() / 2];
    println!(
        "slow clients: {} calls under {} trickling connections ({alive} still open at the \
         end): median {median:?}, max {max:?}",
        latencies.len(),
        SLOW_HEADS + SLOW_BODIES
    );
    assert!(max < CALL_BOUND, "slowest call took {max:?}");
    assert!(
        latencies.len() >= 200,
        "only {} calls in {HOLD:?}",
        latencies.len()
    );
    // The slow connections were really held (not refused or cut off early).
    assert!(
        alive >= (SLOW_HEADS + SLOW_BODIES) * 9 / 10,
        "{alive} still open"
    );
    drop(slow);
    server.shutdown();
}
