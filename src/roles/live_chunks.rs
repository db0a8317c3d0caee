//! Chunks rendered while the job captures (`chunkSeconds`). Chunk k covers output frames
//! `[k·C, (k+1)·C)` of the recording's plan (C = chunkSeconds × rate, gaps filled per the
//! gap policy), rendered as soon as that span is durable in the segments, so the sync
//! role can upload it while capture goes on.
//!
//! It runs in the capture role, on a thread of its own per job, rendering at the render
//! pipeline's lowered priority: the capture role owns the segments and the job's lock
//! and already renders the rest at the job's end, while the sync role must stay free to
//! heartbeat and must never take CPU from the box for an encode.
//!
//! What is complete is what the journal says: a chunk's file is built under a temporary
//! name and renamed, listed in `chunks.json`, and only then recorded in the `uploads`
//! table (unacknowledged). The sync role follows those rows; the job's end renders only
//! the chunks without one. The last chunk of the window is left to the job's end, which
//! sends it with `chunkTotal`.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::core::disk_budget::{BudgetMarks, DiskBudget};
use crate::core::job::JobState;
use crate::core::timeline::{self, GapFill, PlacedSegment};
use crate::journal::{JobRow, JobSource, Journal, JournalError, RAW_ROW, SegmentState};
use crate::render::chunks::{Asked, ChunkFile, Chunks, Part, RenderedChunk};
use crate::render::codec::CodecError;
use crate::render::enhance;
use crate::render::job::{OutputOptions, job_facts};
use crate::render::pipeline::{RenderError, RenderReport};
use crate::roles::runner::RunSettings;
use crate::segment::disk;

/// How long after a span's last frame was captured it is looked for: the writer writes
/// about once a second.
const SETTLE: Duration = Duration::from_millis(1500);
/// Looking again for a span that was not durable yet (a device gap, a late start).
const RETRY: Duration = Duration::from_secs(2);
/// Looking again while the disk is too low for a chunk beside the capture.
const LOW_DISK_WAIT: Duration = Duration::from_secs(30);

/// The chunk renderer of one capturing job.
pub(crate) struct LiveChunks {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl LiveChunks {
    /// Starts the renderer when `job` is a chunked controller job that captures on its
    /// own (a capture group's members are chunked at their end).
    pub fn start(
        journal: &Journal,
        job: &JobRow,
        run: &RunSettings,
        fill: GapFill,
    ) -> Option<Self> {
        let options = OutputOptions::from_command_json(&job.command_json);
        let seconds = options.chunk_seconds?;
        let grouped = journal.group_leader(&job.id).ok()?.is_some()
            || !journal.group_members(&job.id).ok()?.is_empty();
        if job.source != JobSource::Controller || grouped {
            return None;
        }
        let journal = Journal::open(&run.journal_path)
            .map_err(|e| log::warn!("{}: chunks wait for the job's end: {e}", job.id))
            .ok()?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renderer = Renderer {
            journal,
            job_id: job.id.clone(),
            asked: enhance::chunk::asked(&job.command_json),
            options,
            chunk_frames: seconds * u64::from(job.spec.rate),
            fill,
            marks: run.spool.as_ref().map(|s| s.marks),
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("edgerec-chunks".into())
            .spawn(move || renderer.run())
            .map_err(|e| log::warn!("{}: chunks wait for the job's end: {e}", job.id))
            .ok()?;
        Some(LiveChunks { stop, handle })
    }

    /// Stops the renderer. `join`: wait for a chunk being rendered (the job's end renders
    /// the rest next, and must not race it); else it is left to end with the process
    /// (a shutdown: its temporary file is never listed, and rendered again).
    pub fn stop(self, join: bool) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if join && self.handle.join().is_err() {
            log::error!("chunk renderer panicked; the job's end renders its chunks");
        }
    }
}

struct Renderer {
    journal: Journal,
    job_id: String,
    asked: Asked,
    options: OutputOptions,
    chunk_frames: u64,
    fill: GapFill,
    /// The spool's marks, when it has a budget.
    marks: Option<BudgetMarks>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Renderer {
    fn run(self) {
        let mut next = match self.journal.job(&self.job_id) {
            Ok(Some(job)) => rendered_so_far(&self.journal, &job).len() as u64,
            _ => return,
        };
        let mut wait = Duration::ZERO;
        while self.sleep(wait) {
            wait = match self.step(next) {
                Ok(Step::Rendered) => {
                    next += 1;
                    Duration::ZERO
                }
                Ok(Step::NotYet(wait)) => wait,
                Ok(Step::Done) => return,
                Err(e) => {
                    log::warn!("{}: chunk {next}: {e}; trying again", self.job_id);
                    Duration::from_secs(10)
                }
            };
        }
    }

    /// Waits `wait` or until stopped; false once stopped.
    fn sleep(&self, wait: Duration) -> bool {
        let (flag, wake) = &*self.stop;
        let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = wake
            .wait_timeout_while(stopped, wait, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        !*stopped
    }

    /// Renders chunk `k` if its span is durable.
    fn step(&self, k: u64) -> Result<Step, String> {
        let Some(job) = self.journal.job(&self.job_id).map_err(|e| e.to_string())? else {
            return Ok(Step::Done);
        };
        if job.state != JobState::Capturing {
            return Ok(Step::Done); // stopping or over: the job's end renders the rest
        }
        let (from, to) = (k * self.chunk_frames, (k + 1) * self.chunk_frames);
        if job.duration_frames.is_some_and(|total| to >= total) {
            return Ok(Step::Done); // the window's last chunk goes with `chunkTotal`
        }
        let Some(started) = job.started_at_ms else {
            return Ok(Step::NotYet(RETRY));
        };
        let plan = timeline::stitch_plan(&durable_segments(&self.journal, &job)?, None, self.fill);
        let have = timeline::plan_frames(&plan);
        if have < to {
            let rate = u64::from(job.spec.rate).max(1);
            let due_ms = started + ((to * 1000) / rate) as i64 + SETTLE.as_millis() as i64;
            let left = (due_ms - crate::segment::writer::now_ms()).max(0) as u64;
            return Ok(Step::NotYet(Duration::from_millis(left).max(RETRY)));
        }
        if !self.room_for(&job) {
            return Ok(Step::NotYet(LOW_DISK_WAIT));
        }
        let facts = job_facts(&job, job.started_at_ms);
        let Ok(request) = self.options.request(plan, job.spec, facts) else {
            return Ok(Step::Done); // the job's end fails it with the reason
        };
        let index = k as usize;
        let mut listed = Chunks::read_so_far(&job.dir).map_or_else(Vec::new, |c| c.chunks);
        listed.truncate(index);
        if listed.len() != index {
            return Err(format!(
                "chunks.json lists {} chunks before it",
                listed.len()
            ));
        }
        let name = self.options.delivered_name(request.codec);
        let part = Part {
            index,
            span: (from, to),
            delivered_name: &name,
            job_dir: &job.dir,
            before: listed.last(),
        };
        let made = match enhance::chunk::render(&request, &self.asked, &part) {
            Ok(done) => done,
            Err(
                RenderError::Unsupported(_)
                | RenderError::Codec {
                    source: CodecError::Unsupported(_),
                    ..
                },
            ) => return Ok(Step::Done),
            Err(e) => return Err(e.to_string()),
        };
        listed.push(made.chunk.clone());
        let so_far = Chunks {
            content_type: request.codec.content_type.to_string(),
            chunks: listed,
            complete: false,
        };
        so_far.write(&job.dir).map_err(|e| e.to_string())?;
        journal_chunk(&self.journal, &job.id, index, &made).map_err(|e| e.to_string())?;
        log::info!(
            "{}: chunk {index} rendered while capturing ({:.1} s)",
            job.id,
            made.chunk.duration_seconds
        );
        Ok(Step::Rendered)
    }
}

impl Renderer {
    /// Whether a chunk may take disk now: the spool keeps room above its resume mark for
    /// the capture even if the chunk were as large as its PCM. Below it, the segments come
    /// first and the job's end renders the chunk.
    fn room_for(&self, job: &JobRow) -> bool {
        let Some(marks) = self.marks else {
            return true;
        };
        let Ok(space) = disk::disk_space(&job.dir) else {
            return true; // the render's own write errors say what is wrong
        };
        let Ok(budget) = DiskBudget::resolve(space.total_bytes, marks) else {
            return true;
        };
        let pcm = self.chunk_frames * job.spec.bytes_per_frame() as u64;
        let room = space.free_bytes > budget.resume_above().saturating_add(pcm);
        if !room {
            log::info!("{}: chunks wait for the job's end: the disk is low", job.id);
        }
        room
    }
}

enum Step {
    Rendered,
    NotYet(Duration),
    Done,
}

/// The job's segments as far as they are on the disk: closed ones as the journal says,
/// the open one up to what its file holds once synced (the writer's row lags by up to
/// 30 s). Measured before the sync, so every frame counted is durable.
fn durable_segments(
    journal: &Journal,
    job: &JobRow,
) -> Result<Vec<PlacedSegment<std::path::PathBuf>>, String> {
    let mut placed = Vec::new();
    for seg in journal.segments(&job.id).map_err(|e| e.to_string())? {
        let file = job.dir.join(&seg.path);
        let frames = match seg.state {
            SegmentState::Unreadable => continue,
            SegmentState::Open => {
                let (_, frames) =
                    crate::segment::repair::segment_frames(&file).map_err(|e| e.to_string())?;
                std::fs::File::open(&file)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| format!("syncing {}: {e}", seg.path))?;
                frames
            }
            SegmentState::Closed | SegmentState::Repaired => seg.frames,
        };
        placed.push(PlacedSegment {
            file,
            first_frame: seg.first_frame,
            frames,
        });
    }
    Ok(placed)
}

/// The chunks already rendered: the longest run from chunk 0 that `chunks.json` lists,
/// the journal recorded, and whose file is there at the recorded size.
pub(crate) fn rendered_so_far(journal: &Journal, job: &JobRow) -> Vec<ChunkFile> {
    let Some(listed) = Chunks::read_so_far(&job.dir) else {
        return Vec::new();
    };
    let rows = journal.uploads(&job.id).unwrap_or_default();
    listed
        .chunks
        .into_iter()
        .enumerate()
        .take_while(|(i, c)| {
            let len = std::fs::metadata(job.dir.join(&c.file)).map(|m| m.len());
            rows.iter().any(|r| {
                r.chunk as usize == *i
                    && r.path == Path::new(&c.file)
                    && len.as_ref().is_ok_and(|&l| l == r.size)
            })
        })
        .map(|(_, c)| c)
        .collect()
}

/// Records chunk `index` complete (not yet acknowledged) with its checksums: its raw
/// rendition's row, then the primary's (the one that says the chunk is there).
pub(crate) fn journal_chunk(
    journal: &Journal,
    job_id: &str,
    index: usize,
    made: &RenderedChunk,
) -> Result<(), JournalError> {
    let index = u32::try_from(index).unwrap_or(RAW_ROW - 1).min(RAW_ROW - 1);
    let row = |chunk, file: &str, report: &RenderReport| {
        journal.record_upload(job_id, chunk, Path::new(file), report.bytes, &report.sha256)
    };
    // In this order, so a crash between them leaves the chunk to be rendered again.
    if let (Some(file), Some(report)) = (&made.chunk.raw_file, &made.raw) {
        row(RAW_ROW + index, file, report)?;
    }
    row(index, &made.chunk.file, &made.primary)
}

#[cfg(test)]
mod tests;
