//! Wakes the sync loop the moment a writer publishes its levels: an inotify watch on the
//! meter directory (each publication rewrites a file there in place: one modification;
//! a rename into it, as older writers did, counts too), so a meter frame and its
//! listen chunk leave within milliseconds instead of at the loop's next tick. Without
//! inotify the loop still finds them at its ticks.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Starts the watching thread; it lives with the process and wakes only on publications.
pub fn start(state_dir: &Path, wake: impl Fn() + Send + Sync + 'static) {
    let dir = crate::segment::meter_file::path(state_dir, "_")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| state_dir.to_path_buf());
    let started = std::fs::create_dir_all(&dir)
        .and_then(|()| Inotify::watch_writes_into(&dir))
        .and_then(|watch| {
            std::thread::Builder::new()
                .name("edgerec-sync-meter".into())
                .spawn(move || {
                    while watch.wait() {
                        wake();
                    }
                })
        });
    if let Err(e) = started {
        log::warn!(
            "sync: not watching {} ({e}); meter frames go at the loop's ticks",
            dir.display()
        );
    }
}

/// One inotify descriptor watching one directory.
struct Inotify(std::os::fd::OwnedFd);

impl Inotify {
    fn watch_writes_into(dir: &Path) -> std::io::Result<Inotify> {
        use std::os::fd::FromRawFd;
        let path = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: plain syscalls; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mask = libc::IN_MODIFY | libc::IN_MOVED_TO;
        // SAFETY: `path` is a valid NUL-terminated string for the call's duration.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Inotify(owned))
    }

    /// Blocks until a file in the directory was written or renamed into it; false if the descriptor
    /// failed (the thread then ends and the loop's ticks remain).
    fn wait(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return true;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_publication_wakes_the_watcher_and_nothing_else_does() {
        let state = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        start(state.path(), move || {
            let _ = tx.lock().unwrap().send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "woke with nothing published"
        );
        let snapshot = crate::segment::meter_file::path(state.path(), "job_1");
        let mut file = crate::journal::run_files::InPlaceFile::new(snapshot);
        for publication in 0..2 {
            file.write(b"{}").unwrap();
            assert!(
                rx.recv_timeout(Duration::from_secs(2)).is_ok(),
                "no wake-up for publication {publication}"
            );
            while rx.recv_timeout(Duration::from_millis(100)).is_ok() {} // its other events
        }
    }
}
