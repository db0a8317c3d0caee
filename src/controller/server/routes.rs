//! The API's routes: authenticate, authorize, validate, then one store transaction.
//! Errors follow the Rakkr server's order and wording (401, then 403 on the path's node,
//! then 400 on the body, then 404 on a missing record).

use super::auth;
use super::http::{BodyError, Request, Response};
use super::jobs::{self, JobError, StoppedUpload};
use super::leases;
use super::model::JobStatus;
use super::nodes;
use super::store::{self, Store, StoreError};
use super::time;
use super::upload;
use super::validate;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// The largest JSON body accepted.
const MAX_JSON_BODY: u64 = 1 << 20;

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub lease_ms: i64,
    pub store_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub stopped_upload: StoppedUpload,
    /// A JSON body must arrive within this.
    pub body_timeout: Duration,
    /// An upload body must arrive within this.
    pub upload_timeout: Duration,
    /// Uploads being received now, and the most allowed at once (the rest of the workers
    /// stay free for heartbeats and claims).
    pub uploads_in_flight: AtomicUsize,
    pub max_uploads: usize,
}

/// One worker thread's handler: its own database connection and the shared context.
pub(crate) struct Worker {
    pub store: Store,
    pub ctx: std::sync::Arc<Ctx>,
}

pub(crate) fn store_error(e: StoreError) -> Response {
    if e.is_unavailable() {
        log::warn!("controller: store unavailable: {e}");
        Response::error(503, "Controller store unavailable").with_header("Retry-After", "2".into())
    } else {
        log::error!("controller: {e}");
        Response::error(500, "Internal error")
    }
}

pub(crate) fn job_error(e: JobError) -> Response {
    let status = match &e {
        JobError::NotFound | JobError::RecordingNotFound => 404,
        JobError::OtherNode | JobError::RecordingOtherNode => 403,
        JobError::NotHeartbeatable
        | JobError::NotClaimable
        | JobError::NotStoppable(_)
        | JobError::AlreadyEnded(_) => 409,
        JobError::Store(_) => {
            let JobError::Store(e) = e else {
                unreachable!()
            };
            return store_error(e);
        }
    };
    Response::error(status, &e.to_string())
}

pub(crate) fn body_error(e: BodyError, too_large: &str) -> Response {
    match e {
        BodyError::TooLarge => Response::error(413, too_large),
        BodyError::Malformed => Response::error(400, "Malformed chunked body"),
        BodyError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Response::error(408, "Request body too slow")
        }
        BodyError::Io(e) => Response::error(400, &format!("Could not read the body: {e}")),
    }
}

fn not_this_node() -> Response {
    Response::error(403, "Node credential cannot access this node")
}

impl Worker {
    pub fn handle(&mut self, req: &mut Request) -> Response {
        let started = std::time::Instant::now();
        let reply = self.route(req);
        log::debug!(
            "controller: {} {} -> {} ({} ms)",
            req.method,
            req.path,
            reply.status,
            started.elapsed().as_millis()
        );
        reply
    }

    fn route(&mut self, req: &mut Request) -> Response {
        let Some(rest) = req.path.strip_prefix("/api/v1/") else {
            return Response::error(404, "Not found");
        };
        let segs: Vec<String> = rest.split('/').map(str::to_string).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method = req.method.clone();
        match (method.as_str(), segs.as_slice()) {
            ("POST", ["nodes", n, "heartbeat"]) => self.node_heartbeat(req, n),
            ("POST", ["nodes", n, "inventory"]) => self.node_inventory(req, n),
            ("GET", ["nodes", n, "config"]) => self.node_config(req, n),
            ("POST", ["nodes", n, "meter-frame"]) => self.meter_frame(req, n),
            ("POST", ["nodes", n, "health-events"]) => self.health_event(req, n),
            ("POST", ["nodes", n, "recording-jobs", "claim-next-group"]) => {
                self.claim_next(req, n, true)
            }
            ("POST", ["nodes", n, "recording-jobs", "claim-next"]) => {
                self.claim_next(req, n, false)
            }
            ("GET", ["nodes", n, "channel-map-assignments"]) => self.channel_maps(req, n),
            ("POST", ["recording-jobs", j, "claim"]) => self.job_claim(req, j),
            ("POST", ["recording-jobs", j, "heartbeat"]) => self.job_heartbeat(req, j),
            ("GET", ["recording-jobs", j]) => self.job_read(req, j),
            ("POST", ["recording-jobs", j, "cancelled"]) => {
                self.job_end(req, j, JobStatus::Cancelled)
            }
            ("POST", ["recording-jobs", j, "failed"]) => self.job_end(req, j, JobStatus::Failed),
            ("PUT", ["recordings", r, "cache-file"]) => match self.authenticate(req) {
                Ok(node) => upload::cache_file(self, req, &node, r),
                Err(reply) => reply,
            },
            _ => Response::error(404, "Not found"),
        }
    }

    /// The node of the request's bearer token, or the 401 (or 503) reply.
    pub(crate) fn authenticate(&mut self, req: &Request) -> Result<String, Response> {
        let Some(token) = auth::bearer(req.header("authorization")) else {
            return Err(Response::error(401, "Node credential required"));
        };
        let hash = auth::sha256_hex(token.as_bytes());
        match self.store.read(|tx| store::node_for_token(tx, &hash)) {
            Ok(Some(node)) => Ok(node),
            Ok(None) => Err(Response::error(401, "Invalid node credential")),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Authenticates and checks that the token's node is the path's node.
    fn node_call(&mut self, req: &Request, path_node: &str) -> Result<String, Response> {
        let node = self.authenticate(req)?;
        if node != path_node {
            return Err(not_this_node());
        }
        Ok(node)
    }

    fn json_body(&self, req: &mut Request) -> Result<serde_json::Map<String, Value>, Response> {
        req.set_body_deadline(self.ctx.body_timeout);
        let bytes = req
            .read_body(MAX_JSON_BODY)
            .map_err(|e| body_error(e, "Request body too large"))?;
        validate::object_body(&bytes).map_err(|issues| Response::invalid("Invalid body", issues))
    }

    fn node_heartbeat(&mut self, req: &mut Request, n: &str) -> Response {
        let result = self.node_call(req, n).and_then(|node| {
            let body = self.json_body(req)?;
            let body = validate::heartbeat(&body)
                .map_err(|i| Response::invalid("Invalid node heartbeat", i))?;
            Ok((node, body))
        });
        let (node, body) = match result {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        match self
            .store
            .tx(|tx| nodes::heartbeat(tx, &node, &body, time::now_ms()))
        {
            Ok(Some(v)) => Response::data(202, v),
            Ok(None) => Response::error(404, "Node not found"),
            Err(e) => store_error(e),
        }
    }

    fn node_inventory(&mut self, req: &mut Request, n: &str) -> Response {
        let result = self.node_call(req, n).and_then(|node| {
            let body = self.json_body(req)?;
            let interfaces = validate::inventory(&body)
                .map_err(|i| Response::invalid("Invalid node inventory", i))?;
            Ok((node, interfaces))
        });
        let (node, interfaces) = match result {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        match self
            .store
            .tx(|tx| nodes::inventory(tx, &node, &interfaces, time::now_ms()))
        {
            Ok(Some(v)) => Response::data(202, v),
            Ok(None) => Response::error(404, "Node not found"),
            Err(e) => store_error(e),
        }
    }

    fn node_config(&mut self, req: &mut Request, n: &str) -> Response {
        let node = match self.node_call(req, n) {
            Ok(node) => node,
            Err(reply) => return reply,
        };
        match self.store.read(|tx| nodes::config(tx, &node)) {
            Ok(Some(v)) => Response::data(200, v),
            Ok(None) => Response::error(404, "Node not found"),
            Err(e) => store_error(e),
        }
    }

    fn channel_maps(&mut self, req: &mut Request, n: &str) -> Response {
        let node = match self.node_call(req, n) {
            Ok(node) => node,
            Err(reply) => return reply,
        };
        match self.store.read(|tx| store::node_exists(tx, &node)) {
            Ok(true) => Response::data(200, json!([])),
            Ok(false) => Response::error(404, "Node not found"),
            Err(e) => store_error(e),
        }
    }

    fn meter_frame(&mut self, req: &mut Request, n: &str) -> Response {
        let result = self.node_call(req, n).and_then(|node| {
            let body = self.json_body(req)?;
            let frame = validate::meter_frame(&body)
                .map_err(|i| Response::invalid("Invalid meter frame", i))?;
            if frame.get("nodeId").and_then(Value::as_str) != Some(node.as_str()) {
                return Err(Response::error(403, "Meter frame node mismatch"));
            }
            Ok((node, frame))
        });
        let (node, frame) = match result {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        match self
            .store
            .tx(|tx| nodes::meter_frame(tx, &node, &frame, time::now_ms()))
        {
            Ok(v) => Response::data(202, v),
            Err(e) => store_error(e),
        }
    }

    fn health_event(&mut self, req: &mut Request, n: &str) -> Response {
        let result = self.node_call(req, n).and_then(|node| {
            let body = self.json_body(req)?;
            let ev = validate::health_event(&body)
                .map_err(|i| Response::invalid("Invalid node health event", i))?;
            Ok((node, ev))
        });
        let (node, ev) = match result {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        match self
            .store
            .tx(|tx| nodes::health_event(tx, &node, ev, time::now_ms()))
        {
            Ok(v) => Response::data(201, v),
            Err(e) => job_error(e),
        }
    }

    fn claim_next(&mut self, req: &mut Request, n: &str, whole_group: bool) -> Response {
        let node = match self.node_call(req, n) {
            Ok(node) => node,
            Err(reply) => return reply,
        };
        let lease = self.ctx.lease_ms;
        let claimed = self.store.tx(|tx| {
            let now = time::now_ms();
            leases::expire(tx, now, lease)?;
            jobs::claim_next(tx, &node, whole_group, now, lease)
        });
        match claimed {
            Ok(jobs) if jobs.is_empty() => Response::empty(204),
            Ok(jobs) if whole_group => {
                Response::data(200, jobs.iter().map(|j| j.to_json()).collect())
            }
            Ok(jobs) => Response::data(200, jobs[0].to_json()),
            Err(e) => store_error(e),
        }
    }

    /// Runs a job operation (after lease expiry, in one transaction) for the token's node.
    fn job_op(
        &mut self,
        req: &Request,
        op: impl FnOnce(&rusqlite::Connection, &str, i64, i64) -> Result<Value, JobError>,
    ) -> Response {
        let node = match self.authenticate(req) {
            Ok(node) => node,
            Err(reply) => return reply,
        };
        let lease = self.ctx.lease_ms;
        let result = self.store.tx(|tx| {
            let now = time::now_ms();
            leases::expire(tx, now, lease)?;
            op(tx, &node, now, lease)
        });
        match result {
            Ok(v) => Response::data(200, v),
            Err(e) => job_error(e),
        }
    }

    fn job_claim(&mut self, req: &mut Request, j: &str) -> Response {
        self.job_op(req, |tx, node, now, lease| {
            Ok(jobs::claim(tx, j, node, now, lease)?.to_json())
        })
    }

    fn job_heartbeat(&mut self, req: &mut Request, j: &str) -> Response {
        self.job_op(req, |tx, node, now, lease| {
            Ok(jobs::heartbeat(tx, j, node, now, lease)?.to_json())
        })
    }

    fn job_read(&mut self, req: &mut Request, j: &str) -> Response {
        self.job_op(
            req,
            |tx, node, _, _| Ok(jobs::owned(tx, j, node)?.to_json()),
        )
    }

    fn job_end(&mut self, req: &mut Request, j: &str, to: JobStatus) -> Response {
        let reason = match req.header("x-rakkr-reason") {
            Some(r) => r.to_string(),
            None if to == JobStatus::Cancelled => "agent_cancelled".to_string(),
            None => "agent_failed".to_string(),
        };
        self.job_op(req, |tx, node, now, _| {
            Ok(jobs::end_by_agent(tx, j, node, to, &reason, now)?.to_json())
        })
    }
}
