//! The client's two error types: [`ClientError`] (the client cannot be built: a config
//! problem the operator must fix) and [`CallError`] (one call failed; each variant says
//! what the caller should do).

use crate::controller::protocol::ErrorBody;
use std::io;
use std::path::PathBuf;

/// The client could not be built. Every variant is the operator's to fix; none is worth
/// retrying unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("controller URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "controller URL {url:?} is plain http to a host that is not loopback; use https, \
         or set allow_insecure if the network really is trusted"
    )]
    Insecure { url: String },
    #[error("cannot read the node token file {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: io::Error },
    #[error(
        "node token file {} is readable or writable by group/others (mode {mode:04o}); \
         run: chmod 600 {}",
        path.display(),
        path.display()
    )]
    TokenPermissions { path: PathBuf, mode: u32 },
    #[error("node token file {} {problem}", path.display())]
    BadToken {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
}

/// One controller call failed. Variants say what to do; [`CallError::is_retryable`] sums
/// it up for a backoff loop.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection (DNS, refused, reset, network down). Retry with backoff.
    #[error("controller unreachable: {0}")]
    Unreachable(String),
    /// A timeout (connect, response, body or the whole call). Retry with backoff. The
    /// server may have acted on the request: only idempotent calls are safe to repeat
    /// blindly (a health event is not).
    #[error("controller call timed out ({0})")]
    Timeout(String),
    /// TLS handshake or certificate failure. Usually the operator's to fix (`ca_file`, or a
    /// box whose clock is unset makes every certificate "not yet valid"); retry slowly.
    #[error("TLS failure talking to the controller: {0}")]
    Tls(String),
    /// 401: the token is missing or refused. Not retryable unchanged: the operator must
    /// fix the token file, then [`super::Client::reload_token`].
    #[error("401 unauthorized: the controller refused the node token ({0})")]
    Unauthorized(ErrorBody),
    /// 403: this token's node is not the node in the path, or the job/recording belongs
    /// to another node. Do not retry; for a job, stop working on it.
    #[error("403 forbidden: {0}")]
    Forbidden(ErrorBody),
    /// 404: unknown node, job or recording — or, for cancelled/failed, the job already
    /// ended in a different terminal state. Do not retry; GET the job if it exists.
    #[error("404 not found: {0}")]
    NotFound(ErrorBody),
    /// 409: the state does not allow it (a job heartbeat on a job that is no longer
    /// `running`, an upload to a failed or cancelled job). GET the job to learn why.
    #[error("409 conflict: {0}")]
    Conflict(ErrorBody),
    /// Another 3xx/4xx (400 invalid body, 413 too large, …): do not retry unchanged.
    #[error("controller rejected the request with {status}: {body}")]
    Rejected { status: u16, body: ErrorBody },
    /// 5xx (503: the controller's store is down), 408 or 429: retry with backoff.
    #[error("controller error {status}: {body}")]
    Server { status: u16, body: ErrorBody },
    /// The reply was not what the protocol says (garbage JSON, a missing field, an
    /// unexpected status, garbled HTTP). Retry later; log it.
    #[error("unexpected reply from the controller: {0}")]
    Malformed(String),
    /// The controller stored different bytes than we sent: the upload was corrupted on
    /// the way. Retry the upload (a repeated PUT overwrites); delete nothing.
    #[error("controller stored checksum {stored} but the bytes sent hash to sha256:{sent}")]
    ChecksumMismatch { sent: String, stored: String },
    /// The file to upload cannot be read. Not a network problem; retrying will not help
    /// unless the file comes back.
    #[error("cannot read {}: {source}", path.display())]
    LocalFile { path: PathBuf, source: io::Error },
    /// The request is invalid and was not sent (a bug or bad input in the caller). Do not
    /// retry unchanged.
    #[error("invalid request, not sent: {0}")]
    Invalid(String),
}

impl CallError {
    /// True when the same call may succeed later without any change: back off and retry.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::Unreachable(_)
                | CallError::Timeout(_)
                | CallError::Tls(_)
                | CallError::Server { .. }
                | CallError::Malformed(_)
                | CallError::ChecksumMismatch { .. }
        )
    }

    /// A short name of what went wrong, with the status for HTTP errors (`timeout`,
    /// `malformed`, `status 503`): the key by which repeated failures are folded in logs.
    pub fn kind(&self) -> String {
        let name = match self {
            CallError::Unreachable(_) => "unreachable",
            CallError::Timeout(_) => "timeout",
            CallError::Tls(_) => "tls",
            CallError::Malformed(_) => "malformed",
            CallError::ChecksumMismatch { .. } => "checksum mismatch",
            CallError::LocalFile { .. } => "local file",
            CallError::Invalid(_) => "invalid request",
            other => return format!("status {}", other.status().unwrap_or(0)),
        };
        name.to_string()
    }

    /// The HTTP status of a reply that was an error, if there was a reply.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Unauthorized(_) => Some(401),
            CallError::Forbidden(_) => Some(403),
            CallError::NotFound(_) => Some(404),
            CallError::Conflict(_) => Some(409),
            CallError::Rejected { status, .. } | CallError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Maps an error status to its variant (2xx is not an error: `None`).
    pub(crate) fn from_status(status: u16, body: &[u8]) -> Option<CallError> {
        let body = || ErrorBody::from_bytes(body);
        Some(match status {
            200..=299 => return None,
            401 => CallError::Unauthorized(body()),
            403 => CallError::Forbidden(body()),
            404 => CallError::NotFound(body()),
            409 => CallError::Conflict(body()),
            408 | 429 | 500..=599 => CallError::Server {
                status,
                body: body(),
            },
            _ => CallError::Rejected {
                status,
                body: body(),
            },
        })
    }

    /// Maps a transport error. `tls` says whether the call was https, so an
    /// `InvalidData` I/O error (how rustls reports a bad certificate) reads as TLS.
    pub(crate) fn from_ureq(e: ureq::Error, tls: bool) -> CallError {
        use ureq::Error as E;
        match e {
            E::Timeout(t) => CallError::Timeout(t.to_string()),
            E::Io(io) => match io.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    CallError::Timeout(io.to_string())
                }
                io::ErrorKind::InvalidData if tls => CallError::Tls(io.to_string()),
                _ => CallError::Unreachable(io.to_string()),
            },
            E::HostNotFound | E::ConnectionFailed => CallError::Unreachable(e.to_string()),
            E::Tls(_) | E::Pem(_) | E::Rustls(_) => CallError::Tls(e.to_string()),
            E::Protocol(_)
            | E::BodyExceedsLimit(_)
            | E::LargeResponseHeader(..)
            | E::Decompress(..) => CallError::Malformed(e.to_string()),
            E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl | E::RequireHttpsOnly(_) => {
                CallError::Invalid(e.to_string())
            }
            E::StatusCode(s) => CallError::from_status(s, b"").unwrap_or_else(|| {
                CallError::Malformed(format!("status {s} reported as an error"))
            }),
            other => CallError::Unreachable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_to_do() {
        let cases: &[(u16, bool)] = &[
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (409, false),
            (413, false),
            (429, true),
            (500, true),
            (503, true),
            (301, false),
        ];
        for &(status, retry) in cases {
            let e = CallError::from_status(status, br#"{"error":"x"}"#).unwrap();
            assert_eq!(e.is_retryable(), retry, "{status}");
            assert_eq!(e.status(), Some(status));
        }
        assert!(CallError::from_status(204, b"").is_none());
    }

    #[test]
    fn transport_errors() {
        let t = CallError::from_ureq(ureq::Error::Timeout(ureq::Timeout::Global), false);
        assert!(matches!(t, CallError::Timeout(ref s) if s == "global"));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            CallError::from_ureq(ureq::Error::Io(refused), false),
            CallError::Unreachable(_)
        ));
        let bad = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(matches!(
            CallError::from_ureq(ureq::Error::Io(bad), true),
            CallError::Tls(_)
        ));
    }
}
