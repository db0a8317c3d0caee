//! Job ownership through the OS: a live process holding a job holds an exclusive `flock`
//! on the job's lock file. The kernel drops it when the process dies in any way (kill -9,
//! crash, power loss), so "locked" means "a live owner", with no stale pid files to guess at.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

const LOCK_FILE: &str = ".owner.lock";

/// Held for as long as the job is owned; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

/// Takes the job's lock without waiting. `Ok(None)`: another live process owns the job.
pub fn try_lock(job_dir: &Path) -> std::io::Result<Option<JobLock>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(job_dir.join(LOCK_FILE))?;
    // SAFETY: flock on a valid, owned fd.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(JobLock { _file: file }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::try_lock(dir.path()).unwrap().expect("free");
        assert!(super::try_lock(dir.path()).unwrap().is_none());
        drop(first);
        assert!(super::try_lock(dir.path()).unwrap().is_some());
    }
}
