//! The server's store connections: a fixed pool, each used by one request at a time on
//! tokio's blocking threads, so SQLite calls (and their fsyncs) never run on the async
//! workers and a request waits for a free connection instead of opening one.

use crate::reply::Response;
use crate::store::{Store, StoreError};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

pub(crate) struct Stores {
    idle: Mutex<Vec<Store>>,
    /// One permit per idle connection: waiting for a permit is waiting for a connection.
    permits: Semaphore,
}

impl Stores {
    /// Opens `n` connections (here, so that a bad database fails `Server::start`).
    pub fn open(path: &Path, n: usize) -> Result<Stores, StoreError> {
        let idle = (0..n)
            .map(|_| Store::open(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stores {
            idle: Mutex::new(idle),
            permits: Semaphore::new(n),
        })
    }

    /// Runs `f` with a connection on a blocking thread. A panic in `f` is a 500; the
    /// connection goes back to the pool either way.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, Response> {
        let internal = || Response::error(500, "Internal error");
        // The semaphore is never closed.
        let _permit = self.permits.acquire().await.map_err(|_| internal())?;
        let store = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or_else(internal)?;
        let pool = self.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&store)));
            pool.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(store);
            out
        })
        .await;
        match ran {
            Ok(Ok(out)) => Ok(out),
            _ => {
                log::error!("controller: a request handler panicked");
                Err(internal())
            }
        }
    }
}
