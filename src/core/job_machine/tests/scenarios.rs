//! The table of scenarios, each also run with a crash in every state it passes.

use super::*;

// ── The table of scenarios (STYLE.md 8: fault fields) ───────────────────────────────

struct Row {
    name: &'static str,
    kind: JobKind,
    world: World,
    state: JobState,
    cause: &'static str,
    report: Report,
    health: &'static [&'static str],
    flag: Option<&'static str>,
    uploads: usize,
}

const KEPT: &str = "agent.recording.kept_locally";

#[allow(
    clippy::too_many_lines,
    reason = "one table of scenarios, a row per path"
)]
fn rows() -> Vec<Row> {
    use JobKind::{Controller, Local};
    let script = |events: &[Event]| events.to_vec();
    vec![
        Row {
            name: "duration reached, upload accepted",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: Report::Completed,
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "stop mid-capture: the partial is uploaded, then cancelled is posted",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::StopRequested]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::CONTROLLER_STOP_REQUESTED,
            report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "stop while uploading: cancelled follows the accepted upload",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                inject: vec![(Uploading, E::StopRequested)],
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "stop before any frame: cancelled, nothing to upload",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::StopRequested]),
                has_audio: false,
                ..World::default()
            },
            state: Cancelled,
            cause: reason::CONTROLLER_STOP_REQUESTED,
            report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "stop before capture started",
            kind: Controller,
            world: World {
                script: script(&[E::StopRequested]),
                ..World::default()
            },
            state: Cancelled,
            cause: reason::CONTROLLER_STOP_REQUESTED,
            report: cancelled(reason::CONTROLLER_STOP_REQUESTED),
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "cancel mid-capture: finalized locally, kept, no report",
            kind: Controller,
            world: World {
                script: script(&[
                    E::Start,
                    E::CancelledByController {
                        reason: "operator".into(),
                    },
                ]),
                ..World::default()
            },
            state: Cancelled,
            cause: "operator",
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some("operator"),
            uploads: 0,
        },
        Row {
            name: "failed on the controller mid-capture: finalized locally, no report",
            kind: Controller,
            world: World {
                script: script(&[
                    E::Start,
                    E::FailedOnController {
                        reason: "operator_failed".into(),
                    },
                ]),
                ..World::default()
            },
            state: Failed,
            cause: "operator_failed",
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some("operator_failed"),
            uploads: 0,
        },
        Row {
            name: "completed on the controller mid-capture: kept, no report",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::CompletedOnController]),
                ..World::default()
            },
            state: Cancelled,
            cause: reason::CONTROLLER_COMPLETED,
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some(reason::CONTROLLER_COMPLETED),
            uploads: 0,
        },
        Row {
            name: "lease lost mid-capture: capture runs to its duration, kept, no upload",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::LeaseLost, E::DurationReached]),
                ..World::default()
            },
            state: Failed,
            cause: reason::LEASE_EXPIRED,
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some(reason::LEASE_EXPIRED),
            uploads: 0,
        },
        Row {
            name: "lease lost during outage, upload refused 409: kept once, failed(lease_expired)",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                // The PUT answers 409; the GET that follows says lease_expired.
                inject: vec![(Uploading, E::LeaseLost)],
                puts: vec![Put::Refuse409],
                ..World::default()
            },
            state: Failed,
            cause: reason::LEASE_EXPIRED,
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some(reason::LEASE_EXPIRED),
            uploads: 1,
        },
        Row {
            name: "upload refused 409, reason unknown: kept, no report",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::Refuse409],
                ..World::default()
            },
            state: Failed,
            cause: reason::UPLOAD_REFUSED,
            report: Report::ControllerDecided,
            health: &[KEPT],
            flag: Some(reason::UPLOAD_REFUSED),
            uploads: 1,
        },
        Row {
            name: "controller 5xx twice, then accepted: delivered",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::Retry5xx, Put::Retry5xx, Put::Accept],
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: Report::Completed,
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "upload rejected 400: failed report, kept",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::Reject400],
                ..World::default()
            },
            state: Failed,
            cause: reason::UPLOAD_REJECTED,
            report: failed(reason::UPLOAD_REJECTED),
            health: &["agent.upload.rejected", KEPT],
            flag: Some(reason::UPLOAD_REJECTED),
            uploads: 1,
        },
        Row {
            name: "checksum mismatch once: uploaded again, delivered",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::Mismatch, Put::Accept],
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: Report::Completed,
            health: &["agent.upload.checksum_mismatch"],
            flag: None,
            uploads: 2,
        },
        Row {
            name: "checksum never matches: failed, kept, nothing posted",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::Mismatch; 5],
                ..World::default()
            },
            state: Failed,
            cause: reason::CHECKSUM_MISMATCH,
            report: Report::ControllerDecided,
            health: &[
                "agent.upload.checksum_mismatch",
                "agent.upload.checksum_mismatch",
                "agent.upload.checksum_mismatch",
                KEPT,
            ],
            flag: Some(reason::CHECKSUM_MISMATCH),
            uploads: 3,
        },
        Row {
            name: "a chunk's checksum never matches: failed posted (the job is not complete)",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                puts: vec![Put::ChunkMismatch; 5],
                ..World::default()
            },
            state: Failed,
            cause: reason::CHECKSUM_MISMATCH,
            report: failed(reason::CHECKSUM_MISMATCH),
            health: &[
                "agent.upload.checksum_mismatch",
                "agent.upload.checksum_mismatch",
                "agent.upload.checksum_mismatch",
                KEPT,
            ],
            flag: Some(reason::CHECKSUM_MISMATCH),
            uploads: 3,
        },
        Row {
            name: "render failure: failed report, audio kept",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                render_ok: false,
                ..World::default()
            },
            state: Failed,
            cause: "render_failed: stitch: bad segment",
            report: failed("render_failed: stitch: bad segment"),
            health: &["agent.render.failed", KEPT],
            flag: Some(reason::RENDER_FAILED),
            uploads: 0,
        },
        Row {
            name: "device gone for good: the partial is delivered",
            kind: Controller,
            world: World {
                script: script(&[
                    E::Start,
                    E::DeviceGoneForGood {
                        detail: "usb-1.2 ENODEV".into(),
                    },
                ]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::DEVICE_GONE,
            report: Report::Completed,
            health: &["agent.capture.device_gone"],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "device gone before any frame: failed(device_gone)",
            kind: Controller,
            world: World {
                script: script(&[
                    E::Start,
                    E::DeviceGoneForGood {
                        detail: "usb-1.2 ENODEV".into(),
                    },
                ]),
                has_audio: false,
                ..World::default()
            },
            state: Failed,
            cause: reason::DEVICE_GONE,
            report: failed(reason::DEVICE_GONE),
            health: &["agent.capture.device_gone"],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "capture cannot start: failed(capture_failed)",
            kind: Controller,
            world: World {
                script: script(&[E::CaptureFailed {
                    detail: "bad command".into(),
                }]),
                ..World::default()
            },
            state: Failed,
            // The reason names what the device said, so the operator sees why.
            cause: "capture_failed: bad command",
            report: failed("capture_failed: bad command"),
            health: &["agent.capture.failed"],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "shutdown mid-capture parks; after the window the janitor finalizes",
            kind: Controller,
            world: World {
                script: script(&[E::Start, E::Shutdown]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::CRASH,
            report: Report::Completed,
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "shutdown mid-capture, restart inside the window: capture resumes",
            kind: Controller,
            world: World {
                script: script(&[
                    E::Start,
                    E::Shutdown,
                    E::Crashed {
                        window_open: true,
                        has_audio: true,
                    },
                    E::DurationReached,
                ]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: Report::Completed,
            health: &[],
            flag: None,
            uploads: 1,
        },
        Row {
            name: "crash before start, window closed: failed(missed_window)",
            kind: Controller,
            world: World {
                crash_in_state: Some(Claimed),
                window_open_after_crash: false,
                ..World::default()
            },
            state: Failed,
            cause: reason::MISSED_WINDOW,
            report: failed(reason::MISSED_WINDOW),
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "local job: duration, rendered into the output directory",
            kind: Local,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::DURATION,
            report: Report::Local,
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "local job: SIGTERM stops and delivers what was captured",
            kind: Local,
            world: World {
                script: script(&[E::Start, E::Shutdown]),
                ..World::default()
            },
            state: Delivered,
            cause: reason::SHUTDOWN,
            report: Report::Local,
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "local job: no audio at all ends failed",
            kind: Local,
            world: World {
                script: script(&[E::Start, E::StopRequested]),
                has_audio: false,
                ..World::default()
            },
            state: Failed,
            cause: reason::NO_AUDIO,
            report: Report::Local,
            health: &[],
            flag: None,
            uploads: 0,
        },
        Row {
            name: "local job: render failure keeps the segments, flagged",
            kind: Local,
            world: World {
                script: script(&[E::Start, E::DurationReached]),
                render_ok: false,
                ..World::default()
            },
            state: Failed,
            cause: "render_failed: stitch: bad segment",
            report: Report::Local,
            health: &[],
            flag: Some(reason::RENDER_FAILED),
            uploads: 0,
        },
    ]
}

fn check_row(row: &Row, trace: &Trace, label: &str) {
    assert_eq!(trace.end.state, row.state, "{label}: final state");
    assert_eq!(
        trace.end.end_cause.as_deref(),
        Some(row.cause),
        "{label}: end cause"
    );
    assert_eq!(
        trace.reports(),
        [&row.report],
        "{label}: exactly one report"
    );
    assert_eq!(trace.health(), row.health, "{label}: health events");
    let flags = trace.flags();
    assert_eq!(flags.first().copied(), row.flag, "{label}: flag");
    assert!(flags.len() <= 1, "{label}: flagged twice: {flags:?}");
    assert!(trace.after_terminal.is_empty(), "{label}");
}

#[test]
fn scenarios() {
    for row in rows() {
        let trace = run(row.kind, &row.world);
        check_row(&row, &trace, row.name);
        assert_eq!(trace.uploads(), row.uploads, "{}: uploads", row.name);
    }
}

/// Each scenario again, with the agent crashing in each state the scenario passes
/// through (after saving it, before its side effects ran), the janitor finding the
/// window still open. The outcome must not change, save the end cause of a crash that
/// ended capture, and the health events a re-run re-issues.
#[test]
fn scenarios_survive_a_crash_in_each_state() {
    for row in rows() {
        let clean = run(row.kind, &row.world);
        for crash_in in [
            Claimed, Capturing, Stopping, Captured, Rendering, Cached, Uploading,
        ] {
            let world = World {
                crash_in_state: Some(crash_in),
                ..row.world.clone()
            };
            let label = format!("{} / crash in {crash_in}", row.name);
            let trace = simulate(MachineState::new(row.kind), &world)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(trace.reports().len(), 1, "{label}: {:?}", trace.actions);
            assert!(trace.after_terminal.is_empty(), "{label}");
            if trace.crashes == 0 || row.world.crash_in_state.is_some() {
                check_row(&row, &trace, &label);
                continue;
            }
            // A crash before the job started resumes it first, so what the row does
            // next meets a capturing job: a different, equally legal story.
            if crash_in == Claimed {
                continue;
            }
            assert_eq!(trace.end.state, clean.end.state, "{label}: final state");
            assert_eq!(trace.reports(), clean.reports(), "{label}: report");
            assert!(trace.flags().len() <= 1, "{label}: {:?}", trace.flags());
            assert_eq!(trace.flags(), clean.flags(), "{label}: flag");
        }
    }
}

#[test]
fn stop_uploads_the_partial_before_the_cancel_report() {
    let world = World {
        script: vec![E::Start, E::StopRequested],
        ..World::default()
    };
    let trace = run(JobKind::Controller, &world);
    let upload = trace.position(|a| matches!(a, Action::Upload { .. }));
    let report = trace
        .position(|a| *a == Action::EnqueueReport(cancelled(reason::CONTROLLER_STOP_REQUESTED)));
    assert!(
        matches!((upload, report), (Some(u), Some(r)) if u < r),
        "{:?}",
        trace.actions
    );
}

#[test]
fn crash_in_each_capture_state_then_janitor_finalizes() {
    // (crash in, window still open?, final state, end cause)
    let table = [
        (Claimed, true, Delivered, reason::DURATION),
        (Claimed, false, Failed, reason::MISSED_WINDOW),
        (Capturing, true, Delivered, reason::DURATION),
        (Capturing, false, Delivered, reason::CRASH),
        (Stopping, true, Delivered, reason::DURATION),
        (Stopping, false, Delivered, reason::DURATION),
        (Captured, false, Delivered, reason::DURATION),
        (Rendering, false, Delivered, reason::DURATION),
        (Cached, false, Delivered, reason::DURATION),
        (Uploading, false, Delivered, reason::DURATION),
    ];
    for (crash_in, window_open, state, cause) in table {
        let world = World {
            script: vec![E::Start, E::DurationReached],
            crash_in_state: Some(crash_in),
            window_open_after_crash: window_open,
            ..World::default()
        };
        let label = format!("crash in {crash_in}, window open {window_open}");
        let trace = simulate(MachineState::new(JobKind::Controller), &world)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(trace.crashes, 1, "{label}");
        assert_eq!(trace.end.state, state, "{label}");
        assert_eq!(trace.end.end_cause.as_deref(), Some(cause), "{label}");
        assert_eq!(trace.end.recoveries, 1, "{label}");
        assert_eq!(trace.reports().len(), 1, "{label}");
        // The upload row is keyed per attempt: a re-issued Upload is one PUT.
        assert!(trace.uploads() <= 2, "{label}");
    }
}
