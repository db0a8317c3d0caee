//! A run file of any length rewritten in place: a header line with a check and the
//! body's length, the body, and spaces to the file's length; one `pwrite` at offset 0,
//! never renamed, never truncated (a new inode and a directory change per update cost
//! more than the update, and a short file would be a moment with nothing to read).
//!
//! ```text
//! edgerec-run <16 hex: SHA-256 of the body, first 8 bytes> <body length>\n<body><spaces>
//! ```
//!
//! A read that overlaps the write may see part of the new record and part of the old;
//! the check over the body then fails (unless the mix is byte for byte one of the two
//! records) and the read is tried again, a few times, then reads as none until the next
//! write.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

const MAGIC: &str = "edgerec-run";
/// Reads of a record that fails its check before giving up on this look.
const READ_TRIES: usize = 3;
/// The longest header: magic, 16 hex, a u64 and the separators.
const HEADER_MAX: usize = MAGIC.len() + 1 + 16 + 1 + 20 + 1;

fn check(body: &[u8]) -> String {
    let digest = sha2::Sha256::digest(body);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Pure: the record for `body`, padded with spaces to at least `len` bytes.
pub(super) fn encode(body: &[u8], len: usize) -> Vec<u8> {
    let mut bytes = format!("{MAGIC} {} {}\n", check(body), body.len()).into_bytes();
    bytes.extend_from_slice(body);
    if bytes.len() < len {
        bytes.resize(len, b' ');
    }
    bytes
}

/// Pure: the body of a whole record (its check matches), if `bytes` hold one.
pub(super) fn decode(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().take(HEADER_MAX).position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut words = header.split(' ');
    let (magic, sum, len) = (words.next()?, words.next()?, words.next()?);
    let len: usize = len.parse().ok()?;
    let body = bytes.get(end + 1..(end + 1).checked_add(len)?)?;
    (magic == MAGIC && words.next().is_none() && sum == check(body)).then_some(body)
}

/// The writer's handle: opened once, rewritten in place.
pub struct InPlaceFile {
    path: PathBuf,
    file: Option<File>,
    /// The file's length: records are padded to it, so it never shrinks.
    len: usize,
}

impl InPlaceFile {
    pub fn new(path: PathBuf) -> InPlaceFile {
        InPlaceFile {
            path,
            file: None,
            len: 0,
        }
    }

    /// Rewrites the record with `body` (opening the file on first use; volatile, never
    /// synced).
    pub fn write(&mut self, body: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let (file, len) = open(&self.path)?;
            (self.file, self.len) = (Some(file), len);
        }
        let bytes = encode(body, self.len);
        let file = self.file.as_ref().expect("opened above");
        let written = file.write_all_at(&bytes, 0);
        match written {
            Ok(()) => self.len = bytes.len(),
            Err(_) => self.file = None, // reopened next time (the directory may have gone)
        }
        written
    }
}

/// Opens (creating) without truncating; the length found is kept.
pub(super) fn open(path: &Path) -> io::Result<(File, usize)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok((file, usize::try_from(len).unwrap_or(usize::MAX)))
}

/// The body of the whole record at `path`, if there is one (at most `max` bytes read).
pub fn read(path: &Path, max: usize) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    (0..READ_TRIES).find_map(|_| {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?.min(max);
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, 0).ok()?;
        decode(&buf[..n]).map(<[u8]>::to_vec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn a_torn_read_of_two_records_is_refused() {
        // A longer record over a shorter one and back, every split as a racing read sees
        // it: only a read that is one record whole decodes, as that record.
        let old_body = br#"{"at_ms":1733000000999,"peak":-20.5}"#.to_vec();
        let new_body = br#"{"at_ms":1733000005000,"peak":-3.25,"x":1}"#.to_vec();
        let old = encode(&old_body, 0);
        let new = encode(&new_body, old.len());
        for (first, second) in [(&old, &new), (&new, &old)] {
            let second = encode(decode(second).unwrap(), first.len());
            for cut in 0..=first.len().max(second.len()) {
                let mut torn = second[..cut.min(second.len())].to_vec();
                torn.extend_from_slice(first.get(cut..).unwrap_or_default());
                if let Some(body) = decode(&torn) {
                    assert!(
                        body == &old_body[..] || body == &new_body[..],
                        "cut at {cut}: {}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
        assert_eq!(
            decode(b"edgerec-run 0000000000000000 2\n{}"),
            None,
            "bad check"
        );
        assert_eq!(decode(b"{\"a\":1}"), None, "not a record");
        assert_eq!(decode(b""), None);
        let huge = format!("edgerec-run 0000000000000000 {}\n{{}}", usize::MAX);
        assert_eq!(decode(huge.as_bytes()), None, "a length past the end");
    }

    #[test]
    fn the_file_is_rewritten_in_place_and_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meter").join("job_1.json");
        let mut f = InPlaceFile::new(path.clone());
        f.write(&[b'a'; 300]).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let long = std::fs::metadata(&path).unwrap().len();
        f.write(b"short").unwrap();
        assert_eq!(read(&path, 1 << 20).as_deref(), Some(&b"short"[..]));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.ino(), meta.len()),
            (inode, long),
            "no rename, no shrink"
        );
        // A new writer (the next run) keeps the length it finds.
        let mut again = InPlaceFile::new(path.clone());
        again.write(b"{}").unwrap();
        assert_eq!(read(&path, 1 << 20).as_deref(), Some(&b"{}"[..]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), long);
        // A file of the old format (plain JSON, replaced by rename) is not trusted.
        std::fs::write(&path, b"{\"job\":\"x\"}").unwrap();
        assert_eq!(read(&path, 1 << 20), None);
    }
}
