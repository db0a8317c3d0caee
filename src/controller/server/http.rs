//! A deliberately small HTTP/1.1 server side: one request per connection (every reply says
//! `Connection: close`), `Content-Length` and `chunked` request bodies, `Expect:
//! 100-continue`, and a `Date` header on every reply.
//!
//! Why not `tiny_http` (the crate the issue names): tiny_http 0.12 gives no access to the
//! socket, so there is no per-connection read timeout, and when a request whose body was not
//! read to the end is dropped it drains the rest with `vec![0; remaining]` sized from the
//! client's `Content-Length`: a single request declaring a huge body that the server
//! refuses (a 401, or the 413 this protocol requires before reading) aborts the whole
//! process with "memory allocation failed" (tiny-http/tiny-http#290, reproduced against
//! 0.12.0). Owning the socket fixes both in a few hundred lines.
//!
//! Bounds, all enforced here:
//! - every socket read polls every [`POLL`]; a read that makes no progress for
//!   `io_timeout` fails (`TimedOut`), as does a request head not complete within
//!   `head_timeout`, and the server's shutdown flag ends any wait at the next poll;
//! - a body reader also has an overall deadline chosen by the route (short for JSON,
//!   long for uploads), so a 1-byte-per-second client cannot hold a worker forever;
//! - writes have a socket write timeout of `io_timeout`;
//! - a head is at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] lines; chunk-size lines are
//!   bounded too. A refused body is never read beyond a short lingering drain.

use super::time;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a blocked read wakes to check the shutdown flag and its deadlines.
const POLL: Duration = Duration::from_millis(200);
/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// After replying to a request whose body was not read, read and discard at most this
/// much (for at most [`LINGER_TIME`]) so the client sees the reply instead of a reset.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Timeouts for one connection.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// A read or write that makes no progress for this long fails.
    pub io_timeout: Duration,
    /// The request head must arrive within this.
    pub head_timeout: Duration,
}

/// A reply. Always `Connection: close`.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
            content_type: Some("application/json"),
            headers: Vec::new(),
        }
    }

    /// `{"data": value}`.
    pub fn data(status: u16, value: Value) -> Response {
        Response::json(status, &serde_json::json!({ "data": value }))
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// `{"error": message, "issues": [...]}`.
    pub fn invalid(message: &str, issues: Vec<Value>) -> Response {
        Response::json(
            400,
            &serde_json::json!({ "error": message, "issues": issues }),
        )
    }

    /// A reply without a body (204).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            body: Vec::new(),
            content_type: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Why a request head could not be read; each maps to a reply (or to silence).
#[derive(Debug)]
enum HeadError {
    /// The client closed, or the server is shutting down: nothing to reply to.
    Gone,
    TimedOut,
    TooLarge,
    Malformed(&'static str),
}

/// How the request body is framed.
#[derive(Debug)]
enum Framing {
    Length { remaining: u64 },
    Chunked { state: ChunkState },
}

#[derive(Debug)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk with this many bytes left, then its CRLF.
    Data(u64),
    Done,
}

/// The connection's reading side: a small buffer over the socket whose reads poll, so
/// they can be bounded by time and interrupted by shutdown.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    shutdown: Arc<AtomicBool>,
    io_timeout: Duration,
    /// The current operation's overall deadline (head, or body).
    deadline: Instant,
}

impl Wire {
    /// Makes sure buffered bytes are available; `Ok(false)` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        let idle_since = Instant::now();
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return Err(io::Error::other("server shutting down"));
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
            }
            if now.duration_since(idle_since) >= self.io_timeout {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "client idle"));
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if is_poll_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_byte(&mut self) -> io::Result<Option<u8>> {
        if !self.fill()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    /// Reads a CRLF- (or LF-) terminated line of at most `max` bytes, without the ending.
    fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.read_byte()? {
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some(b'\n') => {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                Some(b) if line.len() < max => line.push(b),
                Some(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
            }
        }
    }

    /// Reads up to `out.len()` buffered or fresh bytes.
    fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn is_poll_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    framing: Framing,
    must_continue: bool,
}

/// One parsed request and its unread body.
pub(crate) struct Request {
    pub method: String,
    /// The path part of the target, not decoded (ids in this protocol are plain ASCII).
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    /// `Content-Length`, when the body is framed by it.
    declared_length: Option<u64>,
    framing: Framing,
    /// `Expect: 100-continue` not yet answered.
    must_continue: bool,
    /// Whether the body was read to its end.
    body_done: bool,
    wire: Wire,
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the caller's limit.
    TooLarge,
    /// Bad chunked framing.
    Malformed,
    /// The client went away, stalled, or the server is shutting down.
    Io(io::Error),
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The declared body length, when the body is `Content-Length` framed.
    pub fn content_length(&self) -> Option<u64> {
        self.declared_length
    }

    /// Sets how long the body may take as a whole, counted from now.
    pub fn set_body_deadline(&mut self, within: Duration) {
        self.wire.deadline = Instant::now() + within;
    }

    /// Reads the body into memory, refusing more than `limit` bytes.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        if let Some(n) = self.content_length()
            && n > limit
        {
            return Err(BodyError::TooLarge);
        }
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.read_body_some(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if (out.len() + n) as u64 > limit {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the next piece of the body; `Ok(0)` at its end.
    pub fn read_body_some(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        if self.body_done || out.is_empty() {
            return Ok(0);
        }
        if self.must_continue {
            self.must_continue = false;
            let mut w = &self.wire.stream;
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| w.flush())
                .map_err(BodyError::Io)?;
        }
        let n = match &mut self.framing {
            Framing::Length { remaining } => {
                let want = out
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = self
                    .wire
                    .read_some(&mut out[..want])
                    .map_err(BodyError::Io)?;
                if n == 0 {
                    return Err(BodyError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.body_done = true;
                }
                n
            }
            Framing::Chunked { state } => loop {
                match state {
                    ChunkState::Done => {
                        self.body_done = true;
                        break 0;
                    }
                    ChunkState::Size => {
                        let line = self.wire.read_line(1024).map_err(body_io)?;
                        let size = parse_chunk_size(&line).ok_or(BodyError::Malformed)?;
                        if size == 0 {
                            // Trailers, then the empty line.
                            for _ in 0..=MAX_HEADERS {
                                if self.wire.read_line(MAX_HEAD).map_err(body_io)?.is_empty() {
                                    *state = ChunkState::Done;
                                    break;
                                }
                            }
                            if !matches!(state, ChunkState::Done) {
                                return Err(BodyError::Malformed);
                            }
                        } else {
                            *state = ChunkState::Data(size);
                        }
                    }
                    ChunkState::Data(left) => {
                        let want = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let n = self
                            .wire
                            .read_some(&mut out[..want])
                            .map_err(BodyError::Io)?;
                        if n == 0 {
                            return Err(BodyError::Io(io::ErrorKind::UnexpectedEof.into()));
                        }
                        *left -= n as u64;
                        if *left == 0 {
                            if !self.wire.read_line(2).map_err(body_io)?.is_empty() {
                                return Err(BodyError::Malformed);
                            }
                            *state = ChunkState::Size;
                        }
                        break n;
                    }
                }
            },
        };
        Ok(n)
    }
}

fn body_io(e: io::Error) -> BodyError {
    if e.kind() == io::ErrorKind::InvalidData {
        BodyError::Malformed
    } else {
        BodyError::Io(e)
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text.split(';').next()?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Serves the one request on `stream` with `handle`, then closes the connection. Never
/// panics on client behaviour; returns when the reply is written or the client is gone.
pub(crate) fn serve_connection(
    stream: TcpStream,
    limits: &Limits,
    shutdown: &Arc<AtomicBool>,
    handle: &mut dyn FnMut(&mut Request) -> Response,
) {
    let setup = stream
        .set_read_timeout(Some(POLL))
        .and_then(|()| stream.set_write_timeout(Some(limits.io_timeout)))
        .and_then(|()| stream.set_nodelay(true));
    if let Err(e) = setup {
        log::debug!("controller: dropping a connection: {e}");
        return;
    }
    let mut wire = Wire {
        stream,
        buf: vec![0; 64 * 1024],
        pos: 0,
        len: 0,
        shutdown: shutdown.clone(),
        io_timeout: limits.io_timeout,
        deadline: Instant::now() + limits.head_timeout,
    };
    let head = match read_head(&mut wire) {
        Ok(head) => head,
        Err(e) => {
            let reply = match e {
                HeadError::Gone => return,
                HeadError::TimedOut => Response::error(408, "Request timeout"),
                HeadError::TooLarge => Response::error(431, "Request head too large"),
                HeadError::Malformed(what) => Response::error(400, what),
            };
            write_response(&wire.stream, &reply);
            let _ = wire.stream.shutdown(Shutdown::Write);
            linger(&mut wire);
            return;
        }
    };
    // The head's deadline must not cut a body short: routes set their own.
    wire.deadline = Instant::now() + limits.io_timeout.max(limits.head_timeout);
    let declared_length = match head.framing {
        Framing::Length { remaining } => Some(remaining),
        Framing::Chunked { .. } => None,
    };
    let mut request = Request {
        method: head.method,
        path: head.path,
        query: head.query,
        headers: head.headers,
        declared_length,
        body_done: declared_length == Some(0),
        framing: head.framing,
        must_continue: head.must_continue,
        wire,
    };
    let reply = handle(&mut request);
    write_response(&request.wire.stream, &reply);
    let _ = request.wire.stream.shutdown(Shutdown::Write);
    if !request.body_done {
        linger(&mut request.wire);
    }
}

/// Reads and discards a little of an unread body so the client can read the reply.
fn linger(wire: &mut Wire) {
    wire.deadline = Instant::now() + LINGER_TIME;
    let mut drained = (wire.len - wire.pos) as u64;
    wire.pos = wire.len;
    while drained < LINGER_BYTES {
        match wire.fill() {
            Ok(true) => {
                drained += (wire.len - wire.pos) as u64;
                wire.pos = wire.len;
            }
            _ => break,
        }
    }
}

fn read_head(wire: &mut Wire) -> Result<Head, HeadError> {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => HeadError::TimedOut,
        io::ErrorKind::InvalidData => HeadError::TooLarge,
        _ => HeadError::Gone,
    };
    let mut total = 0;
    let mut lines = Vec::new();
    loop {
        let line = wire.read_line(MAX_HEAD).map_err(io_err)?;
        total += line.len() + 2;
        if total > MAX_HEAD || lines.len() > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        if line.is_empty() {
            if lines.is_empty() {
                continue; // RFC 9112: ignore empty lines before the request line
            }
            break;
        }
        lines.push(line);
    }
    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let request_line =
        String::from_utf8(request_line).map_err(|_| HeadError::Malformed("Bad request line"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("Bad request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HeadError::Malformed("Unsupported HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("Bad method"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("Bad request target"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadError::Malformed("Folded header lines are not accepted"));
        }
        let line = String::from_utf8(line).map_err(|_| HeadError::Malformed("Bad header"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("Bad header"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HeadError::Malformed("Bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let framing = framing(&headers)?;
    let must_continue = headers
        .iter()
        .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        query,
        headers,
        framing,
        must_continue,
    })
}

fn framing(headers: &[(String, String)]) -> Result<Framing, HeadError> {
    if let Some((_, te)) = headers.iter().find(|(n, _)| n == "transfer-encoding") {
        // Only `chunked` is supported; it must be the final (and here the only) coding.
        if te.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked {
                state: ChunkState::Size,
            });
        }
        return Err(HeadError::Malformed("Unsupported Transfer-Encoding"));
    }
    let mut length: Option<u64> = None;
    for (_, v) in headers.iter().filter(|(n, _)| n == "content-length") {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::Malformed("Bad Content-Length"));
        }
        let n = v
            .parse()
            .map_err(|_| HeadError::Malformed("Bad Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("Conflicting Content-Length"));
        }
        length = Some(n);
    }
    Ok(Framing::Length {
        remaining: length.unwrap_or(0),
    })
}

/// `application/x-www-form-urlencoded` decoding of a query string (as URLSearchParams).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                out.push(hex_value(b[i + 1]) * 16 + hex_value(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `reply` (best effort: a client that went away is not an error).
pub(crate) fn write_response(mut stream: &TcpStream, reply: &Response) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        time::http_date(time::now_ms())
    );
    if reply.status != 204 {
        if let Some(ct) = reply.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let result = stream
        .write_all(head.as_bytes())
        .and_then(|()| {
            if reply.status == 204 {
                Ok(())
            } else {
                stream.write_all(&reply.body)
            }
        })
        .and_then(|()| stream.flush());
    if let Err(e) = result {
        log::debug!("controller: reply {} not delivered: {e}", reply.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("rendition=raw&chunk=3&chunkTotal=4&x=a%20b+c&flag&bad=%zz%4"),
            vec![
                ("rendition".into(), "raw".into()),
                ("chunk".into(), "3".into()),
                ("chunkTotal".into(), "4".into()),
                ("x".into(), "a b c".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0;ext=1"), Some(0));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b"ffffffffffffffffff"), None);
    }
}
