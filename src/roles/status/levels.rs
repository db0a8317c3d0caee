//! The live levels under the running jobs: read from the writer's meter snapshot, drawn
//! as one bar per channel.

use std::path::Path;

use serde::Serialize;

use super::render::short_id;
use crate::journal::JobRow;

/// One capturing job's live levels, in tenths of a dB (so the screen model stays exact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobLevels {
    pub job_id: String,
    pub channels: Vec<LevelLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelLine {
    /// 1-based.
    pub channel: u16,
    pub rms_db10: i32,
    pub peak_db10: i32,
    pub clipping: bool,
}

/// Snapshots older than this are a capture that stopped: not shown as live.
const LEVELS_FRESH_MS: i64 = 12_000;
/// Channels drawn per job on the one screen.
const MAX_LEVEL_CHANNELS: usize = 4;

/// The job's live levels, if its writer published them lately.
pub(super) fn job_levels(state_dir: &Path, job: &JobRow, now_ms: i64) -> Option<JobLevels> {
    let snap = crate::segment::meter_file::read(state_dir, &job.id)?;
    if now_ms - snap.at_ms > LEVELS_FRESH_MS {
        return None;
    }
    let tenths = |db: f64| (db * 10.0).round() as i32;
    Some(JobLevels {
        job_id: job.id.clone(),
        channels: snap
            .channels
            .iter()
            .map(|c| LevelLine {
                channel: c.channel,
                rms_db10: tenths(c.rms_dbfs),
                peak_db10: tenths(c.peak_dbfs),
                clipping: c.clipped > 0,
            })
            .collect(),
    })
}

pub(super) fn level_lines(levels: &[JobLevels]) -> Vec<String> {
    let mut lines = Vec::new();
    for l in levels {
        lines.push(format!("  levels of {}:", short_id(&l.job_id)));
        for c in l.channels.iter().take(MAX_LEVEL_CHANNELS) {
            lines.push(level_line(c));
        }
        if l.channels.len() > MAX_LEVEL_CHANNELS {
            let more = l.channels.len() - MAX_LEVEL_CHANNELS;
            lines.push(format!("    +{more} more channels (--json has them all)"));
        }
    }
    lines
}

/// `  ch 1 [#########...........]  -9.0 rms  -6.0 peak CLIP`: RMS as a bar over -60..0 dBFS.
fn level_line(l: &LevelLine) -> String {
    const BAR: i32 = 30;
    let filled = ((l.rms_db10 + 600).clamp(0, 600) * BAR / 600) as usize;
    format!(
        "    ch {:<3} [{}{}] {:>6.1} rms {:>6.1} peak{}",
        l.channel,
        "#".repeat(filled),
        ".".repeat(BAR as usize - filled),
        l.rms_db10 as f64 / 10.0,
        l.peak_db10 as f64 / 10.0,
        if l.clipping { " CLIP" } else { "" }
    )
}
