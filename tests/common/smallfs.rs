//! A small real filesystem (tmpfs) for tests of a disk that fills up, and a filler that
//! takes every last byte of it, as another process on the box would.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs mounted for the test at `dir`, unmounted on drop (also when the test fails).
pub struct SmallFs {
    pub dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl SmallFs {
    /// `None` where mounting is not allowed (needs root or a user namespace).
    pub fn mount(size: &str) -> Option<SmallFs> {
        let keep = tempfile::tempdir().unwrap();
        let dir = keep.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir, _keep: keep })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the filesystem says it is full, to the last block.
pub fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for block in [64 * 1024, 512] {
        let buf = vec![0u8; block];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    written
}
