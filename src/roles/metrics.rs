//! The metrics textfile for fleet monitoring: Prometheus' text format, in the file
//! node_exporter's textfile collector reads, kept current by the sync role (every 15 s).
//! Written beside itself and renamed, as the collector's convention asks, so a scrape
//! never reads half a file; never fsynced (it is current state, rebuilt at once after a
//! reboot).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::core::node_health::Condition;
use crate::journal::Totals;
use crate::roles::sync::node_health::NodeFacts;

/// How often the sync role rewrites the file.
pub const METRICS_EVERY: Duration = Duration::from_secs(15);

/// The file's text for these totals and the node's facts, at `now_ms`.
pub fn render(totals: &Totals, facts: Option<&NodeFacts>, now_ms: i64) -> String {
    let mut m = Metrics::default();
    m.family("edgerec_jobs", "gauge", "Jobs in the journal, by state.");
    for (state, n) in &totals.jobs_by_state {
        m.sample("edgerec_jobs", &[("state", state)], *n as f64);
    }
    m.family(
        "edgerec_frames_captured_total",
        "counter",
        "Audio frames held in segments.",
    );
    m.sample(
        "edgerec_frames_captured_total",
        &[],
        totals.segment_frames as f64,
    );
    m.family(
        "edgerec_timeline_events_total",
        "counter",
        "Timeline events (overrun, device_lost, disk_pause, ...), by kind.",
    );
    for (kind, n, _) in &totals.events_by_kind {
        m.sample(
            "edgerec_timeline_events_total",
            &[("kind", kind)],
            *n as f64,
        );
    }
    m.family(
        "edgerec_gap_frames_total",
        "counter",
        "Frames of audio missing from recordings, by the event that explains them.",
    );
    for (kind, _, gap) in totals.events_by_kind.iter().filter(|(_, _, gap)| *gap > 0) {
        m.sample("edgerec_gap_frames_total", &[("kind", kind)], *gap as f64);
    }
    m.family(
        "edgerec_outbox_pending",
        "gauge",
        "Outbox rows not yet delivered.",
    );
    m.sample("edgerec_outbox_pending", &[], totals.outbox_pending as f64);
    m.family(
        "edgerec_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest undelivered outbox row (0 when none).",
    );
    let oldest = totals.outbox_oldest_ms.map_or(0, |t| (now_ms - t).max(0));
    m.sample("edgerec_outbox_oldest_age_seconds", &[], seconds(oldest));
    m.family(
        "edgerec_upload_bytes_total",
        "counter",
        "Bytes of recordings the controller acknowledged.",
    );
    m.sample(
        "edgerec_upload_bytes_total",
        &[],
        totals.uploaded_bytes as f64,
    );
    if let Some(f) = facts {
        node_facts(&mut m, f);
    }
    m.family(
        "edgerec_metrics_generated_timestamp_seconds",
        "gauge",
        "When this file was written.",
    );
    m.sample(
        "edgerec_metrics_generated_timestamp_seconds",
        &[],
        seconds(now_ms),
    );
    m.text
}

fn node_facts(m: &mut Metrics, f: &NodeFacts) {
    if let Some(at) = f.last_contact_ms {
        m.family(
            "edgerec_controller_last_contact_timestamp_seconds",
            "gauge",
            "When the controller last answered the node heartbeat.",
        );
        m.sample(
            "edgerec_controller_last_contact_timestamp_seconds",
            &[],
            seconds(at),
        );
    }
    if let Some(skew) = f.clock_skew_ms {
        m.family(
            "edgerec_clock_skew_seconds",
            "gauge",
            "The controller's clock minus this box's.",
        );
        m.sample("edgerec_clock_skew_seconds", &[], skew as f64 / 1000.0);
    }
    if let Some(free) = f.spool_free_bytes {
        m.family(
            "edgerec_spool_free_bytes",
            "gauge",
            "Free space of the spool.",
        );
        m.sample("edgerec_spool_free_bytes", &[], free as f64);
    }
    m.family(
        "edgerec_node_condition",
        "gauge",
        "1 while a node condition (clock_skew, disk_pressure, ...) is open.",
    );
    for c in Condition::ALL {
        let open = f.open.iter().any(|(name, _)| name == c.name());
        m.sample(
            "edgerec_node_condition",
            &[("condition", c.name())],
            f64::from(u8::from(open)),
        );
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Text in Prometheus' exposition format.
#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.text, "{name}{labels} {value}");
    }
}

/// Label values escape backslash, quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces `path` with `text`: a temp file in the same directory, then a rename.
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_its_family_and_labels_are_escaped() {
        let totals = Totals {
            jobs_by_state: vec![("capturing".into(), 1), ("delivered".into(), 4)],
            segment_frames: 4_800_000,
            events_by_kind: vec![("device_lost".into(), 3, 0), ("overrun".into(), 2, 960)],
            outbox_pending: 2,
            outbox_oldest_ms: Some(40_000),
            uploaded_bytes: 123_456,
        };
        let facts = NodeFacts {
            last_contact_ms: Some(95_000),
            clock_skew_ms: Some(-6_500),
            open: vec![("clock_skew".into(), 50_000)],
            ..NodeFacts::default()
        };
        let text = render(&totals, Some(&facts), 100_000);
        for line in [
            "edgerec_jobs{state=\"delivered\"} 4",
            "edgerec_timeline_events_total{kind=\"device_lost\"} 3",
            "edgerec_gap_frames_total{kind=\"overrun\"} 960",
            "edgerec_outbox_oldest_age_seconds 60",
            "edgerec_clock_skew_seconds -6.5",
            "edgerec_node_condition{condition=\"clock_skew\"} 1",
            "edgerec_node_condition{condition=\"disk_pressure\"} 0",
            "edgerec_controller_last_contact_timestamp_seconds 95",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("edgerec_gap_frames_total{kind=\"device_lost\"}"));
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
