//! The cache-file upload's request description, its checks, and the reader that hashes
//! the bytes as they stream from disk (so the controller's checksum can be checked against
//! exactly what was sent, without reading the file twice or holding it in memory).

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::Path;

/// A supplementary rendition; `None` in [`UploadRequest::rendition`] is the primary one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rendition {
    /// The unprocessed capture: supplementary, never completes the job.
    Raw,
    /// The enhanced render: primary, like no rendition at all.
    Enhanced,
}

impl Rendition {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rendition::Raw => "raw",
            Rendition::Enhanced => "enhanced",
        }
    }
}

/// The bytes of an upload: a file, or a view made on the fly (the stitched WAV of
/// `render::delivery`). Re-opening must give the same bytes, so a retried or resumed
/// upload (`open_at` an offset, for chunks) sends exactly what was hashed.
pub trait UploadBody: std::fmt::Debug + Send + Sync {
    /// Total bytes.
    fn size(&self) -> io::Result<u64>;
    /// The bytes from `offset` on.
    fn open_at(&self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>>;
    /// What the body is, for errors and logs (a path).
    fn path(&self) -> &Path;
    /// The SHA-256 (lower-case hex) the bytes must have, when known before sending.
    fn sha256(&self) -> Option<&str> {
        None
    }
}

/// A file on disk, streamed.
#[derive(Clone, Debug)]
pub struct FileBody(pub std::path::PathBuf);

impl UploadBody for FileBody {
    fn size(&self) -> io::Result<u64> {
        Ok(std::fs::metadata(&self.0)?.len())
    }

    fn open_at(&self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.0)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

/// One `PUT /recordings/{recordingId}/cache-file`. A primary upload (no rendition, or
/// `Enhanced`) completes the job — for a chunked recording, only the final chunk, which
/// is the one carrying `chunk_total`.
#[derive(Clone, Debug)]
pub struct UploadRequest<'a> {
    /// The rendered bytes; streamed, never loaded whole.
    pub body: &'a dyn UploadBody,
    pub job_id: &'a str,
    /// Sent as `x-rakkr-file-name` (non-ASCII is percent-encoded).
    pub file_name: &'a str,
    /// `audio/mpeg`, `audio/flac` or `audio/wav`.
    pub mime_type: &'a str,
    /// `x-rakkr-duration-seconds`, finite and >= 0.
    pub duration_seconds: f64,
    pub rendition: Option<Rendition>,
    /// 0-based chunk index on the wire.
    pub chunk: Option<u32>,
    /// Highest index + 1; only with the final primary chunk.
    pub chunk_total: Option<u32>,
}

impl UploadRequest<'_> {
    /// What the controller would refuse (or misread), found before sending anything.
    pub fn check(&self) -> Result<(), String> {
        if !self.duration_seconds.is_finite() || self.duration_seconds < 0.0 {
            return Err(format!(
                "duration {} is not a number >= 0",
                self.duration_seconds
            ));
        }
        if self.job_id.trim().is_empty() {
            return Err("job id is empty".into());
        }
        if self.file_name.trim().is_empty() {
            return Err("file name is empty".into());
        }
        if self.mime_type.is_empty() || !self.mime_type.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("mime type {:?} is not a token", self.mime_type));
        }
        if let Some(total) = self.chunk_total {
            let Some(chunk) = self.chunk else {
                return Err("chunkTotal without chunk".into());
            };
            if self.rendition == Some(Rendition::Raw) {
                return Err("chunkTotal goes only with the primary rendition".into());
            }
            if chunk.checked_add(1) != Some(total) {
                return Err(format!(
                    "chunkTotal {total} must be the final chunk's index + 1 (chunk {chunk})"
                ));
            }
        }
        Ok(())
    }

    /// `x-rakkr-duration-seconds`: shortest exact decimal (`12.5`, `3600`).
    pub(crate) fn duration_header(&self) -> String {
        format!("{}", self.duration_seconds)
    }
}

/// Makes text safe for a header value: visible ASCII and spaces pass, control characters
/// become spaces, anything else is percent-encoded (UTF-8), `%` included so it decodes
/// back; trimmed and cut to `max` bytes.
pub fn header_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for ch in s.trim().chars() {
        let before = out.len();
        match ch {
            '%' => out.push_str("%25"),
            ' '..='~' => out.push(ch),
            c if c.is_control() => out.push(' '),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
        if out.len() > max {
            out.truncate(before);
            break;
        }
    }
    out.trim_end().to_string()
}

/// Passes bytes through while counting and hashing them.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.bytes
    }

    /// Lower-case hex SHA-256 of everything read so far.
    pub(crate) fn hex_digest(&self) -> String {
        let digest = self.hasher.clone().finalize();
        let mut hex = String::with_capacity(64);
        for b in digest {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BODY: std::sync::LazyLock<FileBody> =
        std::sync::LazyLock::new(|| FileBody("/tmp/x.flac".into()));

    fn req() -> UploadRequest<'static> {
        UploadRequest {
            body: &*BODY,
            job_id: "job_1",
            file_name: "x.flac",
            mime_type: "audio/flac",
            duration_seconds: 12.5,
            rendition: None,
            chunk: None,
            chunk_total: None,
        }
    }

    #[test]
    fn checks() {
        assert!(req().check().is_ok());
        let cases: Vec<(UploadRequest, &str)> = vec![
            (
                UploadRequest {
                    duration_seconds: -1.0,
                    ..req()
                },
                "duration",
            ),
            (
                UploadRequest {
                    duration_seconds: f64::NAN,
                    ..req()
                },
                "duration",
            ),
            (
                UploadRequest {
                    chunk_total: Some(3),
                    ..req()
                },
                "without chunk",
            ),
            (
                UploadRequest {
                    chunk: Some(1),
                    chunk_total: Some(3),
                    ..req()
                },
                "final chunk",
            ),
            (
                UploadRequest {
                    chunk: Some(2),
                    chunk_total: Some(3),
                    rendition: Some(Rendition::Raw),
                    ..req()
                },
                "primary",
            ),
            (
                UploadRequest {
                    mime_type: "audio/flac\r\nx: y",
                    ..req()
                },
                "mime",
            ),
            (
                UploadRequest {
                    job_id: "",
                    ..req()
                },
                "job id",
            ),
        ];
        for (r, words) in cases {
            let e = r.check().unwrap_err();
            assert!(e.contains(words), "{e:?} lacks {words:?}");
        }
        let last = UploadRequest {
            chunk: Some(2),
            chunk_total: Some(3),
            rendition: Some(Rendition::Enhanced),
            ..req()
        };
        assert!(last.check().is_ok());
        assert_eq!(req().duration_header(), "12.5");
        let whole = UploadRequest {
            duration_seconds: 3600.0,
            ..req()
        };
        assert_eq!(whole.duration_header(), "3600");
    }

    #[test]
    fn header_text_is_safe() {
        assert_eq!(
            header_text("controller_stop_requested", 200),
            "controller_stop_requested"
        );
        assert_eq!(header_text(" a\r\nb ", 200), "a  b");
        assert_eq!(
            header_text("Réunion 100%.mp3", 200),
            "R%C3%A9union 100%25.mp3"
        );
        assert_eq!(header_text("abcdef", 4), "abcd");
        assert_eq!(header_text("abcé", 5), "abc");
    }

    #[test]
    fn hashing_reader() {
        let mut r = HashingReader::new(&b"abc"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.count(), 3);
        assert_eq!(
            r.hex_digest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
