//! Chunks uploaded while capture goes on.

use super::*;

// ── Chunks uploaded while capture goes on ───────────────────────────────────────────

/// Feeds `events` in order from `m`; the end state and every action issued.
fn walk(m: &MachineState, events: &[Event]) -> (MachineState, Vec<Action>) {
    let mut m = m.clone();
    let mut all = Vec::new();
    for e in events {
        let (next, actions) = transition(&m, e).unwrap_or_else(|e| panic!("{e}"));
        m = next;
        all.extend(actions);
    }
    (m, all)
}

fn reports_in(actions: &[Action]) -> Vec<&Report> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::EnqueueReport(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn chunks_go_up_while_capturing_unless_the_controller_decided() {
    let chunk = |index| E::ChunkRendered { index };
    let up = |index| Action::UploadChunk { index };
    let lost = reached(JobKind::Controller, Capturing, false, true);
    let stopped = reached(JobKind::Controller, Stopping, true, false);
    // (state, event, expected state, expected actions)
    let table = [
        (
            reached(JobKind::Controller, Capturing, false, false),
            chunk(0),
            Capturing,
            vec![up(0)],
        ),
        (stopped.clone(), chunk(4), Stopping, vec![up(4)]),
        (
            reached(JobKind::Controller, Rendering, false, false),
            chunk(2),
            Rendering,
            vec![up(2)],
        ),
        // The lease is lost: the controller would refuse it; the job's end decides.
        (lost.clone(), chunk(1), Capturing, vec![]),
        // At the end the job's own upload sends what is left.
        (
            reached(JobKind::Controller, Cached, false, false),
            chunk(3),
            Cached,
            vec![],
        ),
        (
            reached(JobKind::Controller, Uploading, false, false),
            chunk(3),
            Uploading,
            vec![],
        ),
        // A new verdict drops the chunks still queued; a repeated one changes nothing.
        (
            reached(JobKind::Controller, Capturing, false, false),
            E::LeaseLost,
            Capturing,
            vec![Action::DropUpload],
        ),
        (lost, E::LeaseLost, Capturing, vec![]),
        (
            reached(JobKind::Controller, Capturing, false, false),
            E::CancelledByController {
                reason: "operator".into(),
            },
            Stopping,
            vec![Action::DropUpload, Action::StopCapture],
        ),
        (
            stopped,
            E::FailedOnController { reason: "x".into() },
            Stopping,
            vec![Action::DropUpload],
        ),
    ];
    for (m, event, state, actions) in table {
        let (next, got) = transition(&m, &event).unwrap();
        assert_eq!(
            (next.state, &got),
            (state, &actions),
            "{} {event:?}",
            m.state
        );
    }
    // A local job has no controller to send chunks to.
    let local = MachineState::at(Capturing, JobKind::Local);
    assert!(transition(&local, &chunk(0)).is_err());
}

#[test]
fn a_cancel_or_a_lost_lease_during_a_chunk_put_ends_the_job_once() {
    let capturing = reached(JobKind::Controller, Capturing, false, false);
    let cancel = E::CancelledByController {
        reason: "operator".into(),
    };
    let after_capture = [
        E::Captured { has_audio: true },
        E::RenderStarted,
        E::Rendered(file()),
    ];
    // (verdict while chunk 1's PUT is out, its answer (a 409 whose GET says why), end)
    let cases = [
        (cancel.clone(), cancel.clone(), Cancelled),
        (E::LeaseLost, E::LeaseLost, Failed),
        (
            E::LeaseLost,
            E::FailedOnController {
                reason: reason::LEASE_EXPIRED.into(),
            },
            Failed,
        ),
    ];
    for (verdict, answer, end) in cases {
        let mut events = vec![E::ChunkRendered { index: 0 }, E::ChunkRendered { index: 1 }];
        events.extend([verdict.clone(), E::ChunkRendered { index: 2 }, answer]);
        if verdict == E::LeaseLost {
            events.push(E::DurationReached); // a lost lease never stops capture
        }
        events.extend(after_capture.iter().cloned());
        let (m, actions) = walk(&capturing, &events);
        let label = format!("{verdict:?}");
        assert_eq!(m.state, end, "{label}");
        assert_eq!(
            reports_in(&actions),
            [&Report::ControllerDecided],
            "{label}"
        );
        let chunks: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, Action::UploadChunk { .. }))
            .collect();
        assert_eq!(
            chunks,
            [
                &Action::UploadChunk { index: 0 },
                &Action::UploadChunk { index: 1 }
            ],
            "{label}: nothing goes up after the verdict"
        );
        assert_eq!(
            actions.iter().filter(|a| **a == Action::DropUpload).count(),
            1,
            "{label}"
        );
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Upload { .. })),
            "{label}"
        );
        let flags = actions
            .iter()
            .filter(|a| matches!(a, Action::FlagLocalRecording { .. }))
            .count();
        assert_eq!(flags, 1, "{label}: the audio is kept, flagged once");
    }
}

#[test]
fn chunk_mismatches_while_capturing_count_towards_failing_the_job() {
    let capturing = reached(JobKind::Controller, Capturing, false, false);
    let mismatches = vec![E::ChunkChecksumMismatch; MAX_CHECKSUM_MISMATCHES as usize];
    let (m, actions) = walk(&capturing, &mismatches);
    assert_eq!(m.state, Capturing, "capture goes on");
    assert_eq!(m.checksum_mismatches, MAX_CHECKSUM_MISMATCHES);
    let health = actions
        .iter()
        .filter(|a| matches!(a, Action::EnqueueHealthEvent(e) if e.kind == "agent.upload.checksum_mismatch"))
        .count();
    assert_eq!(health, MAX_CHECKSUM_MISMATCHES as usize);
    assert_eq!(actions.last(), Some(&Action::DropUpload), "{actions:?}");
    // No more chunks go up; the render's end fails the job once, its audio kept.
    let (m, actions) = walk(
        &m,
        &[
            E::ChunkRendered { index: 5 },
            E::DurationReached,
            E::Captured { has_audio: true },
            E::Rendered(file()),
        ],
    );
    assert_eq!(m.state, Failed);
    assert_eq!(m.end_cause.as_deref(), Some(reason::CHECKSUM_MISMATCH));
    assert_eq!(
        reports_in(&actions),
        [&failed(reason::CHECKSUM_MISMATCH)],
        "the chunk PUTs did not complete the job: the controller is told"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::UploadChunk { .. } | Action::Upload { .. }))
    );
    // Fewer than the limit: the job's end uploads as usual.
    let (m, _) = walk(&capturing, &mismatches[1..]);
    let (m, actions) = walk(
        &m,
        &[
            E::DurationReached,
            E::Captured { has_audio: true },
            E::Rendered(file()),
        ],
    );
    assert_eq!(m.state, Cached);
    assert!(actions.iter().any(|a| matches!(a, Action::Upload { .. })));
}
