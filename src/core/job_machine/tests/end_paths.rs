//! The invariant over every state and every end path: exactly one terminal state and
//! one report; and the machine's smaller promises (typed errors, idempotence, JSON).

use super::*;

// ── The invariant, over every state and every end path ──────────────────────────────

fn end_paths() -> Vec<Event> {
    vec![
        E::DurationReached,
        E::StopRequested,
        E::Shutdown,
        E::CancelledByController {
            reason: "operator".into(),
        },
        E::FailedOnController {
            reason: "operator_failed".into(),
        },
        E::CompletedOnController,
        E::LeaseLost,
        E::DeviceGoneForGood {
            detail: "gone".into(),
        },
        E::CaptureFailed {
            detail: "broken".into(),
        },
        E::UploadRefused409,
        E::UploadFailed {
            retryable: false,
            detail: "413".into(),
        },
        E::Crashed {
            window_open: true,
            has_audio: true,
        },
        E::Crashed {
            window_open: false,
            has_audio: true,
        },
        E::Crashed {
            window_open: false,
            has_audio: false,
        },
    ]
}

/// One run of the invariant test: a job brought to some state, one end path, and the
/// world's answers and faults.
struct Case {
    label: String,
    start: MachineState,
    world: World,
}

/// Every non-terminal state (with and without a pending stop or a lost lease), every
/// legal end-path event, and every way the PUT, the render and a crash can go.
fn end_path_cases() -> Vec<Case> {
    let put_scripts: [&[Put]; 6] = [
        &[],
        &[Put::Retry5xx],
        &[Put::Mismatch],
        &[Put::Mismatch; 3],
        &[Put::Refuse409],
        &[Put::Reject400],
    ];
    let outcomes = [(true, true), (true, false), (false, true)]; // (has_audio, render_ok)
    let crashes = [None, Some(Capturing), Some(Rendering), Some(Uploading)];
    let mut cases = Vec::new();
    for kind in [JobKind::Controller, JobKind::Local] {
        for state in JobState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            if kind == JobKind::Local && matches!(state, Cached | Uploading) {
                continue; // a local job is delivered when rendered
            }
            for (stop, lease_lost) in [(false, false), (true, false), (false, true)] {
                let start = reached(kind, state, stop, lease_lost);
                for event in end_paths() {
                    if transition(&start, &event).is_err() {
                        continue; // the property is about legal sequences
                    }
                    for (puts, (has_audio, render_ok), crash_in) in put_scripts
                        .iter()
                        .flat_map(|p| outcomes.iter().map(move |o| (p, o)))
                        .flat_map(|(p, o)| crashes.iter().map(move |c| (p, o, c)))
                    {
                        if matches!(event, E::Crashed { has_audio: h, .. } if h != *has_audio) {
                            continue; // the janitor and the writer agree on the audio
                        }
                        cases.push(Case {
                            label: format!(
                                "{kind} {state} stop={stop} lease_lost={lease_lost} \
                                 {event:?} puts={puts:?} audio={has_audio} \
                                 render={render_ok} crash={crash_in:?}"
                            ),
                            start: start.clone(),
                            world: World {
                                script: vec![event.clone()],
                                crash_in_state: *crash_in,
                                has_audio: *has_audio,
                                render_ok: *render_ok,
                                puts: puts.to_vec(),
                                ..World::default()
                            },
                        });
                    }
                }
            }
        }
    }
    cases
}

fn check_invariants(case: &Case, t: &Trace) {
    let label = &case.label;
    assert!(t.end.state.is_terminal(), "{label}");
    let reports = t.reports();
    assert_eq!(reports.len(), 1, "{label}: {:?}", t.actions);
    assert!(t.after_terminal.is_empty(), "{label}");
    if case.start.kind == JobKind::Local {
        assert_eq!(reports[0], &Report::Local, "{label}");
        assert_eq!(t.uploads(), 0, "{label}");
        assert!(t.health().is_empty(), "{label}");
    } else {
        assert_ne!(reports[0], &Report::Local, "{label}");
    }
    // Undelivered audio is flagged exactly once; delivered or absent audio never is.
    let audio = match case.start.state {
        Claimed => case.world.has_audio && t.actions.contains(&Action::StartCapture),
        Capturing | Stopping => case.world.has_audio,
        _ => true,
    };
    let undelivered = audio && t.end.state != Delivered;
    assert_eq!(
        t.flags().len(),
        usize::from(undelivered),
        "{label}: {:?}",
        t.actions
    );
    // A controller that already decided is never answered with a post.
    if t.end.verdict.is_some() {
        assert_eq!(reports[0], &Report::ControllerDecided, "{label}");
    }
    // The cancel for a stop is queued after every upload.
    let stop_report = Action::EnqueueReport(cancelled(reason::CONTROLLER_STOP_REQUESTED));
    if let Some(r) = t.position(|a| *a == stop_report) {
        let last_upload = t
            .actions
            .iter()
            .rposition(|a| matches!(a, Action::Upload { .. }));
        assert!(last_upload.is_none_or(|u| u < r), "{label}");
    }
}

#[test]
fn every_end_path_reaches_one_terminal() {
    let cases = end_path_cases();
    assert!(cases.len() > 10_000, "only {} cases", cases.len());
    let mut crashed = 0;
    for case in &cases {
        let trace = simulate(case.start.clone(), &case.world)
            .unwrap_or_else(|e| panic!("{}: {e}", case.label));
        check_invariants(case, &trace);
        crashed += usize::from(trace.crashes > 0);
    }
    assert!(
        crashed > cases.len() / 4,
        "{crashed} of {} crashed",
        cases.len()
    );
}

#[test]
fn terminal_states_absorb_every_event() {
    let mut events = end_paths();
    events.extend([
        E::Start,
        E::Captured { has_audio: true },
        E::RenderStarted,
        E::Rendered(file()),
        E::RenderFailed { detail: "x".into() },
        E::UploadStarted,
        E::UploadAccepted {
            checksum_matches: true,
        },
        E::UploadFailed {
            retryable: true,
            detail: "503".into(),
        },
        E::ChunkRendered { index: 0 },
        E::ChunkChecksumMismatch,
    ]);
    for kind in [JobKind::Controller, JobKind::Local] {
        for state in [Delivered, Failed, Cancelled] {
            let mut m = MachineState::at(state, kind);
            m.end_cause = Some("whatever".into());
            for e in &events {
                let (next, actions) = transition(&m, e).unwrap();
                assert_eq!(next, m, "{kind} {state} {e:?}");
                assert!(actions.is_empty(), "{kind} {state} {e:?}");
            }
        }
    }
}

#[test]
fn crash_loop_guard_ends_the_job() {
    let crashed = E::Crashed {
        window_open: true,
        has_audio: true,
    };
    let (mut m, _) = transition(&MachineState::new(JobKind::Controller), &E::Start).unwrap();
    for i in 1..=MAX_RECOVERIES {
        let (next, actions) = transition(&m, &crashed).unwrap();
        assert_eq!(next.state, Capturing, "recovery {i}");
        assert_eq!(next.recoveries, i);
        assert_eq!(actions, [Action::StartCapture]);
        m = next;
    }
    let (end, actions) = transition(&m, &crashed).unwrap();
    assert_eq!(end.state, Failed);
    assert_eq!(end.end_cause.as_deref(), Some(reason::CRASH_LOOP));
    let reports: Vec<_> = actions
        .iter()
        .filter(|a| matches!(a, Action::EnqueueReport(_)))
        .collect();
    assert_eq!(
        reports,
        [&Action::EnqueueReport(failed(reason::CRASH_LOOP))]
    );
    assert!(actions.contains(&Action::FlagLocalRecording {
        reason: reason::CRASH_LOOP.into()
    }));
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::EnqueueHealthEvent(e) if e.kind == "agent.job.crash_loop")
        )
    );
    assert!(!actions.contains(&Action::StartCapture));

    // The same guard stops a render that kills its role every time.
    let mut m = MachineState::at(Rendering, JobKind::Local);
    m.recoveries = MAX_RECOVERIES;
    let (end, actions) = transition(&m, &crashed).unwrap();
    assert_eq!(end.state, Failed);
    assert!(actions.contains(&Action::EnqueueReport(Report::Local)));
    assert!(!actions.contains(&Action::Render));
}

#[test]
fn illegal_pairs_are_typed_errors() {
    // (kind, state, event)
    let table = [
        (JobKind::Controller, Claimed, E::Rendered(file())),
        (JobKind::Controller, Claimed, E::DurationReached),
        (JobKind::Controller, Capturing, E::Start),
        (
            JobKind::Controller,
            Capturing,
            E::UploadAccepted {
                checksum_matches: true,
            },
        ),
        (JobKind::Controller, Cached, E::Captured { has_audio: true }),
        (JobKind::Controller, Uploading, E::RenderStarted),
        (JobKind::Local, Capturing, E::LeaseLost),
        (JobKind::Local, Captured, E::UploadStarted),
    ];
    for (kind, state, event) in table {
        let m = MachineState::at(state, kind);
        assert_eq!(
            transition(&m, &event),
            Err(Illegal {
                state,
                kind,
                event: event.name()
            }),
            "{kind} {state} {event:?}"
        );
    }
    let e = transition(&MachineState::new(JobKind::Local), &E::LeaseLost).unwrap_err();
    assert_eq!(
        e.to_string(),
        "job machine: event lease_lost is not legal for a local job in state claimed"
    );
}

#[test]
fn repeated_controller_news_is_idempotent() {
    let (m, _) = transition(&MachineState::new(JobKind::Controller), &E::Start).unwrap();
    let (m, a) = transition(&m, &E::StopRequested).unwrap();
    assert_eq!(a, [Action::StopCapture]);
    for e in [E::StopRequested, E::DurationReached, E::Shutdown] {
        let (again, actions) = transition(&m, &e).unwrap();
        assert_eq!(again, m, "{e:?}");
        assert!(actions.is_empty(), "{e:?}");
    }
    // The first verdict stands.
    let (m, _) = transition(&m, &E::LeaseLost).unwrap();
    let (again, _) = transition(&m, &E::CancelledByController { reason: "x".into() }).unwrap();
    assert_eq!(again.verdict, m.verdict);
}

#[test]
fn reports_say_what_to_post() {
    let table = [
        (Report::Completed, None),
        (
            cancelled(reason::CONTROLLER_STOP_REQUESTED),
            Some((TerminalPost::Cancelled, reason::CONTROLLER_STOP_REQUESTED)),
        ),
        (
            failed(reason::RENDER_FAILED),
            Some((TerminalPost::Failed, reason::RENDER_FAILED)),
        ),
        (Report::ControllerDecided, None),
        (Report::Local, None),
    ];
    for (report, post) in table {
        assert_eq!(report.post(), post, "{report:?}");
    }
    assert_eq!(TerminalPost::Cancelled.path(), "cancelled");
    assert_eq!(
        serde_json::to_value(failed("x")).unwrap(),
        serde_json::json!({"outcome": "failed", "reason": "x"})
    );
}

#[test]
fn machine_state_round_trips_through_json() {
    let mut m = reached(JobKind::Controller, Uploading, true, false);
    m.verdict = Some(Verdict::Cancelled {
        reason: "operator".into(),
    });
    m.recoveries = 3;
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<MachineState>(&text).unwrap(), m);
}

#[test]
fn actions_split_into_journal_writes_and_side_effects() {
    let side_effects = [Action::StartCapture, Action::StopCapture, Action::Render];
    assert!(side_effects.iter().all(|a| !a.is_journal_write()));
    let writes = [
        Action::Upload {
            file: file(),
            attempt: 0,
        },
        Action::DropUpload,
        Action::EnqueueReport(Report::Completed),
        Action::FlagLocalRecording { reason: "x".into() },
    ];
    assert!(writes.iter().all(Action::is_journal_write));
}
