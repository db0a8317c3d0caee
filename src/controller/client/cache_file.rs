//! 11: the cache-file PUT, streamed from disk and hashed on the way, its reply checked
//! against what was sent.

use std::time::Instant;

use ureq::SendBody;

use super::request::{Budget, MAX_FILE_NAME, data, expect_status, seg};
use super::upload::HashingReader;
use super::{CallError, Client, UploadRequest, header_text};
use crate::controller::protocol::{CacheFileReply, CachedFile};

impl Client {
    /// 11: `PUT /recordings/{recordingId}/cache-file`, streaming the file from disk with
    /// its `Content-Length` under the upload budget. The controller's checksum is checked
    /// against the SHA-256 of the bytes actually sent ([`CallError::ChecksumMismatch`]);
    /// compare [`CachedFile::checksum`] with the render's own before deleting anything.
    pub fn put_cache_file(
        &self,
        recording_id: &str,
        req: &UploadRequest<'_>,
    ) -> Result<CachedFile, CallError> {
        req.check().map_err(CallError::Invalid)?;
        let local = |source| CallError::LocalFile {
            path: req.body.path().to_path_buf(),
            source,
        };
        let size = req.body.size().map_err(local)?;
        if size == 0 {
            return Err(CallError::Invalid(format!(
                "{} is empty: the controller refuses an empty upload",
                req.body.path().display()
            )));
        }
        let file = req.body.open_at(0).map_err(local)?;
        let mut url = format!("{}/recordings/{}/cache-file", self.base, seg(recording_id));
        let mut sep = '?';
        let mut query = |k: &str, v: &str| {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(v);
            sep = '&';
        };
        if let Some(r) = req.rendition {
            query("rendition", r.as_str());
        }
        if let Some(c) = req.chunk {
            query("chunk", &c.to_string());
        }
        if let Some(t) = req.chunk_total {
            query("chunkTotal", &t.to_string());
        }

        let mut reader = HashingReader::new(file);
        let rb = self
            .prepare(self.agent.put(&url), Budget::Upload)
            .header("content-type", req.mime_type)
            .header("content-length", size.to_string())
            .header("x-rakkr-duration-seconds", req.duration_header())
            .header(
                "x-rakkr-file-name",
                header_text(req.file_name, MAX_FILE_NAME),
            )
            .header("x-rakkr-recording-job-id", header_text(req.job_id, 200));
        let started = Instant::now();
        let result = rb.send(SendBody::from_reader(&mut reader));
        let reply = self.finish(result)?;
        let sent = reader.hex_digest();
        if reader.count() != size || req.body.sha256().is_some_and(|want| want != sent) {
            return Err(CallError::LocalFile {
                path: req.body.path().to_path_buf(),
                source: std::io::Error::other(format!(
                    "the body changed during the upload: {} bytes sent (sha256 {sent}), \
                     {size} expected (sha256 {})",
                    reader.count(),
                    req.body.sha256().unwrap_or("not known")
                )),
            });
        }
        expect_status(&reply, &[200, 201])?;
        let stored: CacheFileReply = data(&reply)?;
        if stored.file.sha256_hex().as_deref() != Some(sent.as_str()) || stored.file.size != size {
            return Err(CallError::ChecksumMismatch {
                sent,
                stored: format!("{} ({} bytes)", stored.file.checksum, stored.file.size),
            });
        }
        log::debug!(
            "uploaded {} ({size} bytes) for {recording_id} in {:.1?}",
            req.body.path().display(),
            started.elapsed()
        );
        Ok(stored.file)
    }
}
