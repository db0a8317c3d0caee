//! Live levels to the controller: every few seconds each capturing job's newest meter
//! snapshot (the writer's `run/meter/<job>.json`) goes out as a meter frame on its own
//! lane (current state: never queued, the newest replaces an unsent one), and each
//! detector change becomes one health event through the outbox (`agent.meter.<what>` and
//! its `_recovered`), keyed by its number so a restart never sends it twice. The same
//! lane carries each job's newest live-listen chunk (the writer's `run/listen/<job>/`).

use crate::render::timeline_file::format_ms as iso;
use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::lanes::Lane;
use super::{Done, Sync, SyncError};
use crate::controller::client::{CallError, Client, Rendition};
use crate::controller::protocol::{HealthEvent, MeterFrame, MeterLevel, Severity};
use crate::core::job::JobState;
use crate::journal::{JobRow, NewOutboxItem};
use crate::render::enhance::listen::enhance_listen_wav;
use crate::segment::meter_file::{self, ChangeRecord, MeterSnapshot};
use crate::segment::writer::now_ms;

/// A snapshot older than this is a capture that stopped publishing: not sent.
const FRESH_FOR: Duration = Duration::from_secs(12);

/// The denoised rendition of a listen chunk, posted with `?rendition=enhanced` alongside
/// the raw one (as Rakkr's agent does), on the meter lane's thread.
fn send_enhanced(c: &Client, wav: &[u8], at: i64, ms: u64) -> Result<(), CallError> {
    let clean = enhance_listen_wav(wav).map_err(|e| CallError::Invalid(e.to_string()))?;
    c.listen_chunk(&clean, &iso(at), ms, Some(Rendition::Enhanced))
}

impl Sync {
    /// Sends each capturing job's levels and listen chunk the writer published since the
    /// last look (it publishes every 5 s and the loop wakes on each publication:
    /// `meter_watch`; without it the loop's 1 s ticks while a job is live skip none),
    /// and queues their condition changes.
    pub(super) fn meter(&mut self) -> Result<(), SyncError> {
        if self.lanes.is_busy(&Lane::Meter) {
            return Ok(());
        }
        let mut frames = Vec::new();
        let mut chunks = Vec::new();
        let mut live = HashSet::new();
        for job in self.controller_jobs()? {
            if !matches!(job.state, JobState::Capturing | JobState::Stopping) {
                continue;
            }
            live.insert(job.id.clone());
            // The chunk is looked for on its own: the writer replaces the two files one
            // after the other, and a look may fall between them.
            chunks.extend(self.new_listen_chunk(&job));
            let Some(snap) = meter_file::read(&self.settings.state_dir, &job.id) else {
                continue;
            };
            let sent = self
                .meter_sent
                .get(&job.id)
                .is_some_and(|at| *at >= snap.at_ms);
            if sent || now_ms() - snap.at_ms > FRESH_FOR.as_millis() as i64 {
                continue;
            }
            self.meter_sent.insert(job.id.clone(), snap.at_ms);
            log::debug!(
                "{}: meter frame {} ms after it was published",
                job.id,
                now_ms() - snap.at_ms
            );
            self.queue_changes(&job, &snap)?;
            frames.push(meter_frame(&job, &snap, self.lanes.node_id()));
        }
        self.meter_sent.retain(|id, _| live.contains(id));
        let enhanced = self.monitor_enhanced;
        if !frames.is_empty() || !chunks.is_empty() {
            self.lanes.submit(
                Lane::Meter,
                Box::new(move |c: &Client| {
                    let mut sent: Vec<_> = frames.iter().map(|f| c.meter_frame(f)).collect();
                    for (wav, at, ms) in &chunks {
                        sent.push(c.listen_chunk(wav, &iso(*at), *ms, None));
                        if enhanced {
                            sent.push(send_enhanced(c, wav, *at, *ms));
                        }
                    }
                    Done::Meter(sent)
                }),
            );
        }
        Ok(())
    }

    /// The job's listen chunk the writer published since the last one sent, if fresh:
    /// (WAV bytes, captured-at ms, duration ms). Live audio is never queued: one that
    /// fails to send is superseded by the next.
    fn new_listen_chunk(&mut self, job: &JobRow) -> Option<(Vec<u8>, i64, u64)> {
        let (at, ms, path) = meter_file::newest_listen_chunk(&self.settings.state_dir, &job.id)?;
        let fresh = now_ms() - at < FRESH_FOR.as_millis() as i64;
        if !fresh
            || self
                .listen_sent
                .get(&job.id)
                .is_some_and(|sent| *sent >= at)
        {
            return None;
        }
        let wav = std::fs::read(path).ok()?;
        self.listen_sent.insert(job.id.clone(), at);
        Some((wav, at, ms))
    }

    /// One health event per detector change not queued yet (the outbox key makes a
    /// repeat after a restart a no-op).
    fn queue_changes(&mut self, job: &JobRow, snap: &MeterSnapshot) -> Result<(), SyncError> {
        let seen = self.meter_seq.get(&job.id).copied().unwrap_or(0);
        for change in snap.changes.iter().filter(|c| c.seq > seen) {
            let event = health_event(job, change);
            let local_id = event.id.clone().unwrap_or_default();
            let body = serde_json::to_string(&event).unwrap_or_default();
            self.journal.enqueue(&NewOutboxItem::health_event(
                Some(&job.id),
                &local_id,
                body,
                now_ms(),
            ))?;
        }
        if let Some(last) = snap.changes.last() {
            self.meter_seq.insert(job.id.clone(), last.seq.max(seen));
        }
        Ok(())
    }
}

/// The interface a job captures from, as the controller names it.
fn interface_id(job: &JobRow) -> String {
    serde_json::from_str::<Value>(&job.command_json)
        .ok()
        .and_then(|v| {
            let cmd = v.get("command").cloned().unwrap_or(v);
            cmd.get("captureInterfaceId")?.as_str().map(str::to_string)
        })
        .unwrap_or_else(|| job.device.clone())
}

fn meter_frame(job: &JobRow, snap: &MeterSnapshot, node_id: &str) -> MeterFrame {
    let clipping_open = |ch: u16| {
        // The newest change of clipping on this channel says whether it is open.
        snap.changes
            .iter()
            .rev()
            .find(|c| c.condition == "clipping" && c.channel == ch)
            .is_some_and(|c| c.opened)
    };
    MeterFrame {
        captured_at: iso(snap.at_ms),
        interface_id: interface_id(job),
        node_id: node_id.to_string(),
        levels: snap
            .channels
            .iter()
            .take(512)
            .map(|c| MeterLevel {
                channel_index: c.channel,
                label: format!("ch {}", c.channel),
                peak_dbfs: c.peak_dbfs,
                rms_dbfs: c.rms_dbfs,
                clipping: c.clipped > 0 || clipping_open(c.channel),
                quality: None,
            })
            .collect(),
    }
}

fn health_event(job: &JobRow, change: &ChangeRecord) -> HealthEvent {
    let (kind, severity) = if change.opened {
        (
            format!("agent.meter.{}", change.condition),
            Severity::Warning,
        )
    } else {
        (
            format!("agent.meter.{}_recovered", change.condition),
            Severity::Info,
        )
    };
    let mut event = HealthEvent::new(kind, severity);
    event.id = Some(format!("{}:meter:{}", job.id, change.seq));
    event.recording_id = job.recording_id.clone();
    event.opened_at = Some(iso(change.at_ms));
    let at = iso(change.at_ms);
    let observed = if change.opened {
        "firstObservedAt"
    } else {
        "lastObservedAt"
    };
    event.details.insert(observed.into(), Value::from(at));
    event
        .details
        .insert("channel".into(), Value::from(change.channel));
    event
}
