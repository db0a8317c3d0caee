//! Starting and stopping the server: the tokio runtime, the accept loop (hyper's HTTP/1
//! connection builder, for its per-connection header read timeout), the tower layers and
//! the lease runner.

use crate::pool::Stores;
use crate::routes::{self, App};
use crate::{StoppedUpload, StoreError, leases, upload};
use axum::Router;
use axum::response::Response;
use axum::routing::any;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Service, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// How long `shutdown` waits for in-flight work before leaving it behind.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Requests handled at once; beyond this they wait (each waiting costs a task, not a
/// thread). High enough that slow clients still being read cannot starve the rest.
const MAX_IN_FLIGHT: usize = 1024;
/// The async workers: the work is I/O and SQLite on blocking threads.
const ASYNC_WORKERS: usize = 2;

/// How the server runs. [`ServerConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Port 0 picks a free port ([`Server::addr`] tells which).
    pub listen: SocketAddr,
    /// The SQLite file (created if missing).
    pub db: PathBuf,
    /// Where uploaded files go (created if missing).
    pub store: PathBuf,
    /// Job lease: claim and each job heartbeat set `leaseExpiresAt = now + lease`.
    pub lease: Duration,
    /// How often the lease runner expires leases (it also runs before each job call).
    pub lease_runner_interval: Duration,
    /// Largest cache-file upload (413 beyond).
    pub max_upload_bytes: u64,
    /// Database connections (requests in a transaction at once); at least 3. At most
    /// `workers - 2` uploads are received at once.
    pub workers: usize,
    /// A request head must arrive within this; a body read that makes no progress for this
    /// long fails, as does a JSON body that takes longer in total.
    pub io_timeout: Duration,
    /// A whole upload body must arrive within this (the agent allows 3600 s).
    pub upload_timeout: Duration,
    /// What a primary upload does to a `stop_requested` job.
    pub stopped_upload: StoppedUpload,
    /// Serve more than one request per connection. An idle connection is closed after
    /// `io_timeout` (the head timeout covers the wait for the next request).
    pub keep_alive: bool,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, db: PathBuf, store: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            db,
            store,
            lease: Duration::from_secs(30),
            lease_runner_interval: Duration::from_secs(10),
            max_upload_bytes: 4 << 30,
            workers: 8,
            io_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(3600),
            stopped_upload: StoppedUpload::default(),
            keep_alive: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is in use or not ours: pick another `--listen`.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The upload directory cannot be created.
    #[error("store directory {path:?}: {source}")]
    StoreDir { path: PathBuf, source: io::Error },
    /// A setting is out of range.
    #[error("invalid controller config: {0}")]
    Config(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
}

/// A running controller. Dropping it stops it without waiting; [`Server::shutdown`] waits
/// (boundedly) for in-flight work.
pub struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        check(&cfg)?;
        std::fs::create_dir_all(&cfg.store).map_err(|source| ServerError::StoreDir {
            path: cfg.store.clone(),
            source,
        })?;
        upload::remove_stale_temp_files(&cfg.store);
        let stores = Arc::new(Stores::open(&cfg.db, cfg.workers)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ASYNC_WORKERS)
            .thread_name("ctl")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let bind_err = |source| ServerError::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(cfg.listen))
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let app = Arc::new(App {
            stores: stores.clone(),
            lease_ms: millis(cfg.lease),
            store_dir: cfg.store.clone(),
            max_upload_bytes: cfg.max_upload_bytes,
            stopped_upload: cfg.stopped_upload,
            idle_timeout: cfg.io_timeout,
            body_timeout: cfg.io_timeout,
            upload_timeout: cfg.upload_timeout,
            uploads_in_flight: AtomicUsize::new(0),
            max_uploads: cfg.workers - 2,
        });
        runtime.spawn(leases::run(stores, cfg.lease, cfg.lease_runner_interval));
        runtime.spawn(accept(
            listener,
            service(app, &cfg),
            cfg.io_timeout,
            cfg.keep_alive,
        ));
        let server = Server {
            addr,
            runtime: Some(runtime),
        };
        log::info!(
            "controller: serving {} (db {:?}, store {:?}, lease {:?}, {} connections)",
            server.base_url(),
            cfg.db,
            cfg.store,
            cfg.lease,
            cfg.workers
        );
        Ok(server)
    }

    /// The address it listens on (with the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/api/v1`, with 127.0.0.1 (or ::1) for an unspecified address.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", connect_addr(self.addr))
    }

    /// Stops accepting, drops every connection at its next wait, and waits up to 5 s for
    /// transactions in progress; any still running after that are left to finish.
    pub fn shutdown(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            log::info!("controller: stopped");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The routes behind tower-http's layers, as one service whose clones share the limits.
/// The body limit covers the JSON routes only: an upload's cap is the route's own,
/// checked in PROTOCOL.md's order (401, 404 and 403 before a 413 on the declared length),
/// which a limit in front of it would pre-empt.
fn service(
    app: Arc<App>,
    cfg: &ServerConfig,
) -> impl Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let json_limit = usize::try_from(routes::MAX_JSON_BODY).unwrap_or(usize::MAX);
    let json = Router::new()
        .fallback(routes::handle)
        .layer(RequestBodyLimitLayer::new(json_limit));
    let routes = Router::new()
        .route("/api/v1/recordings/{id}/cache-file", any(routes::handle))
        .merge(json)
        .with_state(app);
    tower::ServiceBuilder::new()
        // Nothing takes longer than the longest upload (plus its transaction).
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            cfg.upload_timeout + cfg.io_timeout,
        ))
        .layer(ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        // A body frame that does not come within this fails the read (a 408).
        .layer(RequestBodyTimeoutLayer::new(cfg.io_timeout))
        .service(routes)
}

/// The accept loop: one task per connection. hyper closes a connection whose head does
/// not arrive within `head_timeout`; without keep-alive a connection is one request.
async fn accept<S>(
    listener: tokio::net::TcpListener,
    service: S,
    head_timeout: Duration,
    keep_alive: bool,
) where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .keep_alive(keep_alive);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("controller: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let per_request = service.clone();
        let handler = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            per_request.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), handler);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("controller: connection: {e}");
            }
        });
    }
}

fn check(cfg: &ServerConfig) -> Result<(), ServerError> {
    let bad = |what: String| Err(ServerError::Config(what));
    if cfg.workers < 3 {
        return bad(format!("workers = {}; at least 3 are needed", cfg.workers));
    }
    if cfg.lease < Duration::from_millis(100) {
        return bad(format!("lease {:?} is shorter than 100 ms", cfg.lease));
    }
    if cfg.lease_runner_interval < Duration::from_millis(10) {
        return bad(format!(
            "lease runner interval {:?} is shorter than 10 ms",
            cfg.lease_runner_interval
        ));
    }
    if cfg.io_timeout < Duration::from_millis(100) || cfg.upload_timeout < cfg.io_timeout {
        return bad(format!(
            "io timeout {:?} / upload timeout {:?}: need io >= 100 ms and upload >= io",
            cfg.io_timeout, cfg.upload_timeout
        ));
    }
    if cfg.max_upload_bytes == 0 {
        return bad("max upload size is 0".into());
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where a client on this host reaches `addr`.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
