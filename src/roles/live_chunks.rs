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

use crate::core::job::JobState;
use crate::core::timeline::{self, GapFill, PlacedSegment};
use crate::journal::{JobRow, JobSource, Journal, JournalError, SegmentState};
use crate::render::chunks::{self, ChunkFile, Chunks};
use crate::render::job::{OutputOptions, job_facts};
use crate::render::pipeline::RenderReport;

/// How long after a span's last frame was captured it is looked for: the writer writes
/// about once a second.
const SETTLE: Duration = Duration::from_millis(1500);
/// Looking again for a span that was not durable yet (a device gap, a late start).
const RETRY: Duration = Duration::from_secs(2);

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
        journal_path: &Path,
        fill: GapFill,
    ) -> Option<Self> {
        let options = OutputOptions::from_command_json(&job.command_json);
        let seconds = options.chunk_seconds?;
        let grouped = journal.group_leader(&job.id).ok()?.is_some()
            || !journal.group_members(&job.id).ok()?.is_empty();
        if job.source != JobSource::Controller || grouped {
            return None;
        }
        let journal = Journal::open(journal_path)
            .map_err(|e| log::warn!("{}: chunks wait for the job's end: {e}", job.id))
            .ok()?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renderer = Renderer {
            journal,
            job_id: job.id.clone(),
            options,
            chunk_frames: seconds * u64::from(job.spec.rate),
            fill,
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
    options: OutputOptions,
    chunk_frames: u64,
    fill: GapFill,
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
        let facts = job_facts(&job, job.started_at_ms);
        let request = self
            .options
            .request(plan, job.spec, facts)
            .map_err(|e| e.to_string())?;
        let index = k as usize;
        let name = self.options.delivered_name(request.codec);
        let (chunk, report) = chunks::render_chunk(&request, index, (from, to), &name, &job.dir)
            .map_err(|e| e.to_string())?;
        let mut listed = Chunks::read_so_far(&job.dir).map_or_else(Vec::new, |c| c.chunks);
        listed.truncate(index);
        if listed.len() != index {
            return Err(format!(
                "chunks.json lists {} chunks before it",
                listed.len()
            ));
        }
        listed.push(chunk.clone());
        let so_far = Chunks {
            content_type: request.codec.content_type.to_string(),
            chunks: listed,
            complete: false,
        };
        so_far.write(&job.dir).map_err(|e| e.to_string())?;
        journal_chunk(&self.journal, &job.id, index, &chunk, &report).map_err(|e| e.to_string())?;
        log::info!(
            "{}: chunk {index} rendered while capturing ({:.1} s)",
            job.id,
            chunk.duration_seconds
        );
        Ok(Step::Rendered)
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

/// Records chunk `index` complete (not yet acknowledged) with its checksum.
pub(crate) fn journal_chunk(
    journal: &Journal,
    job_id: &str,
    index: usize,
    chunk: &ChunkFile,
    report: &RenderReport,
) -> Result<(), JournalError> {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    journal.record_upload(
        job_id,
        index,
        Path::new(&chunk.file),
        report.bytes,
        &report.sha256,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::journal::{NewJob, NewSegment};
    use crate::roles::finalize::{self, JobEnd};
    use crate::segment::file::SegmentFile;
    use std::os::unix::fs::MetadataExt;

    const SPEC: StreamSpec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 8_000,
        channels: 1,
    };

    /// Frames `[from, to)` of a ramp, so each chunk's samples are its own.
    fn ramp(from: u64, to: u64) -> Vec<u8> {
        (from..to)
            .flat_map(|i| ((i % 30_000) as i16).to_le_bytes())
            .collect()
    }

    fn renderer(journal_path: &Path) -> Renderer {
        let command = r#"{"command": {"chunkSeconds": 1, "outputCodec": "wav"}}"#;
        Renderer {
            journal: Journal::open(journal_path).unwrap(),
            job_id: "job_a".into(),
            options: OutputOptions::from_command_json(command),
            chunk_frames: 8_000,
            fill: GapFill::Silence,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        }
    }

    #[test]
    fn chunks_render_as_their_span_is_durable_and_the_end_renders_only_the_rest() {
        let out = tempfile::tempdir().unwrap();
        let db = finalize::journal_path(out.path());
        let mut journal = Journal::open(&db).unwrap();
        let dir = out.path().join("job_a");
        std::fs::create_dir_all(&dir).unwrap();
        journal
            .create_job(&NewJob {
                id: "job_a".into(),
                source: JobSource::Controller,
                controller_job_id: Some("job_1".into()),
                recording_id: Some("rec_1".into()),
                command_json: r#"{"command": {"chunkSeconds": 1, "outputCodec": "wav"}}"#.into(),
                backend: "synth".into(),
                device: "ramp".into(),
                spec: SPEC,
                duration_frames: Some(20_000), // 2.5 s: chunks of 1, 1 and 0.5 s
                dir: dir.clone(),
                state: JobState::Capturing,
                created_at_ms: 1,
            })
            .unwrap();
        journal.set_job_started("job_a", 1_000).unwrap();
        let mut seg = SegmentFile::create(&dir.join("000001.wav"), SPEC).unwrap();
        let id = journal
            .insert_segment(&NewSegment {
                job_id: "job_a".into(),
                seq: 1,
                path: "000001.wav".into(),
                first_frame: 0,
                spec: SPEC,
                opened_at_ms: 1,
            })
            .unwrap();
        seg.write_frames(&ramp(0, 12_000)).unwrap();
        seg.sync_data().unwrap();
        let r = renderer(&db);
        // Chunk 0's span is on the disk (the segment's row still says 0 frames).
        assert!(matches!(r.step(0), Ok(Step::Rendered)));
        assert!(matches!(r.step(1), Ok(Step::NotYet(_))));
        let first = dir.join("chunks/chunk-0000.wav");
        let rows = journal.uploads("job_a").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].acknowledged_at_ms, None);
        assert_eq!(
            rows[0].sha256,
            crate::render::pipeline::hash_file(&first).unwrap().0
        );
        let job = journal.job("job_a").unwrap().unwrap();
        assert_eq!(rendered_so_far(&journal, &job).len(), 1);

        // A chunk half-written at a kill: listed, but never journaled. It does not count,
        // and it is rendered again.
        let mut listed = Chunks::read_so_far(&dir).unwrap();
        let mut half = listed.chunks[0].clone();
        half.file = chunks::chunk_file(1, "wav");
        std::fs::write(dir.join(&half.file), b"RIFF\0\0").unwrap();
        listed.chunks.push(half);
        listed.write(&dir).unwrap();
        assert_eq!(rendered_so_far(&journal, &job).len(), 1);
        seg.write_frames(&ramp(12_000, 20_000)).unwrap();
        seg.sync_data().unwrap();
        assert!(matches!(r.step(1), Ok(Step::Rendered)));
        let second = dir.join(chunks::chunk_file(1, "wav"));
        let samples = |p: &Path| -> Vec<i16> {
            let mut w = hound::WavReader::open(p).unwrap();
            w.samples::<i16>().map(Result::unwrap).collect()
        };
        assert_eq!(samples(&second).len(), 8_000);
        assert_eq!(samples(&second)[0], 8_000);
        // The window's last chunk is left to the job's end (it carries `chunkTotal`).
        assert!(matches!(r.step(2), Ok(Step::Done)));

        // The end renders only chunk 2, and no whole-recording file.
        let inodes = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let before = (inodes(&first), inodes(&second));
        let frames = seg.close().unwrap();
        journal
            .close_segment(id, frames, SegmentState::Closed, 2)
            .unwrap();
        journal
            .set_job_state("job_a", JobState::Captured, None, 3)
            .unwrap();
        let job = journal.job("job_a").unwrap().unwrap();
        finalize::finalize(
            &mut journal,
            &job,
            &JobEnd::new("duration"),
            GapFill::Silence,
        )
        .unwrap();
        assert_eq!(
            (inodes(&first), inodes(&second)),
            before,
            "not rendered again"
        );
        let all = Chunks::read(&dir).expect("complete");
        assert_eq!(all.chunks.len(), 3);
        let last = samples(&dir.join(&all.chunks[2].file));
        assert_eq!((last.len(), last[0]), (4_000, 16_000));
        assert_eq!(journal.uploads("job_a").unwrap().len(), 3);
        assert!(!dir.join("recording.wav").exists());
        let d = crate::render::job::deliverable(&dir).unwrap();
        assert_eq!(d.path, dir.join(chunks::CHUNKS_FILE));
        assert!((d.duration_seconds - 2.5).abs() < 1e-9);
    }
}
