//! `PUT /recordings/{recordingId}/cache-file`: streams the body to a temp file under the
//! store directory while hashing it (never the whole body in memory), then, in one
//! transaction, re-checks the recording and job, moves the file into place and records
//! it. Checks run in PROTOCOL.md's order:
//!
//! ```text
//! 401 token | 404 recording | 403 other node | 413 Content-Length over the cap
//! 409 recording failed | 404/403 job (x-rakkr-recording-job-id) | 409 job failed/cancelled
//! 413 while streaming | 400 empty body | 400 bad x-rakkr-duration-seconds | 400 bad chunk
//! ```
//!
//! A primary upload (no `rendition`, or `enhanced`) caches the recording and completes its
//! job; `rendition=raw` is supplementary. For a chunked recording (`chunk=N`, 0-based)
//! only the final primary chunk, the one carrying `chunkTotal`, does. Whether completing
//! includes a `stop_requested` job is [`StoppedUpload`](super::jobs::StoppedUpload).
//!
//! Crash order: the temp file is fsynced, renamed into place and its directory fsynced
//! inside the transaction that records it. A crash between the rename and the commit
//! leaves the new bytes under the old row's checksum; the agent, which got no 201,
//! uploads again and the repeat repairs it. Temp files left by a crash are removed when
//! the server starts.

use crate::jobs;
use crate::leases;
use crate::model::{JobStatus, JobSummary, RecordingStatus, RecordingSummary};
use crate::reply::Response;
use crate::request::{BodyError, BodyReader, LINGER_BYTES, LINGER_TIME, Req};
use crate::routes::{App, store_error};
use crate::store::{self, Doing, StoreError};
use crate::time;
use axum::body::Body;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

/// The reply to a body over the cap, declared or streamed.
const TOO_LARGE: &str = "Recording cache file exceeds the maximum size";

/// The temp directory under the store directory.
pub(crate) const TMP_DIR: &str = ".tmp";
/// Where recordings go under the store directory (Rakkr's folder for ad-hoc recordings).
const FOLDER: &str = "ad-hoc";

/// A refusal: status and message.
#[derive(Debug)]
struct Refusal(u16, &'static str);

impl Refusal {
    fn reply(&self) -> Response {
        Response::error(self.0, self.1)
    }
}

/// The recording and the job the upload belongs to, or why not. `declared`: the
/// `Content-Length`, checked against `cap` at its place in the order.
fn scope(
    tx: &Connection,
    recording_id: &str,
    node: &str,
    job_id: Option<&str>,
    declared: Option<u64>,
    cap: u64,
) -> Result<Result<(RecordingSummary, Option<JobSummary>), Refusal>, StoreError> {
    let Some(rec) = store::recording(tx, recording_id)? else {
        return Ok(Err(Refusal(404, "Recording not found")));
    };
    if rec.node_id != node {
        return Ok(Err(Refusal(
            403,
            "Node credential cannot access this recording",
        )));
    }
    if declared.is_some_and(|n| n > cap) {
        return Ok(Err(Refusal(413, TOO_LARGE)));
    }
    if rec.status == RecordingStatus::Failed {
        return Ok(Err(Refusal(409, "Recording is in a terminal failed state")));
    }
    let ended = |j: &JobSummary| matches!(j.status, JobStatus::Failed | JobStatus::Cancelled);
    let job = match job_id {
        Some(id) => {
            let Some(job) = store::job(tx, id)? else {
                return Ok(Err(Refusal(404, "Recording job not found")));
            };
            Some(job)
        }
        None => {
            // No job header: the recording's live job, if any; a recording whose jobs all
            // ended failed/cancelled must not be resurrected by a headerless upload.
            let own = store::jobs_where(
                tx,
                "WHERE recording_id = ?1 AND node_id = ?2 ORDER BY seq",
                params![rec.id, node],
            )?;
            match own.iter().find(|j| !ended(j)) {
                Some(live) => Some(live.clone()),
                None if own.is_empty() => None,
                None => {
                    return Ok(Err(Refusal(
                        409,
                        "Recording job is in a terminal state and cannot be completed",
                    )));
                }
            }
        }
    };
    if let Some(job) = &job {
        if job.node_id != node {
            return Ok(Err(Refusal(403, "Node credential cannot access this job")));
        }
        if job.recording_id != rec.id {
            return Ok(Err(Refusal(
                403,
                "Recording job does not match this recording",
            )));
        }
        if ended(job) {
            return Ok(Err(Refusal(
                409,
                "Recording job is in a terminal state and cannot be completed",
            )));
        }
    }
    Ok(Ok((rec, job)))
}

/// Counts an upload in flight while alive.
struct UploadSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A received body in a temp file, removed on drop unless moved into place.
struct TempUpload {
    path: PathBuf,
    size: u64,
    sha256: String,
    placed: bool,
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn unavailable(what: &str, e: &io::Error) -> Response {
    log::warn!("controller: upload: {what}: {e}");
    Response::error(503, "Controller store unavailable").with_header("retry-after", "5".into())
}

/// Streams the body into a new temp file, hashing it, refusing more than `cap` bytes.
async fn receive(
    body: &mut BodyReader,
    store_dir: &Path,
    cap: u64,
) -> Result<TempUpload, Response> {
    let dir = store_dir.join(TMP_DIR);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| unavailable("creating the temp directory", &e))?;
    let path = dir.join(format!("upload-{}.part", uuid::Uuid::new_v4()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| unavailable("creating a temp file", &e))?;
    let mut tmp = TempUpload {
        path,
        size: 0,
        sha256: String::new(),
        placed: false,
    };
    let mut hash = Sha256::new();
    while let Some(data) = body.next().await.map_err(|e| e.reply(TOO_LARGE))? {
        if tmp.size + data.len() as u64 > cap {
            return Err(BodyError::TooLarge.reply(TOO_LARGE));
        }
        hash.update(&data);
        file.write_all(&data)
            .await
            .map_err(|e| unavailable("writing a temp file", &e))?;
        tmp.size += data.len() as u64;
    }
    file.sync_all()
        .await
        .map_err(|e| unavailable("syncing a temp file", &e))?;
    tmp.sha256 = crate::auth::hex(&hash.finalize());
    Ok(tmp)
}

/// What the query asks for.
struct Target {
    /// `raw` (supplementary) or not.
    raw: bool,
    enhanced: bool,
    /// 0-based chunk index, and the total carried by the final chunk.
    chunk: Option<u32>,
    chunk_total: Option<u32>,
}

fn target(req: &Req) -> Result<Target, Response> {
    let (raw, enhanced) = match req.query("rendition") {
        None => (false, false),
        Some("raw") => (true, false),
        Some("enhanced") => (false, true),
        Some(_) => return Err(Response::error(400, "Invalid rendition query parameter")),
    };
    let int = |v: &str| -> Option<u32> {
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse().ok())
            .flatten()
    };
    let chunk = match req.query("chunk") {
        None => None,
        Some(v) => {
            Some(int(v).ok_or_else(|| Response::error(400, "Invalid chunk query parameter"))?)
        }
    };
    let chunk_total = match (chunk, req.query("chunkTotal")) {
        (Some(c), Some(v)) => match int(v) {
            Some(t) if t > c => Some(t),
            _ => return Err(Response::error(400, "Invalid chunkTotal query parameter")),
        },
        _ => None,
    };
    Ok(Target {
        raw,
        enhanced,
        chunk,
        chunk_total,
    })
}

/// `.wav`, `.flac` or `.mp3`: from the file name, else the content type (as Rakkr).
fn extension(file_name: Option<&str>, content_type: Option<&str>) -> &'static str {
    let ext = file_name
        .and_then(|n| Path::new(n).extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("wav") => return ".wav",
        Some("flac") => return ".flac",
        Some("mp3") => return ".mp3",
        _ => {}
    }
    match content_type {
        Some(t) if t.contains("flac") => ".flac",
        Some(t) if t.contains("wav") => ".wav",
        _ => ".mp3",
    }
}

fn mime_type(ext: &str) -> &'static str {
    match ext {
        ".wav" => "audio/wav",
        ".flac" => "audio/flac",
        _ => "audio/mpeg",
    }
}

/// Moves the temp file to `dest` (replacing what is there) and syncs the directory.
fn place(tmp: &mut TempUpload, dest: &Path) -> io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    fs::rename(&tmp.path, dest)?;
    tmp.placed = true;
    File::open(dir)?.sync_all()
}

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("placing the file: {0}")]
    Io(io::Error),
}

/// The request, from the job checks on.
pub(crate) async fn cache_file(
    app: &Arc<App>,
    req: &Req,
    body: Body,
    node: &str,
    rec_id: &str,
) -> Result<Response, Response> {
    let job_id = req
        .header("x-rakkr-recording-job-id")
        .filter(|j| !j.is_empty())
        .map(str::to_string);
    let (cap, lease) = (app.max_upload_bytes, app.lease_ms);
    let declared = req.content_length();
    let (rec, n, job) = (rec_id.to_string(), node.to_string(), job_id.clone());
    let checked = app
        .stores
        .run(move |s| {
            s.tx(|tx| {
                leases::expire(tx, time::now_ms(), lease)?;
                scope(tx, &rec, &n, job.as_deref(), declared, cap)
            })
        })
        .await?;
    match checked {
        Ok(Ok(_)) => {}
        Ok(Err(refusal)) => return Err(refusal.reply()),
        Err(e) => return Err(store_error(e)),
    }
    if app.uploads_in_flight.fetch_add(1, Ordering::AcqRel) >= app.max_uploads {
        app.uploads_in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(Response::error(503, "Too many uploads in progress")
            .with_header("retry-after", "5".into()));
    }
    let slot = UploadSlot(&app.uploads_in_flight);
    let mut body = BodyReader::new(body, app.idle_timeout, app.upload_timeout);
    let tmp = match receive(&mut body, &app.store_dir, cap).await {
        Ok(tmp) => tmp,
        Err(reply) => {
            if reply.status != 408 {
                body.linger(LINGER_BYTES, LINGER_TIME).await;
            }
            return Err(reply);
        }
    };
    drop(slot);
    if tmp.size == 0 {
        return Err(Response::error(400, "Recording cache file cannot be empty"));
    }
    let duration = match req.header("x-rakkr-duration-seconds").map(str::trim) {
        None | Some("") => None,
        Some(v) => match v.parse::<f64>() {
            Ok(d) if d.is_finite() && d >= 0.0 => Some(d),
            _ => {
                return Err(Response::error(
                    400,
                    "Invalid x-rakkr-duration-seconds header",
                ));
            }
        },
    };
    let target = target(req)?;
    let file_name = req
        .header("x-rakkr-file-name")
        .and_then(|n| Path::new(n).file_name())
        .and_then(|n| n.to_str())
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string);
    let ext = extension(file_name.as_deref(), req.header("content-type"));
    let (cache_path, reply_name) = names(rec_id, file_name, &target, ext);
    let file = json!({
        "cachePath": cache_path,
        "checksum": format!("sha256:{}", tmp.sha256),
        "durationSeconds": duration,
        "fileName": reply_name,
        "mimeType": mime_type(ext),
        "size": tmp.size,
    });
    let commit = Commit {
        dest: app.store_dir.join(&cache_path),
        rec_id: rec_id.to_string(),
        node: node.to_string(),
        job_id,
        cap,
        lease,
        stopped: app.stopped_upload,
        target,
        file,
        tmp,
    };
    app.stores.run(move |s| commit.run(s)).await?
}

/// The stored path under the store directory and the file name the reply shows.
fn names(rec_id: &str, file_name: Option<String>, target: &Target, ext: &str) -> (String, String) {
    let suffix = if target.raw { ".raw" } else { "" };
    match target.chunk {
        None => (
            format!("{FOLDER}/{rec_id}{suffix}{ext}"),
            file_name.unwrap_or_else(|| format!("{rec_id}{ext}")),
        ),
        Some(i) => {
            let part = format!("part{:04}", u64::from(i) + 1);
            let stem = file_name
                .as_deref()
                .and_then(|n| Path::new(n).file_stem())
                .and_then(|s| s.to_str())
                .unwrap_or(rec_id)
                .to_string();
            (
                format!("{FOLDER}/{rec_id}/{part}{suffix}{ext}"),
                format!("{stem}_{part}{ext}"),
            )
        }
    }
}

/// A received upload, to be checked again and recorded in one transaction.
struct Commit {
    dest: PathBuf,
    rec_id: String,
    node: String,
    job_id: Option<String>,
    cap: u64,
    lease: i64,
    stopped: jobs::StoppedUpload,
    target: Target,
    file: Value,
    tmp: TempUpload,
}

impl Commit {
    fn run(mut self, store: &crate::store::Store) -> Result<Response, Response> {
        let (rec_id, node) = (self.rec_id.as_str(), self.node.as_str());
        let result = store.tx(|tx| {
            let now = time::now_ms();
            leases::expire(tx, now, self.lease)?;
            // Again, under the write lock: the job may have ended while the body streamed.
            let scoped = scope(tx, rec_id, node, self.job_id.as_deref(), None, self.cap)?;
            let (rec, job) = match scoped {
                Ok(s) => s,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if self.target.chunk.is_some() && job.is_none() {
                return Ok(Err(Refusal(
                    409,
                    "Chunk upload requires an owning recording job",
                )));
            }
            place(&mut self.tmp, &self.dest).map_err(CommitError::Io)?;
            let completes = record(tx, &rec, job.as_ref(), &self.target, &self.file, now)?;
            if completes && let Some(job) = &job {
                jobs::complete(tx, &job.id, self.stopped, now)?;
            }
            let rec = store::recording(tx, rec_id)?
                .ok_or_else(|| StoreError::Corrupt("recording vanished".into()))?;
            Ok::<_, CommitError>(Ok(rec))
        });
        match result {
            Ok(Ok(rec)) => {
                log::info!(
                    "controller: stored {} ({} bytes) for {rec_id}",
                    self.file["cachePath"],
                    self.file["size"]
                );
                let mut data = json!({"file": self.file, "recording": rec, "uploadQueueItems": []});
                if let Some(i) = self.target.chunk {
                    data["chunk"] = json!({"index": i, "total": self.target.chunk_total,
                        "rendition": if self.target.raw { "raw" } else { "primary" }});
                }
                Ok(Response::data(201, data))
            }
            Ok(Err(refusal)) => Err(refusal.reply()),
            Err(CommitError::Store(e)) => Err(store_error(e)),
            Err(CommitError::Io(e)) => Err(unavailable("placing a file", &e)),
        }
    }
}

/// Records the stored file on the recording (or chunk); returns whether the upload
/// completes the job (primary whole file, or the final primary chunk).
fn record(
    tx: &Connection,
    rec: &RecordingSummary,
    job: Option<&JobSummary>,
    target: &Target,
    file: &Value,
    now: i64,
) -> Result<bool, StoreError> {
    let path = file["cachePath"].as_str();
    let checksum = file["checksum"].as_str();
    let duration = file["durationSeconds"].as_f64();
    let size = file["size"].as_i64();
    let name = file["fileName"].as_str();
    let mime = file["mimeType"].as_str();
    let Some(chunk) = target.chunk else {
        if target.raw {
            tx.execute(
                "UPDATE recordings SET raw_cache_path = ?2, \
                 cache_path = coalesce(cache_path, ?2), updated_at_ms = ?3 WHERE id = ?1",
                params![rec.id, path, now],
            )
            .doing("recording a raw rendition")?;
            return Ok(false);
        }
        tx.execute(
            "UPDATE recordings SET cached = 1, cache_path = ?2, checksum = ?3, \
             duration_seconds = coalesce(?4, duration_seconds), size_bytes = ?5, \
             file_name = ?6, mime_type = ?7, status = 'cached', \
             enhanced_cache_path = CASE WHEN ?8 THEN ?2 ELSE enhanced_cache_path END, \
             updated_at_ms = ?9 WHERE id = ?1",
            params![
                rec.id,
                path,
                checksum,
                duration,
                size,
                name,
                mime,
                target.enhanced,
                now
            ],
        )
        .doing("recording a cached file")?;
        return Ok(true);
    };
    let rendition = if target.raw { "raw" } else { "primary" };
    tx.execute(
        "INSERT INTO chunks (recording_id, chunk_index, rendition, job_id, cache_path, checksum, \
         size_bytes, duration_seconds, file_name, mime_type, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (recording_id, chunk_index, rendition) DO UPDATE SET \
         job_id = excluded.job_id, cache_path = excluded.cache_path, \
         checksum = excluded.checksum, size_bytes = excluded.size_bytes, \
         duration_seconds = excluded.duration_seconds, file_name = excluded.file_name, \
         mime_type = excluded.mime_type, updated_at_ms = excluded.updated_at_ms",
        params![
            rec.id,
            chunk,
            rendition,
            job.map(|j| j.id.as_str()),
            path,
            checksum,
            size,
            duration,
            name,
            mime,
            now
        ],
    )
    .doing("recording a chunk")?;
    let Some(total) = target.chunk_total.filter(|_| !target.raw) else {
        return Ok(false);
    };
    // The final primary chunk: the whole capture is here.
    tx.execute(
        "UPDATE recordings SET cached = 1, chunk_total = ?2, \
         status = CASE WHEN status IN ('uploaded', 'partial') THEN status ELSE 'cached' END, \
         duration_seconds = coalesce((SELECT nullif(sum(duration_seconds), 0) FROM chunks \
           WHERE recording_id = ?1 AND rendition = 'primary'), duration_seconds), \
         size_bytes = (SELECT sum(size_bytes) FROM chunks \
           WHERE recording_id = ?1 AND rendition = 'primary'), \
         updated_at_ms = ?3 WHERE id = ?1",
        params![rec.id, total, now],
    )
    .doing("caching a chunked recording")?;
    Ok(true)
}

/// Removes temp files a crash left behind.
pub(crate) fn remove_stale_temp_files(store_dir: &Path) {
    let Ok(entries) = fs::read_dir(store_dir.join(TMP_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(".part") {
            match fs::remove_file(e.path()) {
                Ok(()) => log::info!("controller: removed stale {:?}", e.path()),
                Err(err) => log::warn!("controller: cannot remove {:?}: {err}", e.path()),
            }
        }
    }
}
