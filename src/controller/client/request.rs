//! The request plumbing under [`Client`]'s calls: auth and every timeout on each
//! request, the reply read whole (bounded) with its `Date` noted, and the reply checks.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};
use ureq::{Body, RequestBuilder};

use super::{CallError, Client, ClockSkew, header_text, parse_http_date};
use crate::controller::protocol::{Envelope, Job};

/// Replies are small JSON documents; anything bigger is garbage.
pub(super) const MAX_REPLY_BYTES: u64 = 8 * 1024 * 1024;
/// Longest `x-rakkr-reason` sent.
pub(super) const MAX_REASON: usize = 500;
pub(super) const MAX_FILE_NAME: usize = 255;

/// Which timeout budget a request gets.
#[derive(Clone, Copy)]
pub(super) enum Budget {
    Call,
    Job,
    Claim,
    Upload,
}

/// A 2xx reply, read whole.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl Client {
    pub(super) fn node_url(&self, tail: &str) -> String {
        format!("{}/nodes/{}/{tail}", self.base, seg(&self.node_id))
    }

    pub(super) fn job_url(&self, job_id: &str, tail: &str) -> String {
        format!("{}/recording-jobs/{}{tail}", self.base, seg(job_id))
    }

    /// Auth and every timeout, on any request.
    pub(super) fn prepare<B>(&self, rb: RequestBuilder<B>, budget: Budget) -> RequestBuilder<B> {
        let c = &self.cfg;
        let whole = match budget {
            Budget::Call => c.call_timeout,
            // Never longer than an ordinary call.
            Budget::Job => c.job_call_timeout.min(c.call_timeout),
            Budget::Claim => c.claim_timeout.min(c.call_timeout),
            Budget::Upload => c.upload_timeout,
        };
        // No single phase may outlast the whole call (a short job call stays short).
        let phase = |t: Duration| Some(t.min(whole));
        let auth = {
            let token = self.token.read().unwrap_or_else(PoisonError::into_inner);
            format!("Bearer {}", token.0)
        };
        rb.header("authorization", auth)
            .header("accept", "application/json")
            .config()
            .timeout_resolve(phase(c.connect_timeout))
            .timeout_connect(phase(c.connect_timeout))
            .timeout_send_request(phase(c.read_timeout))
            .timeout_send_body(Some(whole))
            .timeout_recv_response(phase(c.read_timeout))
            .timeout_recv_body(phase(c.read_timeout))
            .timeout_global(Some(whole))
            .build()
    }

    pub(super) fn get(&self, url: &str) -> Result<Reply, CallError> {
        self.get_within(url, Budget::Call)
    }

    pub(super) fn get_within(&self, url: &str, budget: Budget) -> Result<Reply, CallError> {
        let result = self.prepare(self.agent.get(url), budget).call();
        self.finish(result)
    }

    pub(super) fn post_json<T: Serialize>(&self, url: &str, body: &T) -> Result<Reply, CallError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CallError::Invalid(format!("cannot serialize the body: {e}")))?;
        let result = self
            .prepare(self.agent.post(url), Budget::Call)
            .header("content-type", "application/json")
            .send(&bytes[..]);
        self.finish(result)
    }

    pub(super) fn post_empty(
        &self,
        url: &str,
        reason: Option<&str>,
        budget: Budget,
    ) -> Result<Reply, CallError> {
        let mut rb = self.prepare(self.agent.post(url), budget);
        if let Some(reason) = reason {
            rb = rb.header("x-rakkr-reason", reason);
        }
        let result = rb.send_empty();
        self.finish(result)
    }

    /// Reads the reply whole (bounded), notes the clock skew, and sorts errors.
    pub(super) fn finish(
        &self,
        result: Result<ureq::http::Response<Body>, ureq::Error>,
    ) -> Result<Reply, CallError> {
        let mut response = result.map_err(|e| CallError::from_ureq(e, self.https))?;
        let received_at = SystemTime::now();
        if let Some(date) = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            self.note_skew(ClockSkew::estimate(date, received_at));
        }
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|e| CallError::from_ureq(e, self.https))?;
        match CallError::from_status(status, &body) {
            Some(e) => Err(e),
            None => Ok(Reply { status, body }),
        }
    }

    fn note_skew(&self, skew: ClockSkew) {
        let warn = self
            .skew
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(skew, Instant::now());
        if warn {
            log::warn!(
                "controller clock differs from ours by {skew}: check NTP on this box \
                 (recording timestamps and leases assume agreeing clocks)"
            );
        }
    }
}

/// `data` of a success body.
pub(super) fn data<T: DeserializeOwned>(reply: &Reply) -> Result<T, CallError> {
    serde_json::from_slice::<Envelope<T>>(&reply.body)
        .map(|e| e.data)
        .map_err(|e| {
            CallError::Malformed(format!(
                "{e}; body starts {:?}",
                truncate(&String::from_utf8_lossy(&reply.body), 80)
            ))
        })
}

pub(super) fn job_reply(reply: &Reply) -> Result<Job, CallError> {
    let job: Job = data(reply)?;
    if job.status.is_none() {
        return Err(CallError::Malformed("job reply without a status".into()));
    }
    Ok(job)
}

pub(super) fn expect_status(reply: &Reply, allowed: &[u16]) -> Result<(), CallError> {
    if allowed.contains(&reply.status) {
        Ok(())
    } else {
        Err(CallError::Malformed(format!(
            "status {} where the protocol says {allowed:?}",
            reply.status
        )))
    }
}

pub(super) fn reason_header(reason: &str, default: &str) -> String {
    let r = header_text(reason, MAX_REASON);
    if r.is_empty() { default.to_string() } else { r }
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
