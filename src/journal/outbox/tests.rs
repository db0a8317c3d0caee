use super::*;
use crate::core::backoff::Backoff;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::core::job::JobState;
use crate::journal::{JobSource, NewJob, schema};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn temp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    (dir, path)
}

fn add_job(j: &Journal, id: &str) {
    j.create_job(&NewJob {
        id: id.to_string(),
        source: JobSource::Controller,
        controller_job_id: Some(format!("job_{id}")),
        recording_id: Some(format!("rec_{id}")),
        command_json: "{}".to_string(),
        backend: "synth".to_string(),
        device: "synth:sine".to_string(),
        spec: StreamSpec {
            format: SampleFormat::S16Le,
            rate: 48_000,
            channels: 1,
        },
        duration_frames: Some(48_000),
        dir: PathBuf::from(format!("/var/lib/edgerec/jobs/{id}")),
        state: JobState::Claimed,
        created_at_ms: 1,
    })
    .unwrap();
}

/// A journal with jobs `a` and `b`.
fn journal() -> (TempDir, PathBuf, Journal) {
    let (dir, path) = temp();
    let j = Journal::open(&path).unwrap();
    add_job(&j, "a");
    add_job(&j, "b");
    (dir, path, j)
}

fn added(e: Enqueued) -> i64 {
    match e {
        Enqueued::Added { id, .. } => id,
        other => panic!("expected a new row, got {other:?}"),
    }
}

fn health(job: Option<&str>, local_id: &str, now_ms: i64) -> NewOutboxItem {
    NewOutboxItem::health_event(job, local_id, format!(r#"{{"id":"{local_id}"}}"#), now_ms)
}

fn due(j: &Journal, now_ms: i64) -> Option<i64> {
    j.next_due(now_ms).unwrap().map(|r| r.id)
}

#[test]
fn rows_of_a_job_go_in_order_other_jobs_do_not_wait() {
    let (_d, _p, j) = journal();
    let a1 = added(j.enqueue(&health(Some("a"), "e1", 100)).unwrap());
    let a2 = added(
        j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 101))
            .unwrap(),
    );
    let a3 = added(
        j.enqueue(&NewOutboxItem::terminal_report("a", "{}".into(), 102))
            .unwrap(),
    );
    let b1 = added(j.enqueue(&health(Some("b"), "e2", 103)).unwrap());
    let node = added(j.enqueue(&health(None, "e3", 104)).unwrap());
    assert_eq!(j.pending_count().unwrap(), 5);

    // (step, now, row the sync role gets, what the controller does with it)
    #[derive(Debug)]
    enum Then {
        Deliver,
        FailUntil(i64),
    }
    let table = [
        ("oldest first", 200, Some(a1), Then::FailUntil(1_000)),
        (
            "a1 backs off: a2, a3 wait; b goes",
            200,
            Some(b1),
            Then::Deliver,
        ),
        ("node rows never wait", 200, Some(node), Then::Deliver),
        ("a1 not due yet", 999, None, Then::Deliver),
        ("a1 due again", 1_000, Some(a1), Then::Deliver),
        ("then a2", 1_000, Some(a2), Then::Deliver),
        ("then a3", 1_000, Some(a3), Then::Deliver),
        ("all delivered", 1_000_000, None, Then::Deliver),
    ];
    for (step, now, want, then) in table {
        let got = j.next_due(now).unwrap();
        assert_eq!(got.as_ref().map(|r| r.id), want, "{step}");
        let Some(row) = got else { continue };
        match then {
            Then::Deliver => assert!(j.mark_delivered(row.id, now).unwrap(), "{step}"),
            Then::FailUntil(t) => assert!(j.mark_failed(row.id, "503", t).unwrap(), "{step}"),
        }
    }
    assert_eq!(j.pending_count().unwrap(), 0);
    let kinds: Vec<_> = j
        .rows_for_job("a")
        .unwrap()
        .iter()
        .map(|r| (r.kind, r.attempts, r.delivered_at_ms.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            (OutboxKind::HealthEvent, 1, true),
            (OutboxKind::Upload, 0, true),
            (OutboxKind::TerminalReport, 0, true),
        ]
    );
}

#[test]
fn a_heartbeat_supersedes_the_pending_one_and_never_waits() {
    let (_d, _p, j) = journal();
    let hb = |body: &str, now| NewOutboxItem::job_heartbeat("a", body.into(), now);
    let first = j.enqueue(&hb("1", 10)).unwrap();
    assert!(matches!(first, Enqueued::Added { superseded: 0, .. }));
    let second = j.enqueue(&hb("2", 20)).unwrap();
    assert!(matches!(second, Enqueued::Added { superseded: 1, .. }));
    let third = added(j.enqueue(&hb("3", 30)).unwrap());
    let rows = j.rows_for_job("a").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].body.as_str()), (third, "3"));

    // An upload stuck in backoff holds back the job's later rows, not its heartbeat.
    let up = added(
        j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 31))
            .unwrap(),
    );
    let later = added(j.enqueue(&health(Some("a"), "e", 32)).unwrap());
    assert_eq!(due(&j, 40), Some(third));
    assert!(j.mark_delivered(third, 40).unwrap());
    assert_eq!(due(&j, 40), Some(up));
    assert!(j.mark_failed(up, "timeout", 10_000).unwrap());
    assert_eq!(due(&j, 50), None, "the health event waits for the upload");
    let fresh = added(j.enqueue(&hb("4", 50)).unwrap());
    assert_eq!(due(&j, 50), Some(fresh), "the heartbeat does not");
    // A heartbeat in backoff does not hold anything back either.
    assert!(j.mark_failed(fresh, "503", 60_000).unwrap());
    assert_eq!(due(&j, 10_000), Some(up));
    assert!(j.mark_delivered(up, 10_000).unwrap());
    assert_eq!(due(&j, 10_000), Some(later));

    // A delivered heartbeat is history: not superseded, not counted.
    assert!(j.mark_delivered(later, 10_000).unwrap());
    let rows = j.rows_for_job("a").unwrap();
    let heartbeats: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == OutboxKind::JobHeartbeat)
        .map(|r| (r.body.as_str(), r.is_pending()))
        .collect();
    assert_eq!(heartbeats, [("3", false), ("4", true)]);
}

#[test]
fn one_terminal_report_per_job_and_no_heartbeat_after_it() {
    let (_d, _p, j) = journal();
    added(
        j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 1))
            .unwrap(),
    );
    let report = NewOutboxItem::terminal_report("a", r#"{"outcome":"failed"}"#.into(), 2);
    let first = j.enqueue(&report).unwrap();
    assert!(
        matches!(first, Enqueued::Added { superseded: 1, .. }),
        "the pending heartbeat is moot: {first:?}"
    );
    let id = first.id().unwrap();
    // A second report, even a different one, is a no-op: the first one stands.
    let other = NewOutboxItem::terminal_report("a", r#"{"outcome":"cancelled"}"#.into(), 3);
    assert_eq!(j.enqueue(&other).unwrap(), Enqueued::AlreadyQueued { id });
    assert_eq!(
        j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 4))
            .unwrap(),
        Enqueued::NotNeeded
    );
    assert!(j.mark_delivered(id, 5).unwrap());
    assert_eq!(j.enqueue(&report).unwrap(), Enqueued::AlreadyQueued { id });
    let rows = j.rows_for_job("a").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].body, r#"{"outcome":"failed"}"#);
    // The other job is untouched.
    assert!(matches!(
        j.enqueue(&NewOutboxItem::terminal_report("b", "{}".into(), 6))
            .unwrap(),
        Enqueued::Added { .. }
    ));
}

#[test]
fn health_events_are_never_resent_after_a_201_even_across_a_reopen() {
    let (_d, path, j) = journal();
    let e1 = added(j.enqueue(&health(None, "ev-1", 1)).unwrap());
    let e2 = added(j.enqueue(&health(Some("a"), "ev-2", 2)).unwrap());
    assert_eq!(due(&j, 10), Some(e1));
    assert!(j.mark_delivered(e1, 10).unwrap());
    drop(j);

    // The box restarts.
    let j = Journal::open(&path).unwrap();
    assert_eq!(due(&j, 20), Some(e2));
    assert!(
        !j.mark_delivered(e1, 20).unwrap(),
        "a second 201 changes nothing"
    );
    assert_eq!(
        j.enqueue(&health(None, "ev-1", 21)).unwrap(),
        Enqueued::AlreadyQueued { id: e1 },
        "re-queueing the same event after a crash is a no-op"
    );
    assert!(j.mark_delivered(e2, 22).unwrap());
    assert!(!j.mark_failed(e2, "late timeout", 99).unwrap());
    drop(j);
    let j = Journal::open(&path).unwrap();
    assert_eq!(due(&j, i64::MAX), None);
    assert_eq!(j.pending_count().unwrap(), 0);
}

#[test]
fn next_due_respects_the_backoff_schedule() {
    let (_d, _p, j) = journal();
    let id = added(
        j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 0))
            .unwrap(),
    );
    let mut now = 0;
    // (jitter drawn, delay the backoff gives for this attempt)
    let table = [
        (1.0, 1_000),
        (0.0, 1_000),
        (0.5, 3_000),
        (1.0, 8_000),
        (1.0, 16_000),
        (1.0, 32_000),
        (1.0, 60_000),
        (0.0, 30_000),
    ];
    for (attempt, (jitter, delay_ms)) in table.into_iter().enumerate() {
        let row = j.next_due(now).unwrap().expect("due");
        assert_eq!((row.id, row.attempts as usize), (id, attempt));
        // The sync role rebuilds the backoff from the journaled attempt count.
        let delay = Backoff::OUTBOX_DELIVERY
            .with_attempt(row.attempts)
            .next_delay(jitter);
        assert_eq!(delay.as_millis(), delay_ms, "attempt {attempt}");
        let next = now + delay_ms as i64;
        assert!(j.mark_failed(id, "connect timeout", next).unwrap());
        assert_eq!(due(&j, next - 1), None, "attempt {attempt}: early");
        now = next;
    }
    let row = j.next_due(now).unwrap().unwrap();
    assert_eq!(row.attempts, 8);
    assert_eq!(row.last_error.as_deref(), Some("connect timeout"));
    // An acknowledged chunk starts the count again; the row stays due.
    assert!(j.reset_attempts(id).unwrap());
    assert_eq!(j.next_due(now).unwrap().unwrap().attempts, 0);
    assert!(j.mark_delivered(id, now).unwrap());
    assert!(
        !j.reset_attempts(id).unwrap(),
        "a delivered row is left alone"
    );
    assert_eq!(due(&j, i64::MAX), None);
}

#[test]
fn abandoned_rows_are_kept_and_stop_holding_back_the_job() {
    let (_d, _p, j) = journal();
    let bad = added(j.enqueue(&health(Some("a"), "bad", 1)).unwrap());
    let up = added(
        j.enqueue(&NewOutboxItem::upload("a", 0, "{}".into(), 2))
            .unwrap(),
    );
    let report = added(
        j.enqueue(&NewOutboxItem::terminal_report("a", "{}".into(), 3))
            .unwrap(),
    );
    assert_eq!(due(&j, 10), Some(bad));
    assert!(j.mark_abandoned(bad, "400: unknown key", 10).unwrap());
    assert!(!j.mark_abandoned(bad, "again", 11).unwrap());
    assert_eq!(due(&j, 10), Some(up));
    // The job machine's DropUpload: the controller ended the job.
    assert_eq!(
        j.abandon_pending("a", OutboxKind::Upload, "controller: failed", 12)
            .unwrap(),
        1
    );
    assert_eq!(due(&j, 12), Some(report));
    assert_eq!(j.pending_count().unwrap(), 1);
    let rows = j.rows_for_job("a").unwrap();
    assert_eq!(rows.len(), 3, "nothing is deleted");
    assert_eq!(rows[0].last_error.as_deref(), Some("400: unknown key"));
    assert_eq!(rows[0].abandoned_at_ms, Some(10));
    assert!(!rows[1].is_pending());
}

#[test]
fn rows_for_an_unknown_job_are_refused() {
    let (_d, _p, j) = journal();
    let err = j
        .enqueue(&NewOutboxItem::terminal_report("nope", "{}".into(), 1))
        .unwrap_err();
    assert!(
        matches!(err, JournalError::NoSuchJob(ref id) if id == "nope"),
        "{err}"
    );
    let err = j
        .record_upload("nope", 0, Path::new("r.wav"), 1, "ab")
        .unwrap_err();
    assert!(matches!(err, JournalError::NoSuchJob(_)), "{err}");
    assert_eq!(j.pending_count().unwrap(), 0);
}

#[test]
fn upload_chunks_and_their_acknowledgements() {
    let (_d, _p, j) = journal();
    let sha = "ab".repeat(32);
    j.record_upload("a", 1, Path::new("recording.1.wav"), 10, &sha)
        .unwrap();
    j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &sha)
        .unwrap();
    assert!(j.acknowledge_upload("a", 0, 100).unwrap());
    assert!(j.acknowledge_upload("a", 0, 200).unwrap());
    assert!(!j.acknowledge_upload("a", 7, 200).unwrap());
    let rows = j.uploads("a").unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.chunk, r.size, r.acknowledged_at_ms))
            .collect::<Vec<_>>(),
        [(0, 20, Some(100)), (1, 10, None)],
        "by chunk; the first acknowledgement's time is kept"
    );
    assert_eq!(rows[0].path, Path::new("recording.0.wav"));

    // A re-render: an identical chunk stays acknowledged, a changed one does not.
    j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &sha)
        .unwrap();
    assert_eq!(j.uploads("a").unwrap()[0].acknowledged_at_ms, Some(100));
    j.record_upload("a", 0, Path::new("recording.0.wav"), 20, &"cd".repeat(32))
        .unwrap();
    assert_eq!(j.uploads("a").unwrap()[0].acknowledged_at_ms, None);
    assert!(j.uploads("b").unwrap().is_empty());

    // (controller's checksum, matches ours?)
    let table = [
        (format!("sha256:{sha}"), true),
        (format!("sha256:{}", sha.to_uppercase()), true),
        (sha.clone(), true),
        (format!("sha256:{}", "cd".repeat(32)), false),
        ("sha256:".to_string(), false),
        (String::new(), false),
    ];
    let row = &rows[0];
    for (checksum, want) in table {
        assert_eq!(row.matches_checksum(&checksum), want, "{checksum:?}");
    }
}

#[test]
fn a_v1_journal_migrates_with_its_outbox() {
    let (_d, path) = temp();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO outbox (kind, body, idempotency_key, next_attempt_ms, \
             created_at_ms) VALUES ('health_event', '{}', 'health_event:old', 5, 5)",
            [],
        )
        .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), schema::CURRENT);
    let row = j.next_due(5).unwrap().unwrap();
    assert_eq!(
        (row.kind, row.abandoned_at_ms, row.is_pending()),
        (OutboxKind::HealthEvent, None, true)
    );
}

#[test]
fn the_schema_allows_one_pending_heartbeat_per_job() {
    let (_d, _p, j) = journal();
    added(
        j.enqueue(&NewOutboxItem::job_heartbeat("a", "{}".into(), 1))
            .unwrap(),
    );
    // Bypassing enqueue(): the index itself refuses a second pending heartbeat.
    let err = j.conn.execute(
        "INSERT INTO outbox (job_id, kind, body, idempotency_key, next_attempt_ms, \
         created_at_ms) VALUES ('a', 'job_heartbeat', '{}', 'x', 1, 1)",
        [],
    );
    assert!(err.is_err());
}

/// The capture role queues while the sync role delivers, on two connections to one
/// file: every health event is delivered exactly once, in order, none is lost.
#[test]
fn two_roles_share_the_outbox() {
    const EVENTS: usize = 150;
    let (dir, path, j) = journal();
    drop(j);
    let capture_path = path.clone();
    let capture = std::thread::spawn(move || queue_as_capture(&capture_path, EVENTS));
    let sync = std::thread::spawn(move || deliver_as_sync(&path));
    capture.join().unwrap();
    let delivered = sync.join().unwrap();
    let job_events: Vec<&str> = delivered
        .iter()
        .filter(|(k, key)| *k == OutboxKind::HealthEvent && key.contains("ev-"))
        .map(|(_, key)| key.as_str())
        .collect();
    let want: Vec<String> = (0..EVENTS)
        .map(|i| format!("health_event:ev-{i:04}"))
        .collect();
    assert_eq!(job_events, want, "each once, in order");
    let node_events = delivered
        .iter()
        .filter(|(_, key)| key.contains("node-"))
        .count();
    assert_eq!(node_events, EVENTS.div_ceil(10));
    assert_eq!(
        delivered.last().map(|(k, _)| *k),
        Some(OutboxKind::TerminalReport),
        "the report comes after the job's events"
    );
    let j = Journal::open(&dir.path().join("journal.db")).unwrap();
    assert_eq!(j.pending_count().unwrap(), 0);
    let heartbeats = j
        .rows_for_job("a")
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == OutboxKind::JobHeartbeat)
        .count();
    assert!(
        heartbeats <= EVENTS,
        "superseded heartbeats are gone: {heartbeats}"
    );
}

/// The capture role's side: `events` job health events with a heartbeat each, a node
/// event every tenth, then the job's terminal report.
fn queue_as_capture(path: &Path, events: usize) {
    let j = Journal::open(path).unwrap();
    for i in 0..events {
        let now = i as i64;
        j.enqueue(&health(Some("a"), &format!("ev-{i:04}"), now))
            .unwrap();
        j.enqueue(&NewOutboxItem::job_heartbeat("a", format!("{i}"), now))
            .unwrap();
        if i % 10 == 0 {
            j.enqueue(&health(None, &format!("node-{i:04}"), now))
                .unwrap();
        }
    }
    j.enqueue(&NewOutboxItem::terminal_report(
        "a",
        "{}".into(),
        events as i64,
    ))
    .unwrap();
}

/// The sync role's side: delivers until the terminal report went and nothing is left,
/// failing every third row's first attempt; returns what it delivered, in order.
fn deliver_as_sync(path: &Path) -> Vec<(OutboxKind, String)> {
    let j = Journal::open(path).unwrap();
    let mut delivered = Vec::new();
    let mut idle_after_report = 0;
    loop {
        match j.next_due(i64::MAX).unwrap() {
            Some(row) => {
                // Every third attempt fails once, to exercise retries.
                if row.attempts == 0 && row.id % 3 == 0 {
                    let marked = j.mark_failed(row.id, "503", 0).unwrap();
                    assert!(marked || row.kind == OutboxKind::JobHeartbeat, "{row:?}");
                    continue;
                }
                // A heartbeat may be superseded while it is being sent.
                let marked = j.mark_delivered(row.id, 1).unwrap();
                assert!(marked || row.kind == OutboxKind::JobHeartbeat, "{row:?}");
                delivered.push((row.kind, row.idempotency_key));
            }
            None => {
                let done = delivered
                    .iter()
                    .any(|(k, _)| *k == OutboxKind::TerminalReport);
                if done {
                    idle_after_report += 1;
                    if idle_after_report > 3 {
                        return delivered;
                    }
                }
                std::thread::yield_now();
            }
        }
    }
}
