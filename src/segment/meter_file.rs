//! The writer's live levels as a small file beside the journal, `run/meter/<job>.json`,
//! rewritten in place every few seconds (`run_files::in_place`: one `pwrite`, a check
//! so a torn read is never trusted): current state, not history, so it is never fsynced
//! and never journaled (the flash is spared). The sync role turns it into meter frames
//! and health events; `edgerec status` draws it.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::format::StreamSpec;
use crate::core::listen::ListenTap;
use crate::core::meter::{Change, Detectors, LevelMeter, Levels, Thresholds};
use crate::journal::run_files::{InPlaceFile, in_place};

/// How often levels are published (Rakkr's agent sends a meter frame every 5 s).
pub const METER_EVERY: Duration = Duration::from_secs(5);
/// Condition changes kept in the file, for a reader that looks less often.
const CHANGES_KEPT: usize = 32;
/// Most bytes a reader takes of the file (256 channels and 32 changes are ~40 KB).
const READ_MAX: usize = 1 << 20;

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterSnapshot {
    pub job: String,
    /// Wall time of the window's end.
    pub at_ms: i64,
    pub window_ms: u64,
    pub channels: Vec<ChannelSnapshot>,
    /// Channels 1-2, 3-4, …; `None` when either is silent.
    pub pair_correlation: Vec<Option<f64>>,
    /// The last condition changes, numbered from 1 over the job's run.
    pub changes: Vec<ChangeRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelSnapshot {
    /// 1-based.
    pub channel: u16,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    pub clipped: u64,
    pub dc: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub seq: u64,
    pub at_ms: i64,
    /// `clipping`, `flatline`, … (Rakkr: `agent.meter.<condition>`).
    pub condition: String,
    pub channel: u16,
    pub opened: bool,
}

/// The writer's side: feeds frames, publishes on schedule.
pub struct MeterPublisher {
    path: PathBuf,
    /// The file at `path`, held open and rewritten in place.
    file: InPlaceFile,
    job: String,
    spec: StreamSpec,
    meter: LevelMeter,
    detectors: Detectors,
    window_start: Instant,
    changes: VecDeque<ChangeRecord>,
    seq: u64,
    /// Only while someone listens (a controller's job: its sync role posts the chunks);
    /// without a listener the meter's pass skips the tap's per-frame work.
    listen: Option<ListenTap>,
    listen_dir: PathBuf,
}

impl MeterPublisher {
    /// `state_dir` is the journal's directory; `listen`: publish live-listen chunks.
    pub fn new(
        state_dir: &Path,
        job: &str,
        spec: StreamSpec,
        thresholds: Thresholds,
        listen: bool,
    ) -> MeterPublisher {
        MeterPublisher {
            path: path(state_dir, job),
            file: InPlaceFile::new(path(state_dir, job)),
            job: job.to_string(),
            spec,
            meter: LevelMeter::new(spec.channels),
            detectors: Detectors::new(thresholds),
            window_start: Instant::now(),
            changes: VecDeque::new(),
            seq: 0,
            listen: listen.then(|| ListenTap::new(spec)),
            listen_dir: listen_dir(state_dir, job),
        }
    }

    /// Interleaved frames in the stream's native format.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.meter.feed_bytes(self.spec.format, bytes);
        if let Some(listen) = self.listen.as_mut() {
            listen.feed_bytes(bytes);
        }
    }

    /// How long until the next publication is due.
    pub fn due_in(&self) -> Duration {
        METER_EVERY.saturating_sub(self.window_start.elapsed())
    }

    /// Closes the window: levels, detector changes, the file rewritten. Returns the
    /// changes (the writer logs them).
    pub fn publish(&mut self, now_ms: i64) -> io::Result<Vec<Change>> {
        let window_ms = self.window_start.elapsed().as_millis() as u64;
        // The cadence is anchored: a late publication does not push the next ones back
        // (after a long stall the next window starts now).
        let next = self.window_start + METER_EVERY;
        let now = Instant::now();
        self.window_start = if now.duration_since(next) < METER_EVERY {
            next
        } else {
            now
        };
        log::debug!("{}: meter window of {window_ms} ms published", self.job);
        let levels = self.meter.take();
        if levels.frames == 0 {
            return Ok(Vec::new()); // nothing captured this window: no level to claim
        }
        let changes = self.detectors.update(&levels);
        for c in &changes {
            self.seq += 1;
            self.changes.push_back(ChangeRecord {
                seq: self.seq,
                at_ms: now_ms,
                condition: c.condition.name().to_string(),
                channel: c.channel,
                opened: c.opened,
            });
            if self.changes.len() > CHANGES_KEPT {
                self.changes.pop_front();
            }
        }
        // The listen chunk first: a reader that sees the new levels finds its chunk too.
        self.publish_listen(now_ms)?;
        let snapshot = self.snapshot(&levels, now_ms, window_ms);
        self.file.write(&serde_json::to_vec(&snapshot)?)?;
        Ok(changes)
    }

    /// The window's listen chunk, `<start ms>-<duration ms>.wav`, replacing the last one.
    fn publish_listen(&mut self, now_ms: i64) -> io::Result<()> {
        let Some(listen) = self.listen.as_mut() else {
            return Ok(());
        };
        let samples = listen.take();
        let rate = listen.rate().max(1);
        let duration_ms = (samples.len() as u64 * 1000 / u64::from(rate)).min(10_000);
        if duration_ms == 0 {
            return Ok(());
        }
        let name = format!("{}-{duration_ms}.wav", now_ms - duration_ms as i64);
        let path = self.listen_dir.join(&name);
        crate::journal::run_files::replace_volatile(
            &path,
            &crate::segment::wav::mono_s16_wav(&samples, rate),
        )?;
        for old in std::fs::read_dir(&self.listen_dir)?.flatten() {
            if old.file_name() != name.as_str() {
                let _ = std::fs::remove_file(old.path());
            }
        }
        Ok(())
    }

    fn snapshot(&self, levels: &Levels, at_ms: i64, window_ms: u64) -> MeterSnapshot {
        MeterSnapshot {
            job: self.job.clone(),
            at_ms,
            window_ms,
            channels: levels
                .channels
                .iter()
                .enumerate()
                .map(|(i, l)| ChannelSnapshot {
                    channel: i as u16 + 1,
                    peak_dbfs: l.peak_dbfs,
                    rms_dbfs: l.rms_dbfs,
                    clipped: l.clipped,
                    dc: l.dc,
                })
                .collect(),
            pair_correlation: levels.pair_correlation.clone(),
            changes: self.changes.iter().cloned().collect(),
        }
    }

    /// The job's capture is over: its live levels go with it.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir_all(&self.listen_dir);
    }
}

/// Where a job's live levels are.
pub fn path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir
        .join("run")
        .join("meter")
        .join(format!("{job}.json"))
}

/// Where a job's newest listen chunk is.
pub fn listen_dir(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join("run").join("listen").join(job)
}

/// A job's newest listen chunk: (captured-at ms, duration ms, path), if there is one.
pub fn newest_listen_chunk(state_dir: &Path, job: &str) -> Option<(i64, u64, PathBuf)> {
    std::fs::read_dir(listen_dir(state_dir, job))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (at, dur) = name.strip_suffix(".wav")?.split_once('-')?;
            Some((at.parse().ok()?, dur.parse().ok()?, e.path()))
        })
        .max_by_key(|(at, ..)| *at)
}

/// The job's live levels, if it publishes any (and the record read is whole).
pub fn read(state_dir: &Path, job: &str) -> Option<MeterSnapshot> {
    let bytes = in_place::read(&path(state_dir, job), READ_MAX)?;
    serde_json::from_slice(&bytes).ok()
}
