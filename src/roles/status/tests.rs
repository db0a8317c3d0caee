//! The screen and its parts, from a sample [`Status`]; `gather`: what a real journal gives.

use super::*;
use crate::core::job_machine::{JobKind, RenderedFile};
use crate::core::timeline::TimelineEvent;
use crate::journal::{NewJob, NewOutboxItem};

const NOW: i64 = 1_700_000_000_000;

fn job(id: &str, state: JobState) -> JobLine {
    JobLine {
        id: id.to_string(),
        source: "controller".into(),
        state,
        device: "hw:CARD=USB,DEV=0".into(),
        rate: 48_000,
        captured_frames: 48_000 * 12,
        duration_frames: Some(48_000 * 3600),
        end_cause: state.is_terminal().then(|| "capture_ended".to_string()),
        verdict: None,
        updated_at_ms: NOW - 5_000,
        ended_at_ms: state.is_terminal().then_some(NOW - 180_000),
    }
}

fn sample() -> Status {
    Status {
        state_dir: "/var/lib/edgerec".into(),
        journal: "/var/lib/edgerec/edgerec.db".into(),
        schema_version: 3,
        taken_at_ms: NOW,
        roles: vec![
            RoleStatus {
                role: "capture".into(),
                liveness: Liveness::Alive,
                note: None,
                pid: Some(1234),
                started_at_ms: Some(NOW - 60_000),
                last_beat_ms: Some(NOW - 2_000),
                same_boot: Some(true),
                progress: String::new(),
            },
            RoleStatus {
                role: "sync".into(),
                liveness: Liveness::Stale,
                note: Some("beat from before a reboot".into()),
                pid: Some(99),
                started_at_ms: Some(NOW - 7_300_000),
                last_beat_ms: Some(NOW - 7_200_000),
                same_boot: Some(false),
                progress: String::new(),
            },
        ],
        running: vec![job("job_20250101T120000Z_1a2b312345", JobState::Capturing)],
        recent_ended: vec![job(
            "3f9c2a1b-0000-4000-8000-9f0e1d2c3b4a",
            JobState::Failed,
        )],
        ended_total: 7,
        kept_locally: vec![KeptRecording {
            job_id: "3f9c2a1b-0000-4000-8000-9f0e1d2c3b4a".into(),
            path: "/var/lib/edgerec/3f9c2a1b/recording.wav".into(),
            reason: "lease_expired".into(),
        }],
        pruned: Vec::new(),
        levels: vec![JobLevels {
            job_id: "20250101T000000Z_12345".into(),
            channels: vec![LevelLine {
                channel: 1,
                rms_db10: -90,
                peak_db10: -60,
                clipping: true,
            }],
        }],
        events: vec![EventLine {
            job_id: "job_20250101T120000Z_1a2b312345".into(),
            kind: EventKind::DeviceLost,
            at_ms: NOW - 65_000,
            frame: 48_000 * 5,
            rate: 48_000,
            detail: "hw:CARD=USB,DEV=0 gone".into(),
        }],
        disk: Some(DiskStatus {
            free_bytes: 12 * 1024 * 1024 * 1024,
            total_bytes: 48 * 1024 * 1024 * 1024,
        }),
        disk_error: None,
        outbox: OutboxStatus {
            pending: 3,
            oldest_pending_ms: Some(NOW - 300_000),
            last_error: Some("upload: controller unreachable".into()),
        },
        controller_contact_ms: Some(NOW - 7_200_000),
        node: None,
    }
}

fn assert_screen(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() <= MAX_LINES, "{} lines:\n{out}", lines.len());
    for l in &lines {
        assert!(l.len() <= WIDTH, "too wide ({}): {l:?}", l.len());
        assert!(
            l.is_ascii() && !l.contains('\x1b'),
            "not plain ASCII: {l:?}"
        );
    }
}

#[test]
fn renders_every_section_on_one_screen() {
    let out = render(&sample(), NOW);
    assert_screen(&out);
    let expected = [
        "edgerec status: /var/lib/edgerec (journal v3)",
        "capture: alive, pid 1234, last beat 2s ago",
        "sync:    stale (beat from before a reboot), pid 99, last beat 2h ago",
        "jobs:    1 running, 7 ended",
        "  20250101..12345 capturing  12.0/3600.0 s   hw:CARD=USB,DEV=0",
        "  levels of 20250101..12345:",
        "    ch 1   [#########################.....]   -9.0 rms   -6.0 peak CLIP",
        "  3f9c2a1b..c3b4a failed     12.0 s          3m ago  capture_ended",
        "KEPT LOCALLY: /var/lib/edgerec/3f9c2a1b/recording.wav (lease_expired)",
        "events:",
        "  20250101..12345 device_lost     at 5.0 s, 65s ago  hw:CARD=USB,DEV=0 gone",
        "disk:    12.0 GiB free of 48.0 GiB (25% free)",
        "outbox:  3 pending, oldest 5m ago; last error: upload: controller unreachable",
        "controller: last contact 2h ago (sync beat)",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "\n{out}");
}

#[test]
fn a_crowded_box_still_fits_one_screen() {
    let mut s = sample();
    s.running = (0..9)
        .map(|i| {
            job(
                &format!("job_{i}_running_with_a_long_id"),
                JobState::Capturing,
            )
        })
        .collect();
    s.running[0].device = "sine:440,dropout=8s+1500ms,and a very long device name".into();
    s.running[0].verdict = Some("lease_expired".into());
    s.recent_ended = (0..3)
        .map(|i| job(&format!("e{i}"), JobState::Delivered))
        .collect();
    s.kept_locally = (0..6)
        .map(|i| KeptRecording {
            job_id: format!("k{i}"),
            path: PathBuf::from(format!(
                "/var/lib/edgerec/a/very/deep/directory/tree/for/job/number/{i}/recording.wav"
            )),
            reason: "upload_refused".into(),
        })
        .collect();
    s.events = (0..3)
        .map(|i| EventLine {
            job_id: format!("j{i}"),
            kind: EventKind::Stall,
            at_ms: NOW - i * 1000,
            frame: 0,
            rate: 48_000,
            detail: "\u{00e9}".repeat(100),
        })
        .collect();
    s.outbox.last_error = Some("x".repeat(200));
    let out = render(&s, NOW);
    assert_screen(&out);
    assert!(out.contains("  +5 more running"), "{out}");
    assert!(out.contains("[ended: lease_expired] sine:440"), "{out}");
    assert!(out.contains("KEPT LOCALLY: +3 more"), "{out}");
    assert!(
        out.contains("KEPT LOCALLY: ..."),
        "the path is elided, not cut: {out}"
    );
    assert!(
        out.contains("/4/recording.wav (upload_refused)")
            || out.contains("/0/recording.wav (upload_refused)"),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap().starts_with("controller:"),
        "{out}"
    );
}

#[test]
fn nothing_ever_ran_says_never_and_unknown() {
    let mut s = sample();
    for r in &mut s.roles {
        *r = RoleStatus {
            role: r.role.clone(),
            liveness: Liveness::Never,
            note: None,
            pid: None,
            started_at_ms: None,
            last_beat_ms: None,
            same_boot: None,
            progress: String::new(),
        };
    }
    s.running.clear();
    s.events.clear();
    s.kept_locally.clear();
    s.controller_contact_ms = None;
    s.outbox = OutboxStatus::default();
    let out = render(&s, NOW);
    assert_screen(&out);
    assert!(out.contains("capture: never\n"), "{out}");
    assert!(out.contains("sync:    never\n"), "{out}");
    assert!(out.contains("events:  none on running jobs\n"), "{out}");
    assert!(out.contains("outbox:  0 pending\n"), "{out}");
    assert!(
        out.contains("controller: last contact unknown (no sync role ever ran)"),
        "{out}"
    );
    assert!(!out.contains("KEPT"), "{out}");
}

#[test]
fn the_nodes_facts_say_contact_clock_skew_and_open_conditions() {
    use crate::roles::sync::node_health::NodeFacts;
    let mut s = sample();
    // (facts, what the controller line must say)
    let cases = [
        (
            NodeFacts {
                last_contact_ms: Some(NOW - 4_000),
                clock_skew_ms: Some(-12_400),
                open: vec![("clock_skew".into(), NOW - 300_000)],
                ..NodeFacts::default()
            },
            "controller: answered 4s ago; clock -12.4 s WARN: check NTP; clock_skew for 5m",
        ),
        (
            NodeFacts {
                last_contact_ms: Some(NOW - 2_000),
                clock_skew_ms: Some(800),
                ..NodeFacts::default()
            },
            "controller: answered 2s ago; clock +0.8 s\n",
        ),
        (
            NodeFacts {
                started_at_ms: NOW - 60_000,
                open: vec![("sync_failed".into(), NOW - 45_000)],
                ..NodeFacts::default()
            },
            "controller: no answer since 60s ago; sync_failed for 45s",
        ),
    ];
    for (facts, want) in cases {
        s.node = Some(facts);
        let out = render(&s, NOW);
        assert_screen(&out);
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
}

#[test]
fn ages_and_ids_are_short() {
    assert_eq!(age_text(-5), "0s");
    assert_eq!(age_text(119_999), "119s");
    assert_eq!(age_text(120_000), "2m");
    assert_eq!(age_text(7_200_000), "2h");
    assert_eq!(age_text(172_800_000), "2d");
    assert_eq!(short_id("job_short"), "short");
    assert_eq!(
        short_id("job_20250101T120000Z_1a2b312345"),
        "20250101..12345"
    );
}

// gather_from on a real journal.
mod gather;
