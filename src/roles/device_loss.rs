//! What a job says while its device is away: a few log lines (state changes, one summary
//! a minute) and, for a controller's job, one health event when the device goes and one
//! when it comes back, delivered once through the outbox.

use crate::render::timeline_file::format_ms as iso;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controller::protocol::{HealthEvent, Severity};
use crate::journal::{JobRow, JobSource, Journal, NewOutboxItem};
use crate::segment::writer::now_ms;

/// Rakkr's names for a capture device that went away and came back.
pub const DEVICE_LOST_EVENT: &str = "agent.recording_job.capture_device_lost";
pub const DEVICE_RECOVERED_EVENT: &str = "agent.recording_job.capture_device_recovered";
/// Rakkr's name for a job's device that cannot be opened when its window opens (it has
/// delivered nothing yet); it closes with the same recovery event.
pub const DEVICE_UNAVAILABLE_EVENT: &str = "agent.recording_job.capture_device_unavailable";

/// How long ago the device went away, given how long ago it delivered its last frame
/// (now is when the failing read saw it gone). It went between the two: a loss seen
/// within a second is put at the midpoint (off by at most half a read period, where
/// either end alone is off by up to a whole one); a longer silence (a stall) began at
/// its last frame.
fn went_away(since_last_frame: Duration) -> Duration {
    if since_last_frame < Duration::from_secs(1) {
        since_last_frame / 2
    } else {
        since_last_frame
    }
}

/// Pure: the wall time (ms) the device went, from its last frame (`since`), the moment
/// its loss was `seen`, and one reading of both clocks (`now_ms` at `now`).
fn went_at_ms(since: Instant, seen: Instant, now_ms: i64, now: Instant) -> i64 {
    let seen_ms = now_ms - now.saturating_duration_since(seen).as_millis() as i64;
    seen_ms - went_away(seen.saturating_duration_since(since)).as_millis() as i64
}

/// Episodes of a job logged in full before the rest are folded.
const LOGGED_IN_FULL: u64 = 3;
/// A flapping device's folded episodes are summed up at most this often.
const FOLD_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// How a job's device episodes reach the log: the first few in full, then one line a
/// minute at most, however fast the device flaps. Every episode still goes on the
/// timeline and out as its health event pair.
#[derive(Debug, Default)]
pub struct FlapLog {
    episodes: u64,
    folded: u64,
    last_summary: Option<Instant>,
}

impl FlapLog {
    /// Counts an episode: whether its own lines are logged, and the summary line to log
    /// now (when folding starts, then once a minute). Pure: the caller passes the clock.
    fn begin_episode(&mut self, job: &str, now: Instant) -> (bool, Option<String>) {
        self.episodes += 1;
        if self.episodes <= LOGGED_IN_FULL {
            return (true, None);
        }
        self.folded += 1;
        let line = match self.last_summary {
            None => format!(
                "{job}: the device keeps going and coming back; further losses are summed \
                 up once a minute (each stays on the timeline and is sent as a health event)"
            ),
            Some(at) if now.duration_since(at) >= FOLD_SUMMARY_EVERY => format!(
                "{job}: device lost and restored {} times in the last {:.0} s ({} so far)",
                self.folded,
                now.duration_since(at).as_secs_f64(),
                self.episodes
            ),
            Some(_) => return (false, None),
        };
        self.folded = 0;
        self.last_summary = Some(now);
        (false, Some(line))
    }
}

/// One episode of a job's device being away: from the first failure to its return.
pub struct DeviceLoss {
    job: String,
    recording: Option<String>,
    controller_job: bool,
    device: String,
    /// Wall time the episode began: the event's `firstObservedAt`, and its identity.
    since_ms: i64,
    since: Instant,
    /// Timeline frame where the audio stopped.
    frame: u64,
    attempts: u64,
    last_error: String,
    last_summary: Instant,
    /// Folded into the job's flap summary: no lines of its own.
    quiet: bool,
}

impl DeviceLoss {
    /// Starts an episode: logs it and, for a controller's job, queues the health event.
    /// The device went between its last frame (`since`) and the moment its loss was
    /// `seen`; the run's teardown after that (journal commits, a loaded box) is not in it.
    pub fn begin(
        journal: &Journal,
        job: &JobRow,
        frame: u64,
        (since, seen): (Instant, Instant),
        detail: &str,
        flaps: &mut FlapLog,
    ) -> DeviceLoss {
        let since_ms = went_at_ms(since, seen, now_ms(), Instant::now());
        let (in_full, summary) = flaps.begin_episode(&job.id, Instant::now());
        if let Some(line) = summary {
            log::warn!("{line}");
        }
        let quiet = !in_full;
        let loss = DeviceLoss {
            job: job.id.clone(),
            recording: job.recording_id.clone(),
            controller_job: job.source == JobSource::Controller,
            device: job.device.clone(),
            since_ms,
            since,
            frame,
            attempts: 0,
            last_error: detail.to_string(),
            last_summary: Instant::now(),
            quiet,
        };
        if quiet {
            log::debug!("{}: device lost ({detail})", loss.job);
        } else if frame == 0 {
            log::warn!(
                "{}: device {} not delivering ({detail}); retrying until the job's window ends",
                loss.job,
                loss.device
            );
        } else {
            log::warn!("{}: device lost ({detail}); reopening", loss.job);
        }
        let (kind, severity) = if frame == 0 {
            (DEVICE_UNAVAILABLE_EVENT, Severity::Warning)
        } else {
            (DEVICE_LOST_EVENT, Severity::Critical)
        };
        loss.send(journal, kind, severity, None);
        loss
    }

    /// The last thing the device or driver said: what a failed job's reason names.
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    pub fn attempt_failed(&mut self, error: &str) {
        self.attempts += 1;
        self.last_error = error.to_string();
        if self.last_summary.elapsed() >= Duration::from_secs(60) {
            log::warn!(
                "{}: device still lost after {:.0} s; {} reopen attempts (last: {error})",
                self.job,
                self.since.elapsed().as_secs_f64(),
                self.attempts
            );
            self.last_summary = Instant::now();
        }
    }

    /// The device delivers again: logs it and queues the recovery event.
    pub fn restored(self, journal: &Journal) {
        let level = if self.quiet {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "{}: device restored after {:.3} s, {} reopen attempts",
            self.job,
            self.since.elapsed().as_secs_f64(),
            self.attempts
        );
        self.send(
            journal,
            DEVICE_RECOVERED_EVENT,
            Severity::Info,
            Some(now_ms()),
        );
    }

    fn send(&self, journal: &Journal, kind: &str, severity: Severity, resolved_ms: Option<i64>) {
        if !self.controller_job {
            return; // a local job has no one to tell; its timeline says it all
        }
        let mut event = HealthEvent::new(kind, severity);
        // Same episode, same id: re-queueing after a crash is a no-op in the outbox.
        let local_id = format!("{}:{kind}:{}", self.job, self.since_ms);
        event.id = Some(local_id.clone());
        event.recording_id = self.recording.clone();
        event.opened_at = Some(iso(self.since_ms));
        let details = &mut event.details;
        details.insert("device".into(), Value::from(self.device.as_str()));
        details.insert("frame".into(), Value::from(self.frame));
        details.insert("firstObservedAt".into(), Value::from(iso(self.since_ms)));
        details.insert("lastError".into(), Value::from(self.last_error.as_str()));
        if let Some(resolved) = resolved_ms {
            details.insert("lastObservedAt".into(), Value::from(iso(resolved)));
            details.insert(
                "gapMs".into(),
                Value::from((resolved - self.since_ms).max(0)),
            );
        }
        let body = serde_json::to_string(&event).unwrap_or_default();
        let item = NewOutboxItem::health_event(Some(&self.job), &local_id, body, now_ms());
        if let Err(e) = journal.enqueue(&item) {
            // The timeline keeps the facts; the controller only misses the live view.
            log::warn!("{}: queueing health event {kind}: {e}", self.job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_is_dated_from_when_it_was_seen_not_when_the_run_was_torn_down() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Last frame at 0, loss seen at 200 ms, the run torn down by 900 ms (a loaded
        // box's journal commits): the midpoint of what was seen, 100 ms.
        assert_eq!(went_at_ms(t0, t0 + ms(200), 10_900, t0 + ms(900)), 10_100);
        // A silence of a second or more began at its last frame.
        assert_eq!(went_at_ms(t0, t0 + ms(3000), 13_000, t0 + ms(3000)), 10_000);
    }

    #[test]
    fn a_flapping_device_is_a_few_lines_then_one_a_minute() {
        let mut flaps = FlapLog::default();
        let t0 = Instant::now();
        // An episode every 5 s for 10 minutes: 120 of them.
        let (full, lines): (Vec<bool>, Vec<Option<String>>) = (0..120)
            .map(|i| flaps.begin_episode("job", t0 + Duration::from_secs(5 * i)))
            .unzip();
        assert_eq!(
            full.iter().filter(|f| **f).count(),
            3,
            "the first three in full"
        );
        assert!(full[..3].iter().all(|f| *f));
        let lines: Vec<String> = lines.into_iter().flatten().collect();
        // The notice at the 4th episode (15 s), then a sum every 60 s: 10 in 10 minutes.
        assert_eq!(lines.len(), 10, "{lines:#?}");
        assert!(
            lines[1].contains("12 times in the last 60 s (16 so far)"),
            "{}",
            lines[1]
        );
        // Three full episodes are 6 lines (lost, restored): 16 lines in 10 minutes.
    }
}
