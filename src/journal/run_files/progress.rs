//! A capturing job's progress run file, rewritten in place: one fixed-size record
//! (`RECORD_LEN` bytes of JSON padded with spaces) written with a single `pwrite` at
//! offset 0, never renamed. The writer publishes it every 2 s; a rename per update cost a
//! directory change each time (and, on an ext4 mounted with `discard`, a wait for the old
//! blocks to be freed).
//!
//! Why a reader never takes a torn record for a real one: a read that overlaps the
//! `pwrite` may see part of the new record and part of the old (the page cache copies
//! without a lock against readers). Each record carries a check over its own fields
//! (the first 8 bytes of the SHA-256 of `frames,at_ms,seq`, in hex), so a mixed read
//! fails the check and is read again (a few tries, then "none": the next publication is
//! at most 2 s away). The file keeps its length, so there is no moment with a short file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::Progress;

/// Bytes in a record: the JSON of the largest values is 94 bytes.
const RECORD_LEN: usize = 128;
/// Reads of a record that fails its check before giving up on this look.
const READ_TRIES: usize = 3;

#[derive(Serialize, Deserialize)]
struct Record {
    frames: u64,
    at_ms: i64,
    seq: u64,
    check: String,
}

fn check(frames: u64, at_ms: i64, seq: u64) -> String {
    let digest = sha2::Sha256::digest(format!("{frames},{at_ms},{seq}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Pure: the record's bytes, `RECORD_LEN` long.
fn encode(p: Progress, seq: u64) -> Vec<u8> {
    let record = Record {
        frames: p.frames,
        at_ms: p.at_ms,
        seq,
        check: check(p.frames, p.at_ms, seq),
    };
    let mut bytes = serde_json::to_vec(&record).unwrap_or_default();
    bytes.resize(RECORD_LEN.max(bytes.len()), b' ');
    bytes
}

/// Pure: the progress a record holds, if it is whole (its check matches).
fn decode(bytes: &[u8]) -> Option<Progress> {
    let r: Record = serde_json::from_slice(bytes).ok()?;
    (r.check == check(r.frames, r.at_ms, r.seq)).then_some(Progress {
        frames: r.frames,
        at_ms: r.at_ms,
    })
}

/// The writer's handle on its job's progress file: opened once, rewritten in place.
pub struct ProgressFile {
    path: PathBuf,
    file: Option<File>,
    seq: u64,
}

impl ProgressFile {
    pub(super) fn new(path: PathBuf) -> ProgressFile {
        ProgressFile {
            path,
            file: None,
            seq: 0,
        }
    }

    /// Rewrites the record (opening the file on first use; volatile, never synced).
    pub fn publish(&mut self, frames: u64, at_ms: i64) -> io::Result<()> {
        self.seq += 1;
        let bytes = encode(Progress { frames, at_ms }, self.seq);
        if self.file.is_none() {
            self.file = Some(open(&self.path)?);
        }
        let file = self.file.as_ref().expect("opened above");
        let written = file.write_all_at(&bytes, 0);
        if written.is_err() {
            self.file = None; // reopened next time (the directory may have gone)
        }
        written
    }
}

fn open(path: &Path) -> io::Result<File> {
    let (file, len) = super::in_place::open(path)?;
    // An older file of another length: one record from now on (a read meanwhile fails
    // its check and is retried).
    if len != RECORD_LEN {
        file.set_len(RECORD_LEN as u64)?;
    }
    Ok(file)
}

/// The progress in the file at `path`, if there is a whole record.
pub(super) fn read(path: &Path) -> Option<Progress> {
    let file = File::open(path).ok()?;
    let mut buf = [0u8; RECORD_LEN];
    (0..READ_TRIES).find_map(|_| {
        let n = file.read_at(&mut buf, 0).ok()?;
        decode(&buf[..n])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_fixed_length_and_round_trip() {
        for (frames, at_ms, seq) in [(0, 0, 1), (u64::MAX, i64::MIN, u64::MAX), (480, 5, 7)] {
            let bytes = encode(Progress { frames, at_ms }, seq);
            assert_eq!(bytes.len(), RECORD_LEN, "{frames} {at_ms} {seq}");
            assert_eq!(decode(&bytes), Some(Progress { frames, at_ms }));
        }
    }

    #[test]
    fn a_torn_read_of_two_records_is_refused() {
        // Every split of an old and a new record, as a read racing the pwrite sees them.
        let old = encode(
            Progress {
                frames: 1_299_999,
                at_ms: 1_733_000_000_999,
            },
            41,
        );
        let new = encode(
            Progress {
                frames: 1_300_000,
                at_ms: 1_733_000_001_000,
            },
            42,
        );
        let mut whole = 0;
        for cut in 0..=RECORD_LEN {
            let torn = [&new[..cut], &old[cut..]].concat();
            if let Some(p) = decode(&torn) {
                // Only a read that is one record whole decodes, as that record.
                let was = if p.frames == 1_300_000 { &new } else { &old };
                assert_eq!(torn[..], was[..], "cut at {cut}");
                whole += 1;
            }
        }
        // The cuts before the first byte that differs and after the last one.
        assert!(whole >= 2, "{whole}");
    }

    #[test]
    fn the_file_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress").join("job_1.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, br#"{"frames":1,"at_ms":2}"#).unwrap(); // an older format
        assert_eq!(
            read(&path),
            None,
            "a record without its check is not trusted"
        );
        let mut f = ProgressFile::new(path.clone());
        f.publish(480, 5).unwrap();
        let inode = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        f.publish(960, 7).unwrap();
        assert_eq!(
            read(&path),
            Some(Progress {
                frames: 960,
                at_ms: 7
            })
        );
        let again = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(inode.unwrap(), again.unwrap(), "no rename");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD_LEN as u64);
    }
}
