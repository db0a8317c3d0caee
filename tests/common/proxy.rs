//! A TCP proxy between the agent and the reference controller (real sockets on
//! 127.0.0.1) that logs each request line and can cut or corrupt a request's body in
//! transit, the way a flaky link does. One request per connection (the controller does
//! not keep connections alive), so a connection's first line is its request.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to a request whose line contains `matching`.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward the head and `after` body bytes, then drop the connection; from then on
    /// refuse every connection until [`Proxy::pass`].
    CutThenRefuse { matching: String, after: usize },
    /// Flip one body byte of the next `times` matching requests.
    Corrupt { matching: String, times: usize },
    /// Answer the next `times` matching requests with `status` (body read, nothing
    /// forwarded).
    Answer {
        matching: String,
        status: u16,
        times: usize,
    },
}

#[derive(Default)]
struct State {
    lines: Vec<String>,
    fault: Option<Fault>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    refusing: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, fault: Option<Fault>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            lines: Vec::new(),
            fault,
        }));
        let refusing = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (st, rf, ct) = (state.clone(), refusing.clone(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if rf.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (st, rf, ct) = (st.clone(), rf.clone(), ct.clone());
                std::thread::spawn(move || relay(client, upstream, &st, &rf, &ct));
            }
        });
        Proxy {
            addr,
            state,
            refusing,
            cut,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Request lines seen so far (`PUT /api/v1/recordings/...?chunk=2 HTTP/1.1`).
    pub fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Whether a cut happened.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Back to forwarding everything untouched.
    pub fn pass(&self) {
        self.state.lock().unwrap().fault = None;
        self.refusing.store(false, Ordering::SeqCst);
    }
}

/// Reads up to the end of the request head; returns head and any body bytes read past it.
fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = buf.split_off(end + 4);
            return Some((buf, body));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: &Mutex<State>,
    refusing: &AtomicBool,
    cut: &AtomicBool,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((head, mut body)) = read_head(&mut client) else {
        return;
    };
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let fault = {
        let mut st = state.lock().unwrap();
        st.lines.push(line.clone());
        match st.fault.clone() {
            Some(Fault::Corrupt { matching, times }) if line.contains(&matching) && times > 0 => {
                st.fault = Some(Fault::Corrupt {
                    matching,
                    times: times - 1,
                });
                Some(Fault::Corrupt {
                    matching: String::new(),
                    times: 1,
                })
            }
            Some(Fault::Answer {
                matching,
                status,
                times,
            }) if line.contains(&matching) && times > 0 => {
                st.fault = Some(Fault::Answer {
                    matching,
                    status,
                    times: times - 1,
                });
                Some(Fault::Answer {
                    matching: String::new(),
                    status,
                    times: 1,
                })
            }
            Some(f @ Fault::CutThenRefuse { .. }) if matches_line(&f, &line) => {
                st.fault = None;
                Some(f)
            }
            _ => None,
        }
    };
    if let Some(Fault::Answer { status, .. }) = fault {
        answer(&mut client, &head, body.len(), status);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = server.write_all(&head);
    match fault {
        Some(Fault::CutThenRefuse { after, .. }) => {
            refusing.store(true, Ordering::SeqCst);
            let mut sent = body.len().min(after);
            let _ = server.write_all(&body[..sent]);
            let mut chunk = [0u8; 4096];
            while sent < after {
                let Ok(n) = client.read(&mut chunk) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                let take = n.min(after - sent);
                let _ = server.write_all(&chunk[..take]);
                sent += take;
            }
            cut.store(true, Ordering::SeqCst);
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::Corrupt { .. }) => {
            // Read one body byte at least, then flip the first.
            if body.is_empty() {
                let mut one = [0u8; 1];
                if client.read_exact(&mut one).is_err() {
                    return;
                }
                body.push(one[0]);
            }
            body[0] ^= 0xFF;
        }
        // An `Answer` was answered above, without the server.
        Some(Fault::Answer { .. }) | None => {}
    }
    let _ = server.write_all(&body);
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
}

fn matches_line(f: &Fault, line: &str) -> bool {
    match f {
        Fault::CutThenRefuse { matching, .. }
        | Fault::Corrupt { matching, .. }
        | Fault::Answer { matching, .. } => line.contains(matching.as_str()),
    }
}

/// Reads the rest of the request's body (by its `Content-Length`) and answers `status`.
fn answer(client: &mut TcpStream, head: &[u8], read: usize, status: u16) {
    let length = String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut left = length.saturating_sub(read);
    let mut chunk = [0u8; 4096];
    while left > 0 {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    let reply =
        format!("HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = client.write_all(reply.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}
