//! The agent's blocking HTTP client for the controller (`PROTOCOL.md`), on `ureq` 3.
//!
//! - One method per call; each returns `Result<_, CallError>` whose variants say what to
//!   do (retry with backoff, GET the job, fix the token, give up on the request).
//! - Every request carries all its timeouts (connect, send, time to response headers,
//!   body, and a global one over the whole call): `ureq` has none by default, and an
//!   unbounded call is how an agent hangs forever on a half-open socket.
//! - Transport safety is decided once, in [`Client::new`], before any traffic: https with
//!   verified certificates unless the controller is loopback or the operator allows plain
//!   http; a token file others can read is refused; the token is never logged.
//! - Every reply's `Date` feeds a clock-skew estimate ([`Client::clock_skew`]).
//!
//! - this file: [`Client`] and one method per call; `cache_file`: the streamed, hashed
//!   cache-file PUT; `request`: the plumbing under them (auth, timeouts, reply checks).
//! - `trust`: the base URL, CA file and token checks [`Client::new`] makes.
//! - `upload`: the upload's request and hashing reader; `clock`: HTTP dates and the skew
//!   estimate; `error`: what each failure tells the caller to do.

mod cache_file;
mod clock;
mod error;
mod request;
mod resolve;
mod trust;
mod upload;

pub use clock::{ClockSkew, SKEW_WARN_ABOVE, format_http_date, parse_http_date};
pub use error::{CallError, ClientError};
pub use upload::{FileBody, Rendition, UploadBody, UploadRequest, header_text};

use crate::controller::protocol::{
    ChannelMapBundle, HealthEvent, Inventory, Job, MeterFrame, NodeConfig, NodeHeartbeat,
};
use clock::SkewTracker;
use request::{Budget, data, expect_status, job_reply, reason_header, truncate};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;
use trust::{Token, check_base_url, read_ca_file, read_token};
use ureq::Agent;
use ureq::tls::TlsConfig;

/// The client's settings. Timeouts default to the existing Rakkr agent's.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// E.g. `https://controller.example/api/v1`; a trailing `/` is ignored.
    pub base_url: String,
    pub node_id: String,
    /// Holds the node token (`rakkr_node_…`); must be mode 0600 or stricter.
    pub token_file: PathBuf,
    /// Allow plain `http://` to a host that is not loopback (a trusted network only).
    /// Never turns off certificate verification for https.
    pub allow_insecure: bool,
    /// TCP + TLS connection setup (and DNS resolution).
    pub connect_timeout: Duration,
    /// From the request sent to the response headers received, and reading a reply
    /// body; for uploads, how long the controller may take to store the file.
    pub read_timeout: Duration,
    /// The whole of an ordinary call (node heartbeat, inventory, config, health events,
    /// terminal reports), end to end.
    pub call_timeout: Duration,
    /// The whole of a job heartbeat or job poll: short, so that a hostile or slow answer
    /// costs one beat, never the lease. At most `call_timeout`.
    pub job_call_timeout: Duration,
    /// The whole of a claim (`claim-next-group`). At most `call_timeout`.
    pub claim_timeout: Duration,
    /// The whole of a cache-file upload, end to end.
    pub upload_timeout: Duration,
    /// A PEM bundle of the private CA(s) the controller's certificate chains to; replaces
    /// the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        node_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            node_id: node_id.into(),
            token_file: token_file.into(),
            allow_insecure: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
            job_call_timeout: Duration::from_secs(5),
            claim_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(3600),
            ca_file: None,
        }
    }
}

/// The controller client. `Send + Sync`: share it between threads by reference or `Arc`.
pub struct Client {
    agent: Agent,
    /// Base URL without a trailing `/`.
    base: String,
    https: bool,
    node_id: String,
    token_file: PathBuf,
    token: RwLock<Token>,
    cfg: ClientConfig,
    skew: Mutex<SkewTracker>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("node_id", &self.node_id)
            .field("token_file", &self.token_file)
            .field("token", &"<redacted>")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the transport (no traffic is sent), reads the token and the CA file, and
    /// builds the HTTP agent.
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        check_base_url(&cfg.base_url, cfg.allow_insecure)?;
        let token = read_token(&cfg.token_file)?;
        Self::with_token(cfg, token.0)
    }

    /// As [`Client::new`], with a token given rather than read (enrollment's bootstrap
    /// token, which is never written to disk).
    pub fn with_token(cfg: ClientConfig, token: String) -> Result<Client, ClientError> {
        let (base, https, loopback) = check_base_url(&cfg.base_url, cfg.allow_insecure)?;
        if cfg.node_id.trim().is_empty() {
            return Err(ClientError::BadUrl {
                url: cfg.base_url.clone(),
                reason: "node id is empty".into(),
            });
        }
        let token = Token(token);
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &cfg.ca_file {
            tls = tls.root_certs(read_ca_file(ca)?);
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("edgerec/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            // A loopback controller never goes through a proxy; others honour the usual
            // proxy environment variables.
            .proxy(if loopback {
                None
            } else {
                ureq::Proxy::try_from_env()
            })
            // Agent-wide defaults as a backstop; each request sets its own again.
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.read_timeout))
            .timeout_global(Some(cfg.call_timeout))
            .build();
        // Connections are kept alive between calls (ureq's pool) when the controller allows.
        let agent = Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            resolve::LiteralFirst::default(),
        );
        Ok(Client {
            agent,
            base,
            https,
            node_id: cfg.node_id.clone(),
            token_file: cfg.token_file.clone(),
            token: RwLock::new(token),
            cfg,
            skew: Mutex::new(SkewTracker::default()),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Re-reads the token file (after a 401, once the operator has fixed it). The old
    /// token stays in use if the file is unusable.
    pub fn reload_token(&self) -> Result<(), ClientError> {
        let token = read_token(&self.token_file)?;
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = token;
        Ok(())
    }

    /// The latest estimate of the controller's clock minus ours, from the last reply's
    /// `Date`; `None` before any reply carried one.
    pub fn clock_skew(&self) -> Option<ClockSkew> {
        self.skew
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest()
    }

    // ---- calls ------------------------------------------------------------------------

    /// 1: `POST /nodes/{nodeId}/heartbeat` (202).
    pub fn node_heartbeat(&self, hb: &NodeHeartbeat) -> Result<(), CallError> {
        let url = self.node_url("heartbeat");
        self.post_json(&url, hb).map(drop)
    }

    /// 2: `POST /nodes/{nodeId}/inventory` (202).
    pub fn inventory(&self, inv: &Inventory) -> Result<(), CallError> {
        let url = self.node_url("inventory");
        self.post_json(&url, inv).map(drop)
    }

    /// Day 0: `POST /nodes/{nodeId}/bootstrap` (201) with the bootstrap token as bearer.
    pub fn bootstrap(
        &self,
        req: &crate::controller::protocol::BootstrapRequest,
    ) -> Result<crate::controller::protocol::BootstrapReply, CallError> {
        let url = self.node_url("bootstrap");
        let reply = self.post_json(&url, req)?;
        expect_status(&reply, &[201])?;
        data(&reply)
    }

    /// 3: `GET /nodes/{nodeId}/config`.
    pub fn node_config(&self) -> Result<NodeConfig, CallError> {
        let url = self.node_url("config");
        let reply = self.get(&url)?;
        data(&reply)
    }

    /// 4: `POST /nodes/{nodeId}/meter-frame` (202). dBFS values are clamped to the
    /// controller's range when serialized.
    pub fn meter_frame(&self, frame: &MeterFrame) -> Result<(), CallError> {
        if frame.node_id != self.node_id {
            return Err(CallError::Invalid(format!(
                "meter frame for node {:?} sent by node {:?}",
                frame.node_id, self.node_id
            )));
        }
        let url = self.node_url("meter-frame");
        self.post_json(&url, frame).map(drop)
    }

    /// `POST /nodes/{nodeId}/listen/chunk`: a short WAV of live audio (44 bytes to 512 KiB,
    /// 1–10000 ms), current state: a failed one is dropped, the next replaces it.
    pub fn listen_chunk(
        &self,
        wav: &[u8],
        captured_at: &str,
        duration_ms: u64,
        rendition: Option<Rendition>,
    ) -> Result<(), CallError> {
        if !(44..=512 * 1024).contains(&wav.len()) || !(1..=10_000).contains(&duration_ms) {
            return Err(CallError::Invalid(format!(
                "listen chunk of {} bytes, {duration_ms} ms is outside the protocol's bounds",
                wav.len()
            )));
        }
        let mut url = self.node_url("listen/chunk");
        if let Some(r) = rendition {
            url = format!("{url}?rendition={}", r.as_str());
        }
        let result = self
            .prepare(self.agent.post(&url), Budget::Call)
            .header("content-type", "audio/wav")
            .header("x-rakkr-captured-at", captured_at)
            .header("x-rakkr-duration-ms", &duration_ms.to_string())
            .send(wav);
        let reply = self.finish(result)?;
        expect_status(&reply, &[200, 201, 202, 204]).map(drop)
    }

    /// 5: `POST /nodes/{nodeId}/health-events`. Only a 201 means accepted: journal it and
    /// never send that event again (the server does not deduplicate).
    pub fn health_event(&self, ev: &HealthEvent) -> Result<(), CallError> {
        ev.check().map_err(CallError::Invalid)?;
        let url = self.node_url("health-events");
        let reply = self.post_json(&url, ev)?;
        // Rakkr answers 201; any success means the event is stored, and the server keeps
        // no idempotency, so resending after another 2xx would duplicate it.
        expect_status(&reply, &[200, 201, 202, 204]).map(drop)
    }

    /// 6: `POST /nodes/{nodeId}/recording-jobs/claim-next-group`: the jobs now leased to
    /// this node (empty on 204). Jobs are read leniently: [`Job::validate`] each, and fail
    /// the ones that do not pass.
    pub fn claim_next_group(&self) -> Result<Vec<Job>, CallError> {
        let url = self.node_url("recording-jobs/claim-next-group");
        let reply = self.post_empty(&url, None, Budget::Claim)?;
        if reply.status == 204 {
            return Ok(Vec::new());
        }
        match data::<Value>(&reply)? {
            Value::Array(jobs) => Ok(jobs.into_iter().map(Job::from_value).collect()),
            other => Err(CallError::Malformed(format!(
                "claim-next-group data is not a list: {}",
                truncate(&other.to_string(), 80)
            ))),
        }
    }

    /// 7: `POST /recording-jobs/{jobId}/heartbeat`: extends the lease. A 409
    /// ([`CallError::Conflict`]) means the job is no longer `running` (stop requested,
    /// cancelled, expired): [`Client::get_job`] to learn which.
    pub fn job_heartbeat(&self, job_id: &str) -> Result<Job, CallError> {
        let url = self.job_url(job_id, "/heartbeat");
        let reply = self.post_empty(&url, None, Budget::Job)?;
        job_reply(&reply)
    }

    /// 8: `GET /recording-jobs/{jobId}`.
    pub fn get_job(&self, job_id: &str) -> Result<Job, CallError> {
        let url = self.job_url(job_id, "");
        let reply = self.get_within(&url, Budget::Job)?;
        job_reply(&reply)
    }

    /// 9: `POST /recording-jobs/{jobId}/cancelled` with the reason in `x-rakkr-reason`
    /// (e.g. `controller_stop_requested`; empty: `agent_cancelled`). Idempotent; a 404
    /// means the job already ended otherwise.
    pub fn post_cancelled(&self, job_id: &str, reason: &str) -> Result<(), CallError> {
        let url = self.job_url(job_id, "/cancelled");
        let reason = reason_header(reason, "agent_cancelled");
        self.post_empty(&url, Some(&reason), Budget::Call).map(drop)
    }

    /// 10: `POST /recording-jobs/{jobId}/failed` with the reason in `x-rakkr-reason`
    /// (empty: `agent_failed`). Idempotent; a 404 means the job already ended otherwise.
    pub fn post_failed(&self, job_id: &str, reason: &str) -> Result<(), CallError> {
        let url = self.job_url(job_id, "/failed");
        let reason = reason_header(reason, "agent_failed");
        self.post_empty(&url, Some(&reason), Budget::Call).map(drop)
    }

    /// 12: `GET /nodes/{nodeId}/channel-map-assignments`.
    pub fn channel_map_assignments(&self) -> Result<Vec<ChannelMapBundle>, CallError> {
        let url = self.node_url("channel-map-assignments");
        let reply = self.get(&url)?;
        data(&reply)
    }
}

#[cfg(test)]
mod tests;
