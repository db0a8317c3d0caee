//! The reference controller: serves the Rakkr recorder-node API (`PROTOCOL.md`) over
//! HTTP/1.1 from one SQLite file, for tests, the demo and single-box sites.
//!
//! ```text
//!  TcpListener --accept--> [bounded queue] --> N worker threads, each with its own
//!  (acceptor thread)        full: 503           SQLite connection:
//!                                                 http::serve_connection (one request)
//!                                                 -> routes::Worker::handle
//!                                                    -> jobs / nodes / upload (one tx)
//!  lease runner thread: leases::expire every `lease_runner_interval`
//!  Admin: operator commands on the same file (WAL), in or out of the server's process
//! ```
//!
//! - `http`: the small HTTP/1.1 layer (timeouts, bounded heads and bodies).
//! - `routes`: authentication, authorization, validation, replies.
//! - `jobs` and `leases`: the job state machine, every transition a compare-and-set.
//! - `upload`: the streamed cache-file PUT.
//! - `nodes`, `validate`: node calls and their body schemas.
//! - `store`: schema, migrations (`user_version`), row readers.
//! - `admin`: what `edgerec controller node|job ...` calls.
//!
//! Differences from the Rakkr server, all deliberate:
//! - plain HTTP, one request per connection (`Connection: close`); put a TLS proxy in front
//!   for anything but loopback or a trusted LAN;
//! - only what the recorder-node API needs: no schedules, channel-map templates
//!   (`channel-map-assignments` is always `[]`), retention policies
//!   (`recorderCachePolicies` is `[]`), upload queue, waveforms or audit log;
//! - a little stricter on uploads: an unknown `rendition`, a malformed `chunkTotal` or one
//!   not above `chunk` is a 400 (Rakkr ignores them), and the recording and job are
//!   checked again when the body has arrived (a job that ended while the body streamed is
//!   a 409; Rakkr would store the file and mark the recording cached anyway);
//! - inventory integers must be JSON numbers (Rakkr also coerces numeric strings);
//!   `x-rakkr-duration-seconds` is kept as sent (Rakkr rounds it to whole seconds);
//! - whether a primary upload completes a `stop_requested` job is [`StoppedUpload`]; the
//!   default is Rakkr's behaviour (it does).
//!
//! Requests are handled concurrently by the workers; at most `workers - 2` uploads are
//! received at once (more get 503 + `Retry-After`), so a slow uploader never holds up
//! heartbeats and claims. Every read on a connection is bounded (see `http`), so a
//! trickling client is cut off and shutdown is prompt; no lock is held across network I/O.

mod admin;
mod auth;
mod http;
mod jobs;
mod leases;
mod model;
mod nodes;
mod routes;
mod store;
mod time;
mod upload;
mod validate;

pub use admin::{Admin, AdminError, NodeSummary};
pub use jobs::StoppedUpload;
pub use model::{JobStatus, JobSummary, NewJobSpec, RecordingStatus, RecordingSummary, Timestamp};
pub use store::StoreError;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long `shutdown` waits for the threads before leaving them behind.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// Worker threads (each with a database connection); at least 3.
    pub workers: usize,
    /// A socket read or write that makes no progress for this long fails, as does a JSON
    /// body or a request head that takes longer in total.
    pub io_timeout: Duration,
    /// A whole upload body must arrive within this (the agent allows 3600 s).
    pub upload_timeout: Duration,
    /// What a primary upload does to a `stop_requested` job.
    pub stopped_upload: StoppedUpload,
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
    #[error("cannot start a thread: {0}")]
    Spawn(io::Error),
}

/// A running controller. Dropping it stops it without waiting; [`Server::shutdown`] waits
/// (boundedly) for its threads.
pub struct Server {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    /// Dropped to stop: the workers and the lease runner wait on it.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    /// Each thread sends once when it ends.
    done: Receiver<()>,
}

/// Sends on drop: a thread's "I ended", even when it unwinds.
struct Done(Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Server {
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        check(&cfg)?;
        std::fs::create_dir_all(&cfg.store).map_err(|source| ServerError::StoreDir {
            path: cfg.store.clone(),
            source,
        })?;
        upload::remove_stale_temp_files(&cfg.store);
        // Opened here so that a bad database fails `start`, not a thread.
        let mut stores = Vec::new();
        for _ in 0..=cfg.workers {
            stores.push(store::Store::open(&cfg.db)?);
        }
        let listener = TcpListener::bind(cfg.listen).map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let ctx = Arc::new(routes::Ctx {
            lease_ms: millis(cfg.lease),
            store_dir: cfg.store.clone(),
            max_upload_bytes: cfg.max_upload_bytes,
            stopped_upload: cfg.stopped_upload,
            body_timeout: cfg.io_timeout,
            upload_timeout: cfg.upload_timeout,
            uploads_in_flight: AtomicUsize::new(0),
            max_uploads: cfg.workers - 2,
        });
        let limits = http::Limits {
            io_timeout: cfg.io_timeout,
            head_timeout: cfg.io_timeout,
        };
        let shutdown = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (done_tx, done) = crossbeam_channel::unbounded();
        let (conn_tx, conn_rx) = crossbeam_channel::bounded::<TcpStream>(cfg.workers * 4);
        let mut server = Server {
            addr,
            shutdown: shutdown.clone(),
            stop: Some(stop_tx),
            threads: Vec::new(),
            done,
        };
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            let done = Done(done_tx.clone());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let _done = done;
                    f()
                })
                .map_err(ServerError::Spawn)
        };
        let runner_store = stores.pop().expect("one store per thread");
        let (lease, interval, stop) = (cfg.lease, cfg.lease_runner_interval, stop_rx.clone());
        server.threads.push(spawn(
            "ctl-leases".into(),
            Box::new(move || leases::run(runner_store, lease, interval, stop)),
        )?);
        for (i, store) in stores.into_iter().enumerate() {
            let mut worker = routes::Worker {
                store,
                ctx: ctx.clone(),
            };
            let (conns, stop, limits, flag) = (
                conn_rx.clone(),
                stop_rx.clone(),
                limits.clone(),
                shutdown.clone(),
            );
            server.threads.push(spawn(
                format!("ctl-worker-{i}"),
                Box::new(move || work(&mut worker, &conns, &stop, &limits, &flag)),
            )?);
        }
        let flag = shutdown.clone();
        server.threads.push(spawn(
            "ctl-accept".into(),
            Box::new(move || accept(listener, conn_tx, &flag)),
        )?);
        log::info!(
            "controller: serving {} (db {:?}, store {:?}, lease {:?}, {} workers)",
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

    /// Stops accepting, ends in-flight requests at their next read, and waits up to 5 s
    /// for the threads; any still running after that are left to finish on their own.
    pub fn shutdown(mut self) {
        self.signal();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let total = self.threads.len();
        let mut ended = 0;
        while ended < total && self.done.recv_deadline(deadline).is_ok() {
            ended += 1;
        }
        let mut left = 0;
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            log::warn!(
                "controller: {left} threads still busy after {SHUTDOWN_GRACE:?}; left behind"
            );
        } else {
            log::info!("controller: stopped");
        }
    }

    fn signal(&mut self) {
        if self.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop.take();
        // Wake the acceptor, blocked in accept().
        let _ = TcpStream::connect_timeout(&connect_addr(self.addr), Duration::from_secs(1));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal();
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

/// The acceptor: hands connections to the workers; when they are all busy and the queue
/// is full, answers 503 at once instead of letting connections pile up.
fn accept(listener: TcpListener, conns: Sender<TcpStream>, shutdown: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if shutdown.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => match conns.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(stream)) => {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let busy = http::Response::error(503, "Controller busy")
                        .with_header("Retry-After", "1".into());
                    http::write_response(&stream, &busy);
                }
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("controller: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A worker: serves one connection at a time until the server stops.
fn work(
    worker: &mut routes::Worker,
    conns: &Receiver<TcpStream>,
    stop: &Receiver<()>,
    limits: &http::Limits,
    shutdown: &Arc<AtomicBool>,
) {
    loop {
        let stream = crossbeam_channel::select! {
            recv(conns) -> c => match c {
                Ok(stream) => stream,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        if shutdown.load(Ordering::SeqCst) {
            return;
        }
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            http::serve_connection(stream, limits, shutdown, &mut |req| worker.handle(req))
        }));
        if served.is_err() {
            log::error!("controller: a request handler panicked; the worker goes on");
        }
    }
}
