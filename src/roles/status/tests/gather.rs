//! `gather_from` on a real journal.

use super::*;

fn new_job(dir: &Path, id: &str, source: JobSource, created: i64) -> NewJob {
    NewJob {
        created_at_ms: created,
        ..NewJob::for_test(id, source, dir, JobState::Capturing)
    }
}

/// A busy box's journal: a running local job with a device loss, a controller job the
/// controller failed after capture, a delivered one, a failing upload and two beats.
fn fill_busy_journal(dir: &Path) {
    let mut j = Journal::open(&journal_path(dir)).unwrap();
    // A running local job with a device loss.
    j.create_job(&new_job(dir, "run", JobSource::Local, NOW - 50_000))
        .unwrap();
    j.set_job_progress("run", 96_000, NOW - 1_000).unwrap();
    for (kind, at) in [
        (EventKind::Started, NOW - 40_000),
        (EventKind::DeviceLost, NOW - 30_000),
        (EventKind::DeviceRestored, NOW - 20_000),
        (EventKind::Stall, NOW - 10_000),
        (EventKind::DiskPause, NOW - 5_000),
    ] {
        j.add_event("run", &TimelineEvent::new(kind, 0, at))
            .unwrap();
    }
    // A controller job the controller failed (lease expired) after capture.
    j.create_job(&new_job(dir, "ctl", JobSource::Controller, NOW - 90_000))
        .unwrap();
    j.set_job_progress("ctl", 48_000, NOW - 80_000).unwrap();
    let mut m = MachineState::at(JobState::Failed, JobKind::Controller);
    m.verdict = Some(Verdict::Failed {
        reason: reason::LEASE_EXPIRED.into(),
    });
    m.recording = Some(RenderedFile {
        path: dir.join("ctl").join(RECORDING_FILE),
        sha256: "00".into(),
        bytes: 44,
    });
    j.atomically(|j| {
        j.set_job_state("ctl", JobState::Failed, Some("lease_expired"), NOW - 70_000)?;
        j.save_machine("ctl", &m, NOW - 70_000)
    })
    .unwrap();
    // A controller job delivered: not kept.
    j.create_job(&new_job(dir, "ok", JobSource::Controller, NOW - 95_000))
        .unwrap();
    j.set_job_progress("ok", 48_000, NOW - 80_000).unwrap();
    j.set_job_state("ok", JobState::Delivered, Some("duration"), NOW - 60_000)
        .unwrap();
    // Outbox: a node-level event, and a job's upload that keeps failing.
    j.enqueue(&NewOutboxItem::health_event(
        None,
        "n1",
        "{}".into(),
        NOW - 600_000,
    ))
    .unwrap();
    let up = j
        .enqueue(&NewOutboxItem::upload("run", 0, "{}".into(), NOW - 300_000))
        .unwrap();
    j.mark_failed(up.id().unwrap(), "503 from controller", NOW + 5_000)
        .unwrap();
    j.write_beat("capture", 4242, "boot-b", NOW - 60_000, NOW - 1_000, "")
        .unwrap();
    j.write_beat("sync", 4343, "boot-a", NOW - 99_000, NOW - 90_000, "")
        .unwrap();
}

#[test]
fn gathers_roles_jobs_kept_recordings_events_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    fill_busy_journal(dir.path());
    let journal = Journal::open_read_only(&path).unwrap();
    let host = Host {
        boot_id: "boot-b".into(),
        pid_running: &|_| Some(true),
    };
    let s = gather_from(&journal, dir.path(), &host, NOW).unwrap();

    assert_eq!(s.roles[0].liveness, Liveness::Alive);
    assert_eq!(s.roles[1].liveness, Liveness::Stale);
    assert_eq!(s.roles[1].same_boot, Some(false));
    assert_eq!(s.controller_contact_ms, Some(NOW - 90_000));

    assert_eq!(s.running.len(), 1);
    assert_eq!(s.running[0].id, "run");
    assert_eq!(s.running[0].captured_frames, 96_000);
    assert_eq!(s.ended_total, 2);
    assert_eq!(
        s.recent_ended
            .iter()
            .map(|j| j.id.as_str())
            .collect::<Vec<_>>(),
        ["ok", "ctl"],
        "most recently ended first"
    );
    assert_eq!(s.recent_ended[1].verdict.as_deref(), Some("lease_expired"));

    assert_eq!(
        s.kept_locally,
        [KeptRecording {
            job_id: "ctl".into(),
            path: dir.path().join("ctl").join(RECORDING_FILE),
            reason: "lease_expired".into(),
        }]
    );
    assert_eq!(
        s.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [
            EventKind::DeviceRestored,
            EventKind::Stall,
            EventKind::DiskPause
        ],
        "the latest 3 watched events, oldest first"
    );
    assert_eq!(
        s.outbox,
        OutboxStatus {
            pending: 2,
            oldest_pending_ms: Some(NOW - 300_000),
            last_error: Some("upload: 503 from controller".into()),
        },
        "node-level rows are counted; the oldest is of the job rows"
    );

    let out = render(&s, NOW);
    assert_screen(&out);
    assert!(out.contains("KEPT LOCALLY: "), "{out}");
    assert!(out.contains("(lease_expired)"), "{out}");
}

#[test]
fn a_stale_beat_and_a_dead_process_are_not_alive() {
    let gone = |_| Some(false);
    let host = Host {
        boot_id: "b".into(),
        pid_running: &gone,
    };
    let beat = |last| crate::journal::BeatRow {
        role: "capture".into(),
        pid: 1,
        boot_id: "b".into(),
        started_at_ms: 0,
        last_beat_ms: last,
        progress: String::new(),
    };
    let r = role_status("capture", Some(beat(NOW)), &host, NOW, 10_000);
    assert_eq!(
        (r.liveness, r.note.as_deref()),
        (Liveness::Stale, Some("process gone"))
    );
    let host = Host {
        boot_id: String::new(),
        pid_running: &|_| None,
    };
    let r = role_status("capture", Some(beat(NOW - 11_000)), &host, NOW, 10_000);
    assert_eq!(r.liveness, Liveness::Stale);
    assert_eq!(r.note.as_deref(), Some("no beat for 11s"));
    let r = role_status("capture", Some(beat(NOW - 9_000)), &host, NOW, 10_000);
    assert_eq!(r.liveness, Liveness::Alive);
    let r = role_status("capture", None, &host, NOW, 10_000);
    assert_eq!(r.liveness, Liveness::Never);
}

/// An idle capture role beats every 10 s and says so: three of its beats may pass.
#[test]
fn an_idle_capture_beat_is_judged_by_the_cadence_it_says() {
    let idle = r#"{"jobs":[],"every_ms":10000}"#;
    let busy = r#"{"jobs":["j1"],"every_ms":2000}"#;
    let table = [
        (idle, 30_000),
        (busy, CAPTURE_STALE_AFTER_MS),
        ("", CAPTURE_STALE_AFTER_MS), // a beat from an older build
        (r#"{"every_ms":-5}"#, CAPTURE_STALE_AFTER_MS),
    ];
    for (progress, want) in table {
        assert_eq!(capture_stale_after_ms(progress), want, "{progress}");
    }
    // The sync role's own bound: the busy one, or the cadence and a 3 s slack.
    use crate::roles::capture::beat_max_age_ms;
    assert_eq!(beat_max_age_ms(idle, 5_000), 13_000);
    assert_eq!(beat_max_age_ms(busy, 5_000), 5_000);
    assert_eq!(beat_max_age_ms("", 5_000), 5_000);
}
