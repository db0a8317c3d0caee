//! What a route reads from a request: headers, query parameters and a bounded body. Bodies
//! are read on the async side, before a store connection is taken, so a slow client holds
//! only its own task and buffer.

use crate::reply::Response;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;

/// The parts of a request the routes look at.
#[derive(Debug)]
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

impl Req {
    pub fn new(parts: &Parts) -> Req {
        let query = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        Req {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query,
            headers: parts.headers.clone(),
        }
    }

    /// The first value of a header (name in any case); `None` if it is not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The declared body length, when the body is `Content-Length` framed.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the caller's limit.
    TooLarge,
    /// The body did not arrive in time (stalled, or too slow as a whole).
    TimedOut,
    /// Bad framing, or the client went away.
    Broken(String),
}

impl BodyError {
    pub fn reply(self, too_large: &str) -> Response {
        match self {
            BodyError::TooLarge => Response::error(413, too_large),
            BodyError::TimedOut => Response::error(408, "Request body too slow"),
            BodyError::Broken(e) => Response::error(400, &format!("Could not read the body: {e}")),
        }
    }
}

/// A body read frame by frame under two bounds: each frame must come within `idle`
/// (tower-http's `RequestBodyTimeoutLayer` enforces the same from outside) and the whole
/// body by `deadline`.
pub(crate) struct BodyReader {
    body: Body,
    idle: Duration,
    deadline: Instant,
    done: bool,
}

impl BodyReader {
    pub fn new(body: Body, idle: Duration, within: Duration) -> BodyReader {
        BodyReader {
            body,
            idle,
            deadline: Instant::now() + within,
            done: false,
        }
    }

    /// The next piece of data, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        while !self.done {
            let until = self.deadline.min(Instant::now() + self.idle);
            let frame = match tokio::time::timeout_at(until, self.body.frame()).await {
                Err(_) => return Err(BodyError::TimedOut),
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Some(Err(e))) => return Err(classify(e)),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Reads the rest into memory, refusing more than `limit` bytes.
    pub async fn read_all(&mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        while let Some(data) = self.next().await? {
            if (out.len() + data.len()) as u64 > limit {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// After a refusal mid-body: reads and drops a little more (at most `bytes`, for at
    /// most `within`) so the client's socket is not reset before it reads the reply.
    pub async fn linger(mut self, bytes: usize, within: Duration) {
        self.deadline = self.deadline.min(Instant::now() + within);
        let mut seen = 0;
        while seen < bytes {
            match self.next().await {
                Ok(Some(data)) => seen += data.len(),
                _ => return,
            }
        }
    }
}

/// Sorts a body error: the limit and timeout layers' errors, or broken framing.
fn classify(e: axum::Error) -> BodyError {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return BodyError::TooLarge;
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return BodyError::TimedOut;
        }
        source = err.source();
    }
    BodyError::Broken(inner.to_string())
}

/// Reads a JSON body (at most `limit` bytes within `within`) for a route.
pub(crate) async fn json_bytes(
    body: Body,
    idle: Duration,
    within: Duration,
    limit: u64,
) -> Result<Vec<u8>, Response> {
    let mut reader = BodyReader::new(body, idle, within);
    match reader.read_all(limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let timed_out = matches!(e, BodyError::TimedOut);
            let reply = e.reply("Request body too large");
            if !timed_out {
                reader.linger(LINGER_BYTES, LINGER_TIME).await;
            }
            Err(reply)
        }
    }
}

/// How much of a refused body is read and dropped before replying, and for how long.
pub(crate) const LINGER_BYTES: usize = 1 << 20;
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(1);
