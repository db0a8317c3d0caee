//! The reference controller: serves the Rakkr recorder-node API (`PROTOCOL.md`) over
//! HTTP/1.1 from one SQLite file, for tests, the demo and single-box sites. The agent
//! (`edgerec`) never links this crate: it talks to it over HTTP like to any controller.
//!
//! ```text
//!  TcpListener --accept loop (tokio)--> one task per connection:
//!                                         hyper http1 (header read timeout, no keep-alive)
//!                                         -> tower: timeout, concurrency limit, body timeout
//!                                         -> routes::handle (async: auth, body read)
//!                                            -> pool::Stores (a blocking thread + a pooled
//!                                               SQLite connection: one transaction)
//!                                               -> jobs / nodes / upload
//!  lease runner task: leases::expire every `lease_runner_interval`
//!  Admin: operator commands on the same file (WAL), in or out of the server's process
//! ```
//!
//! - [`server`]: start, bind, the accept loop, the layers, shutdown.
//! - `routes`: authentication, authorization, validation, replies; `request`: bounded
//!   body reads; `reply`: the JSON replies.
//! - `jobs` and `leases`: the job state machine, every transition a compare-and-set.
//! - `upload`: the streamed cache-file PUT (to disk while hashing).
//! - `nodes`, `validate`: node calls and their body schemas.
//! - `store`, `pool`: schema, migrations (`user_version`), row readers; the connections.
//! - [`admin`]: what `edgerec-controller node|job|events` calls.
//!
//! Differences from the Rakkr server, all deliberate:
//! - plain HTTP, one request per connection (no keep-alive); put a TLS proxy in front
//!   for anything but loopback or a trusted LAN;
//! - only what the recorder-node API needs: no schedules, template library, policy
//!   library (`recorderCachePolicies` is what `node set-cache-policies` stored), upload
//!   queue, waveforms or audit log;
//!   `channel-map-assignments` serves what `node assign-map` stored for the node (Rakkr
//!   filters interface assignments by the node's inventory instead);
//! - a little stricter on uploads: an unknown `rendition`, a malformed `chunkTotal` or one
//!   not above `chunk` is a 400 (Rakkr ignores them), and the recording and job are
//!   checked again when the body has arrived (a job that ended while the body streamed is
//!   a 409; Rakkr would store the file and mark the recording cached anyway);
//! - inventory integers must be JSON numbers (Rakkr also coerces numeric strings);
//!   `x-rakkr-duration-seconds` is kept as sent (Rakkr rounds it to whole seconds);
//! - whether a primary upload completes a `stop_requested` job is [`StoppedUpload`]; the
//!   default is Rakkr's behaviour (it does).
//!
//! Slow clients cost memory, not service: a connection is a task, its head must arrive
//! within `io_timeout`, a body read that stalls for `io_timeout` is a 408, and a JSON body
//! must arrive whole within `io_timeout` (an upload within `upload_timeout`). A request
//! takes a store connection only for its transaction, never while its body arrives. At
//! most `workers - 2` uploads are received at once (more get 503 + `Retry-After`).

pub mod admin;
mod auth;
mod bootstrap;
mod jobs;
mod leases;
pub mod listen;
mod model;
mod nodes;
mod pool;
mod reply;
mod request;
mod routes;
pub mod server;
mod store;
mod time;
mod upload;
mod validate;

pub use admin::{Admin, AdminError, NodeSummary};
pub use jobs::StoppedUpload;
pub use model::{JobStatus, JobSummary, NewJobSpec, RecordingStatus, RecordingSummary, Timestamp};
pub use server::{Server, ServerConfig, ServerError};
pub use store::StoreError;
