//! Rendering a [`Status`] for the serial console: at most [`MAX_LINES`] lines of at most
//! [`WIDTH`] ASCII columns, no colour.

use std::path::Path;

use super::{
    JobLine, KeptRecording, MAX_KEPT_SHOWN, MAX_LINES, MAX_RUNNING_SHOWN, RECENT_ENDED,
    RECENT_EVENTS, RoleStatus, Status, WIDTH,
};

/// A job id short enough for a line: `job_` dropped, the middle elided.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("job_").unwrap_or(id);
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 15 {
        return id.to_string();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 5..].iter().collect();
    format!("{head}..{tail}")
}

/// `42s`, `17m`, `5h`, `3d`; a time in the future (clock skew) reads `0s`.
pub fn age_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn ago(now_ms: i64, then_ms: i64) -> String {
    format!("{} ago", age_text(now_ms.saturating_sub(then_ms)))
}

fn bytes_text(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.1} KiB", f / KIB)
    }
}

fn seconds(frames: u64, rate: u32) -> String {
    format!("{:.1}", frames as f64 / f64::from(rate.max(1)))
}

/// Cuts a line to the screen width, marking the cut.
fn fit(line: String) -> String {
    // Non-ASCII (a device name, an error) is replaced: a serial console may not be UTF-8.
    let line: String = line
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if line.len() <= WIDTH {
        return line;
    }
    format!("{}...", &line[..WIDTH - 3])
}

/// `KEPT LOCALLY: <path> (<reason>)`, the path shortened only if it must be (relative to the
/// state dir shown in the header, then elided in the middle).
fn kept_line(state_dir: &Path, k: &KeptRecording) -> String {
    let suffix = format!(" ({})", k.reason);
    let full = format!("KEPT LOCALLY: {}{suffix}", k.path.display());
    if full.len() <= WIDTH {
        return full;
    }
    let rel = k.path.strip_prefix(state_dir).unwrap_or(&k.path);
    let rel = rel.display().to_string();
    let room = WIDTH.saturating_sub("KEPT LOCALLY: ".len() + suffix.len());
    let path = if rel.chars().count() <= room || room < 12 {
        rel
    } else {
        let chars: Vec<char> = rel.chars().collect();
        let tail: String = chars[chars.len() - (room - 3)..].iter().collect();
        format!("...{tail}")
    };
    format!("KEPT LOCALLY: {path}{suffix}")
}

fn running_line(j: &JobLine) -> String {
    let progress = match j.duration_frames {
        Some(d) => format!(
            "{}/{} s",
            seconds(j.captured_frames, j.rate),
            seconds(d, j.rate)
        ),
        None => format!("{} s", seconds(j.captured_frames, j.rate)),
    };
    let verdict = j
        .verdict
        .as_ref()
        .map_or(String::new(), |v| format!("[ended: {v}] "));
    format!(
        "  {:<15} {:<10} {:<15} {verdict}{}",
        short_id(&j.id),
        j.state.name(),
        progress,
        j.device
    )
}

fn ended_line(j: &JobLine, now_ms: i64) -> String {
    let when = j.ended_at_ms.unwrap_or(j.updated_at_ms);
    let captured = format!("{} s", seconds(j.captured_frames, j.rate));
    format!(
        "  {:<15} {:<10} {captured:<15} {}  {}",
        short_id(&j.id),
        j.state.name(),
        ago(now_ms, when),
        j.end_cause.as_deref().unwrap_or("-")
    )
}

fn role_line(r: &RoleStatus, now_ms: i64) -> String {
    let label = format!("{}:", r.role);
    let mut line = format!("{label:<8} {}", r.liveness.name());
    if let Some(note) = &r.note {
        line.push_str(&format!(" ({note})"));
    }
    if let Some(pid) = r.pid {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(at) = r.last_beat_ms {
        line.push_str(&format!(", last beat {}", ago(now_ms, at)));
    }
    line
}

/// The screen: at most [`MAX_LINES`] lines of at most [`WIDTH`] ASCII columns.
pub fn render(s: &Status, now_ms: i64) -> String {
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!(
        "edgerec status: {} (journal v{})",
        s.state_dir.display(),
        s.schema_version
    ));
    for r in &s.roles {
        lines.push(role_line(r, now_ms));
    }

    lines.push(format!(
        "jobs:    {} running, {} ended",
        s.running.len(),
        s.ended_total
    ));
    for j in s.running.iter().take(MAX_RUNNING_SHOWN) {
        lines.push(running_line(j));
    }
    if s.running.len() > MAX_RUNNING_SHOWN {
        lines.push(format!(
            "  +{} more running",
            s.running.len() - MAX_RUNNING_SHOWN
        ));
    }
    // Live levels go under the running jobs when the screen has room for them.
    let levels_at = lines.len();
    for j in s.recent_ended.iter().take(RECENT_ENDED) {
        lines.push(ended_line(j, now_ms));
    }
    for k in s.kept_locally.iter().take(MAX_KEPT_SHOWN) {
        lines.push(kept_line(&s.state_dir, k));
    }
    if s.kept_locally.len() > MAX_KEPT_SHOWN {
        lines.push(format!(
            "KEPT LOCALLY: +{} more (edgerec status --json lists them)",
            s.kept_locally.len() - MAX_KEPT_SHOWN
        ));
    }

    for p in &s.pruned {
        lines.push(format!(
            "PRUNED:  {} ({:.1} MB, policy {}, {}, {} ago)",
            p.job_id,
            p.bytes as f64 / 1e6,
            crate::logging::untrusted(&p.policy_id),
            p.reason,
            ago(now_ms, p.at_ms)
        ));
    }

    event_lines(s, now_ms, &mut lines);
    lines.push(disk_line(s));
    lines.push(outbox_line(s, now_ms));
    lines.push(controller_line(s, now_ms));

    let levels = super::levels::level_lines(&s.levels);
    if lines.len() + levels.len() <= MAX_LINES {
        lines.splice(levels_at..levels_at, levels);
    }
    let mut out = String::new();
    for line in lines.into_iter().take(MAX_LINES) {
        out.push_str(&fit(line));
        out.push('\n');
    }
    out
}

/// The latest events on running jobs, or a line saying there are none.
fn event_lines(s: &Status, now_ms: i64, lines: &mut Vec<String>) {
    if s.events.is_empty() {
        lines.push("events:  none on running jobs".to_string());
    } else {
        lines.push("events:".to_string());
        for e in s.events.iter().take(RECENT_EVENTS) {
            lines.push(format!(
                "  {:<15} {:<15} at {} s, {}  {}",
                short_id(&e.job_id),
                e.kind.name(),
                seconds(e.frame, e.rate),
                ago(now_ms, e.at_ms),
                e.detail
            ));
        }
    }
}

/// Free space on the state directory's file system.
fn disk_line(s: &Status) -> String {
    match (&s.disk, &s.disk_error) {
        (Some(d), _) => {
            let pct = if d.total_bytes == 0 {
                0
            } else {
                (u128::from(d.free_bytes) * 100 / u128::from(d.total_bytes)) as u64
            };
            format!(
                "disk:    {} free of {} ({pct}% free)",
                bytes_text(d.free_bytes),
                bytes_text(d.total_bytes)
            )
        }
        (None, Some(e)) => format!("disk:    unknown ({e})"),
        (None, None) => "disk:    unknown".to_string(),
    }
}

/// The outbox's backlog: how much, how old, the last error.
fn outbox_line(s: &Status, now_ms: i64) -> String {
    let mut outbox = format!("outbox:  {} pending", s.outbox.pending);
    match s.outbox.oldest_pending_ms {
        Some(at) => outbox.push_str(&format!(", oldest {}", ago(now_ms, at))),
        None if s.outbox.pending > 0 => outbox.push_str(", oldest unknown"),
        None => {}
    }
    if let Some(e) = &s.outbox.last_error {
        outbox.push_str(&format!("; last error: {e}"));
    }
    outbox
}

/// When the controller last answered, how far its clock is from ours, and the node's
/// open conditions (the sync role's facts; its beat when it wrote none).
fn controller_line(s: &Status, now_ms: i64) -> String {
    let Some(node) = &s.node else {
        return match s.controller_contact_ms {
            Some(at) => format!("controller: last contact {} (sync beat)", ago(now_ms, at)),
            None => "controller: last contact unknown (no sync role ever ran)".to_string(),
        };
    };
    let mut line = match node.last_contact_ms {
        Some(at) => format!("controller: answered {}", ago(now_ms, at)),
        None => format!(
            "controller: no answer since {}",
            ago(now_ms, node.started_at_ms)
        ),
    };
    if let Some(skew) = node.clock_skew_ms {
        let warn = if skew.unsigned_abs() > SKEW_WARN_MS {
            " WARN: check NTP"
        } else {
            ""
        };
        line.push_str(&format!("; clock {:+.1} s{warn}", skew as f64 / 1000.0));
    }
    for (condition, since) in &node.open {
        line.push_str(&format!("; {condition} for {}", age_text(now_ms - since)));
    }
    line
}

/// Above this the clock is called out, as the sync role's `clock_skew` event opens.
const SKEW_WARN_MS: u64 = 5_000;
