//! The API's routes: authenticate, authorize, read and validate the body, then one store
//! transaction on a pooled connection. Errors follow the Rakkr server's order and wording
//! (401, then 403 on the path's node, then 400 on the body, then 404 on a missing record).

use crate::auth;
use crate::jobs::{self, JobError, StoppedUpload};
use crate::leases;
use crate::model::JobStatus;
use crate::nodes;
use crate::pool::Stores;
use crate::reply::Response;
use crate::request::{self, Req};
use crate::store::{self, Store, StoreError};
use crate::time;
use crate::upload;
use crate::validate;
use axum::body::Body;
use axum::extract::State;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// The largest JSON body accepted.
pub(crate) const MAX_JSON_BODY: u64 = 1 << 20;

/// What every request shares.
pub(crate) struct App {
    pub stores: Arc<Stores>,
    pub lease_ms: i64,
    pub store_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub stopped_upload: StoppedUpload,
    /// A body read that makes no progress for this long fails (408).
    pub idle_timeout: Duration,
    /// A JSON body must arrive within this.
    pub body_timeout: Duration,
    /// An upload body must arrive within this.
    pub upload_timeout: Duration,
    /// Uploads being received now, and the most allowed at once.
    pub uploads_in_flight: AtomicUsize,
    pub max_uploads: usize,
}

pub(crate) fn store_error(e: StoreError) -> Response {
    if e.is_unavailable() {
        log::warn!("controller: store unavailable: {e}");
        Response::error(503, "Controller store unavailable").with_header("retry-after", "2".into())
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

/// The one handler: every request comes here (axum's router would answer unknown paths
/// and methods with bodies the agent does not expect).
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let req = Req::new(&parts);
    let started = Instant::now();
    let reply = route(&app, req, body).await;
    log::debug!(
        "controller: {} {} -> {} ({} ms)",
        parts.method,
        parts.uri.path(),
        reply.status,
        started.elapsed().as_millis()
    );
    reply
}

async fn route(app: &Arc<App>, req: Req, body: Body) -> Response {
    let Some(rest) = req.path.strip_prefix("/api/v1/") else {
        return Response::error(404, "Not found");
    };
    let segs: Vec<String> = rest.split('/').map(str::to_string).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let r = match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["nodes", n, "bootstrap"]) => {
            Ok(crate::bootstrap::route(app, &req, body, n).await)
        }
        ("POST", ["nodes", n, "heartbeat"]) => node_heartbeat(app, &req, body, n).await,
        ("POST", ["nodes", n, "inventory"]) => node_inventory(app, &req, body, n).await,
        ("GET", ["nodes", n, "config"]) => node_config(app, &req, n).await,
        ("POST", ["nodes", n, "meter-frame"]) => meter_frame(app, &req, body, n).await,
        ("POST", ["nodes", n, "health-events"]) => health_event(app, &req, body, n).await,
        ("POST", ["nodes", n, "listen", "chunk"]) => {
            Ok(crate::listen::route(app, &req, body, n).await)
        }
        ("POST", ["nodes", n, "recording-jobs", "claim-next-group"]) => {
            claim_next(app, &req, n, true).await
        }
        ("POST", ["nodes", n, "recording-jobs", "claim-next"]) => {
            claim_next(app, &req, n, false).await
        }
        ("GET", ["nodes", n, "channel-map-assignments"]) => channel_maps(app, &req, n).await,
        ("POST", ["recording-jobs", j, "claim"]) => {
            let j = j.to_string();
            job_op(app, &req, move |tx, node, now, lease| {
                Ok(jobs::claim(tx, &j, node, now, lease)?.to_json())
            })
            .await
        }
        ("POST", ["recording-jobs", j, "heartbeat"]) => {
            let j = j.to_string();
            job_op(app, &req, move |tx, node, now, lease| {
                Ok(jobs::heartbeat(tx, &j, node, now, lease)?.to_json())
            })
            .await
        }
        ("GET", ["recording-jobs", j]) => {
            let j = j.to_string();
            job_op(app, &req, move |tx, node, _, _| {
                Ok(jobs::owned(tx, &j, node)?.to_json())
            })
            .await
        }
        ("POST", ["recording-jobs", j, "cancelled"]) => {
            job_end(app, &req, j, JobStatus::Cancelled).await
        }
        ("POST", ["recording-jobs", j, "failed"]) => job_end(app, &req, j, JobStatus::Failed).await,
        ("PUT", ["recordings", r, "cache-file"]) => match authenticate(app, &req).await {
            Ok(node) => upload::cache_file(app, &req, body, &node, r).await,
            Err(reply) => Err(reply),
        },
        _ => Err(Response::error(404, "Not found")),
    };
    r.unwrap_or_else(|reply| reply)
}

/// A route's outcome: the reply either way (`Err` short-circuits with `?`).
type Routed = Result<Response, Response>;

/// The node of the request's bearer token, or the 401 (or 503) reply.
pub(crate) async fn authenticate(app: &Arc<App>, req: &Req) -> Result<String, Response> {
    let Some(token) = auth::bearer(req.header("authorization")) else {
        return Err(Response::error(401, "Node credential required"));
    };
    let hash = auth::sha256_hex(token.as_bytes());
    let found = app
        .stores
        .run(move |s| s.read(|tx| store::node_for_token(tx, &hash)))
        .await?;
    match found {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(Response::error(401, "Invalid node credential")),
        Err(e) => Err(store_error(e)),
    }
}

/// Authenticates and checks that the token's node is the path's node.
pub(crate) async fn node_call(
    app: &Arc<App>,
    req: &Req,
    path_node: &str,
) -> Result<String, Response> {
    let node = authenticate(app, req).await?;
    if node != path_node {
        return Err(Response::error(
            403,
            "Node credential cannot access this node",
        ));
    }
    Ok(node)
}

/// A body schema: the validated input, or the issues to report.
type Check<T> = fn(&Map<String, Value>) -> Result<T, Vec<Value>>;

/// A node's JSON post: authenticate, read the body, validate it, then `op` on the store.
async fn node_post<T: Send + 'static>(
    app: &Arc<App>,
    req: &Req,
    body: Body,
    path_node: &str,
    check: Check<T>,
    invalid: &'static str,
    op: impl FnOnce(&Store, String, T) -> Response + Send + 'static,
) -> Routed {
    let node = node_call(app, req, path_node).await?;
    let bytes =
        request::json_bytes(body, app.idle_timeout, app.body_timeout, MAX_JSON_BODY).await?;
    let body = validate::object_body(&bytes).map_err(|i| Response::invalid("Invalid body", i))?;
    let input = check(&body).map_err(|i| Response::invalid(invalid, i))?;
    app.stores.run(move |s| op(s, node, input)).await
}

fn node_reply(done: Result<Option<Value>, StoreError>, status: u16) -> Response {
    match done {
        Ok(Some(v)) => Response::data(status, v),
        Ok(None) => Response::error(404, "Node not found"),
        Err(e) => store_error(e),
    }
}

async fn node_heartbeat(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Routed {
    let check = validate::heartbeat;
    node_post(
        app,
        req,
        body,
        n,
        check,
        "Invalid node heartbeat",
        |s, node, hb| {
            node_reply(
                s.tx(|tx| nodes::heartbeat(tx, &node, &hb, time::now_ms())),
                202,
            )
        },
    )
    .await
}

async fn node_inventory(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Routed {
    let check = validate::inventory;
    node_post(
        app,
        req,
        body,
        n,
        check,
        "Invalid node inventory",
        |s, node, ifs| {
            node_reply(
                s.tx(|tx| nodes::inventory(tx, &node, &ifs, time::now_ms())),
                202,
            )
        },
    )
    .await
}

async fn meter_frame(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Routed {
    let check = validate::meter_frame;
    node_post(
        app,
        req,
        body,
        n,
        check,
        "Invalid meter frame",
        |s, node, frame| {
            if frame.get("nodeId").and_then(Value::as_str) != Some(node.as_str()) {
                return Response::error(403, "Meter frame node mismatch");
            }
            match s.tx(|tx| nodes::meter_frame(tx, &node, &frame, time::now_ms())) {
                Ok(v) => Response::data(202, v),
                Err(e) => store_error(e),
            }
        },
    )
    .await
}

async fn health_event(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Routed {
    let check = validate::health_event;
    node_post(
        app,
        req,
        body,
        n,
        check,
        "Invalid node health event",
        |s, node, ev| match s.tx(|tx| nodes::health_event(tx, &node, ev, time::now_ms())) {
            Ok(v) => Response::data(201, v),
            Err(e) => job_error(e),
        },
    )
    .await
}

async fn node_config(app: &Arc<App>, req: &Req, n: &str) -> Routed {
    let node = node_call(app, req, n).await?;
    let done = app
        .stores
        .run(move |s| s.read(|tx| nodes::config(tx, &node)))
        .await?;
    Ok(node_reply(done, 200))
}

async fn channel_maps(app: &Arc<App>, req: &Req, n: &str) -> Routed {
    let node = node_call(app, req, n).await?;
    let found = app
        .stores
        .run(move |s| {
            s.read(|tx| {
                Ok(match store::node_exists(tx, &node)? {
                    true => Some(store::channel_map_bundles(tx, &node)?),
                    false => None,
                })
            })
        })
        .await?;
    Ok(match found {
        Ok(Some(bundles)) => Response::data(200, json!(bundles)),
        Ok(None) => Response::error(404, "Node not found"),
        Err(e) => store_error(e),
    })
}

async fn claim_next(app: &Arc<App>, req: &Req, n: &str, whole_group: bool) -> Routed {
    let node = node_call(app, req, n).await?;
    let lease = app.lease_ms;
    let claimed = app
        .stores
        .run(move |s| {
            s.tx(|tx| {
                let now = time::now_ms();
                leases::expire(tx, now, lease)?;
                jobs::claim_next(tx, &node, whole_group, now, lease)
            })
        })
        .await?;
    Ok(match claimed {
        Ok(jobs) if jobs.is_empty() => Response::empty(204),
        Ok(jobs) if whole_group => Response::data(200, jobs.iter().map(|j| j.to_json()).collect()),
        Ok(jobs) => Response::data(200, jobs[0].to_json()),
        Err(e) => store_error(e),
    })
}

/// Runs a job operation (after lease expiry, in one transaction) for the token's node.
async fn job_op(
    app: &Arc<App>,
    req: &Req,
    op: impl FnOnce(&rusqlite::Connection, &str, i64, i64) -> Result<Value, JobError> + Send + 'static,
) -> Routed {
    let node = authenticate(app, req).await?;
    let lease = app.lease_ms;
    let result = app
        .stores
        .run(move |s| {
            s.tx(|tx| {
                let now = time::now_ms();
                leases::expire(tx, now, lease)?;
                op(tx, &node, now, lease)
            })
        })
        .await?;
    Ok(match result {
        Ok(v) => Response::data(200, v),
        Err(e) => job_error(e),
    })
}

async fn job_end(app: &Arc<App>, req: &Req, j: &str, to: JobStatus) -> Routed {
    let reason = match req.header("x-rakkr-reason") {
        Some(r) => r.to_string(),
        None if to == JobStatus::Cancelled => "agent_cancelled".to_string(),
        None => "agent_failed".to_string(),
    };
    let j = j.to_string();
    job_op(app, req, move |tx, node, now, _| {
        Ok(jobs::end_by_agent(tx, &j, node, to, &reason, now)?.to_json())
    })
    .await
}
