//! `POST /nodes/{nodeId}/listen/chunk[?rendition=enhanced]`: a node's live-listen audio, a
//! short WAV every few seconds. Checked as Rakkr checks it (401/403 for the credential,
//! 400 for the headers, 413 over 512 KiB, 400 under 44 bytes), answered 202. Chunks are
//! current state, not history: the newest [`KEPT_PER_NODE`] per node are kept.

use std::sync::Arc;

use axum::body::Body;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::reply::Response;
use crate::request::{BodyError, BodyReader, Req};
use crate::routes::{App, node_call, store_error};
use crate::store::{Doing, StoreError};
use crate::time;

/// The largest chunk accepted (Rakkr's cap).
pub(crate) const MAX_CHUNK_BYTES: u64 = 512 * 1024;
/// The smallest: a WAV header.
const MIN_CHUNK_BYTES: usize = 44;
/// Chunks kept per node; older ones are dropped as new ones arrive.
pub(crate) const KEPT_PER_NODE: i64 = 20;

pub(crate) async fn route(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Response {
    match receive(app, req, body, n).await {
        Ok(r) | Err(r) => r,
    }
}

async fn receive(app: &Arc<App>, req: &Req, body: Body, n: &str) -> Result<Response, Response> {
    let node = node_call(app, req, n).await?;
    let headers = ChunkHeaders::read(req)
        .map_err(|issue| Response::invalid("Invalid monitor chunk headers", vec![json!(issue)]))?;
    let mut reader = BodyReader::new(body, app.idle_timeout, app.body_timeout);
    let audio = match reader.read_all(MAX_CHUNK_BYTES).await {
        Ok(audio) => audio,
        Err(BodyError::TooLarge) => {
            return Err(Response::error(
                413,
                "Monitor chunk exceeds the maximum size",
            ));
        }
        Err(e) => return Err(e.reply("Monitor chunk exceeds the maximum size")),
    };
    if audio.len() < MIN_CHUNK_BYTES {
        return Err(Response::error(400, "Invalid monitor chunk size"));
    }
    let rendition = if req.query("rendition") == Some("enhanced") {
        "enhanced"
    } else {
        "raw"
    };
    let stored = app
        .stores
        .run(move |s| s.tx(|tx| store_chunk(tx, &node, &headers, rendition, &audio)))
        .await?;
    Ok(match stored {
        Ok(v) => Response::data(202, v),
        Err(e) => store_error(e),
    })
}

struct ChunkHeaders {
    captured_at_ms: i64,
    duration_ms: i64,
}

impl ChunkHeaders {
    fn read(req: &Req) -> Result<ChunkHeaders, &'static str> {
        let content_type = req.header("content-type").unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("audio/wav") && !mime.eq_ignore_ascii_case("audio/x-wav") {
            return Err("content-type must be audio/wav");
        }
        let captured_at_ms = match req.header("x-rakkr-captured-at") {
            None => time::now_ms(),
            Some(at) => time::parse_iso8601(at).ok_or("x-rakkr-captured-at is not ISO 8601")?,
        };
        let duration_ms: i64 = req
            .header("x-rakkr-duration-ms")
            .and_then(|d| d.trim().parse().ok())
            .filter(|d| (1..=10_000).contains(d))
            .ok_or("x-rakkr-duration-ms must be an integer from 1 to 10000")?;
        Ok(ChunkHeaders {
            captured_at_ms,
            duration_ms,
        })
    }
}

fn store_chunk(
    tx: &Connection,
    node: &str,
    h: &ChunkHeaders,
    rendition: &str,
    audio: &[u8],
) -> Result<Value, StoreError> {
    let now = time::now_ms();
    tx.execute(
        "INSERT INTO listen_chunks (node_id, rendition, captured_at_ms, duration_ms, wav, \
         received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![node, rendition, h.captured_at_ms, h.duration_ms, audio, now],
    )
    .doing("storing a listen chunk")?;
    tx.execute(
        "DELETE FROM listen_chunks WHERE node_id = ?1 AND seq NOT IN \
         (SELECT seq FROM listen_chunks WHERE node_id = ?1 ORDER BY seq DESC LIMIT ?2)",
        params![node, KEPT_PER_NODE],
    )
    .doing("dropping old listen chunks")?;
    Ok(json!({
        "capturedAt": time::iso_ms(h.captured_at_ms),
        "durationMs": h.duration_ms,
        "nodeId": node,
        "receivedAt": time::iso_ms(now),
        "rendition": rendition,
    }))
}

/// A stored chunk, for the admin CLI.
pub struct StoredChunk {
    pub seq: i64,
    pub rendition: String,
    pub captured_at: String,
    pub duration_ms: i64,
    pub received_at: String,
    pub wav: Vec<u8>,
}

/// A node's kept chunks, oldest first.
pub(crate) fn chunks(tx: &Connection, node: &str) -> Result<Vec<StoredChunk>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, rendition, captured_at_ms, duration_ms, received_at_ms, wav \
             FROM listen_chunks WHERE node_id = ?1 ORDER BY seq",
        )
        .doing("reading listen chunks")?;
    let rows = stmt
        .query_map([node], |r| {
            Ok(StoredChunk {
                seq: r.get(0)?,
                rendition: r.get(1)?,
                captured_at: time::iso_ms(r.get(2)?),
                duration_ms: r.get(3)?,
                received_at: time::iso_ms(r.get(4)?),
                wav: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .doing("reading listen chunks")?;
    Ok(rows)
}
