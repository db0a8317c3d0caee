use super::*;
use Event as E;
use JobState::*;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

// ── A small world around the machine ────────────────────────────────────────────────
//
// It plays the capture role, the renderer and the controller: it answers the actions
// the way those parts would, and injects the faults a row asks for. A crash drops what
// the dead process had in flight (its side effects and their answers), keeps what was
// journaled with the state, and feeds the janitor's `Crashed`.

/// How the controller answers one cache-file PUT.
#[derive(Clone, Copy, Debug)]
enum Put {
    Accept,
    Mismatch,
    /// A chunk before the last came back with another checksum.
    ChunkMismatch,
    Refuse409,
    Retry5xx,
    Reject400,
}

#[derive(Clone, Debug)]
struct World {
    /// Events that happen regardless of the agent (controller, operator, clock).
    script: Vec<Event>,
    /// When the job first enters the state, this event comes next.
    inject: Vec<(JobState, Event)>,
    /// The agent dies the first time the job enters this state (after saving it,
    /// before its side effects ran).
    crash_in_state: Option<JobState>,
    /// Whether the job's window is still open when the janitor finds a crash.
    window_open_after_crash: bool,
    /// Whether the writer wrote any frame.
    has_audio: bool,
    render_ok: bool,
    /// Successive PUT answers; past the end, `Accept`.
    puts: Vec<Put>,
}

impl Default for World {
    fn default() -> World {
        World {
            script: Vec::new(),
            inject: Vec::new(),
            crash_in_state: None,
            window_open_after_crash: true,
            has_audio: true,
            render_ok: true,
            puts: Vec::new(),
        }
    }
}

#[derive(Debug)]
enum Item {
    /// From the script or an injection: survives a crash.
    World(Event),
    /// An answer to a side effect of the running process: lost in a crash.
    Answer(Event),
    /// The start of a PUT for an upload attempt: lost in a crash (the row is re-sent).
    PutStarted(u32),
    /// The controller's answer to that PUT, drawn from `World::puts` when it arrives.
    PutAnswer(u32),
}

#[derive(Debug)]
struct Trace {
    end: MachineState,
    /// Every action issued (a crash drops the side effects, not the journal writes).
    actions: Vec<Action>,
    /// Actions issued after the job was terminal (must stay empty).
    after_terminal: Vec<Action>,
    crashes: u32,
}

impl Trace {
    fn reports(&self) -> Vec<&Report> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::EnqueueReport(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn health(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::EnqueueHealthEvent(e) => Some(e.kind.as_str()),
                _ => None,
            })
            .collect()
    }

    fn flags(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::FlagLocalRecording { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    fn position(&self, f: impl Fn(&Action) -> bool) -> Option<usize> {
        self.actions.iter().position(f)
    }

    fn uploads(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Upload { .. }))
            .count()
    }
}

fn file() -> RenderedFile {
    RenderedFile {
        path: PathBuf::from("/var/lib/edgerec/jobs/j/recording.wav"),
        sha256: "ab".repeat(32),
        bytes: 1_234_567,
    }
}

const MAX_STEPS: usize = 500;

/// Runs `world` against the machine from `start` until the job is terminal. When
/// nothing is left to happen and the job is not terminal, the box restarts after the
/// window closed: the janitor's `Crashed`. An illegal event is an `Err`.
fn simulate(start: MachineState, world: &World) -> Result<Trace, String> {
    let mut m = start;
    let mut queue: VecDeque<Item> = world.script.iter().cloned().map(Item::World).collect();
    let mut puts = world.puts.iter().copied();
    let mut entered: HashSet<JobState> = HashSet::new();
    // Upload attempts the sync role has sent, or finished: the outbox key dedupes them.
    let mut in_flight: HashSet<u32> = HashSet::new();
    let mut done: HashSet<u32> = HashSet::new();
    let mut trace = Trace {
        end: m.clone(),
        actions: Vec::new(),
        after_terminal: Vec::new(),
        crashes: 0,
    };
    // What happens when the job first enters `s`: the row's injected event, and before
    // it, the crash (the agent dies right after saving `s`). Returns whether it crashed.
    let on_enter = |s: JobState, entered: &mut HashSet<JobState>, queue: &mut VecDeque<Item>| {
        if !entered.insert(s) {
            return false;
        }
        if let Some((_, e)) = world.inject.iter().find(|(st, _)| *st == s) {
            queue.push_front(Item::World(e.clone()));
        }
        let crash = world.crash_in_state == Some(s);
        if crash {
            queue.push_front(Item::World(E::Crashed {
                window_open: world.window_open_after_crash,
                has_audio: world.has_audio,
            }));
        }
        crash
    };
    on_enter(m.state, &mut entered, &mut queue);
    for _ in 0..MAX_STEPS {
        let item = match queue.pop_front() {
            Some(i) => i,
            None if m.state.is_terminal() => {
                trace.end = m;
                return Ok(trace);
            }
            None => Item::World(E::Crashed {
                window_open: false,
                has_audio: world.has_audio,
            }),
        };
        let (event, attempt) = item_event(item, &mut puts, &mut queue);
        if !capture_side_can_report(&event, m.state) {
            continue;
        }
        if matches!(event, E::Crashed { .. }) {
            // The dead process's work in flight is gone; the outbox rows are not.
            trace.crashes += 1;
            queue.retain(|i| matches!(i, Item::World(_)));
            in_flight.clear();
        }
        let was_terminal = m.state.is_terminal();
        let (next, actions) =
            transition(&m, &event).map_err(|e| format!("{e} (after {:?})", trace.actions))?;
        if next.verdict.is_some() && actions.iter().any(|a| matches!(a, Action::Upload { .. })) {
            return Err(format!("upload after a verdict: {event:?} in {m:?}"));
        }
        if let Some(a) = attempt.filter(|_| is_final_put_answer(&event)) {
            in_flight.remove(&a);
            done.insert(a);
        }
        let moved = next.state != m.state;
        m = next;
        if was_terminal {
            trace.after_terminal.extend(actions);
            continue;
        }
        let crashed = moved && on_enter(m.state, &mut entered, &mut queue);
        for a in actions {
            // A crash right after this save loses the side effects, not the journal.
            if crashed && !a.is_journal_write() {
                continue;
            }
            let uploads = (&mut in_flight, &done);
            queue_answers(&a, &m, world, &mut queue, uploads);
            trace.actions.push(a);
        }
    }
    Err(format!("no terminal state after {MAX_STEPS} steps: {m:?}"))
}

/// The event an item feeds the machine, and the upload attempt it answers.
fn item_event(
    item: Item,
    puts: &mut impl Iterator<Item = Put>,
    queue: &mut VecDeque<Item>,
) -> (Event, Option<u32>) {
    match item {
        Item::World(e) | Item::Answer(e) => (e, None),
        Item::PutStarted(a) => (E::UploadStarted, Some(a)),
        Item::PutAnswer(a) => {
            let put = puts.next().unwrap_or(Put::Accept);
            (put_answer(put, a, queue), Some(a))
        }
    }
}

/// The controller's answer to one PUT, as the sync role feeds it to the machine. A 5xx
/// puts the row back: the outbox tries it again.
fn put_answer(put: Put, attempt: u32, queue: &mut VecDeque<Item>) -> Event {
    match put {
        Put::Accept => E::UploadAccepted {
            checksum_matches: true,
        },
        Put::Mismatch => E::UploadAccepted {
            checksum_matches: false,
        },
        Put::ChunkMismatch => E::ChunkChecksumMismatch,
        Put::Refuse409 => E::UploadRefused409,
        Put::Retry5xx => {
            queue.push_front(Item::PutAnswer(attempt));
            E::UploadFailed {
                retryable: true,
                detail: "503".into(),
            }
        }
        Put::Reject400 => E::UploadFailed {
            retryable: false,
            detail: "400 bad duration".into(),
        },
    }
}

/// An answer that ends an upload attempt: the outbox will not send its row again.
fn is_final_put_answer(event: &Event) -> bool {
    matches!(
        event,
        E::UploadAccepted { .. }
            | E::ChunkChecksumMismatch
            | E::UploadRefused409
            | E::UploadFailed {
                retryable: false,
                ..
            }
    )
}

/// The capture role reports these only while it captures: after a crash that ended
/// capture, they never come.
fn capture_side_can_report(event: &Event, state: JobState) -> bool {
    let capture_side = match event {
        E::Start => Some(&[Claimed][..]),
        E::DurationReached | E::DeviceGoneForGood { .. } => Some(&[Capturing][..]),
        _ => None,
    };
    capture_side.is_none_or(|states| states.contains(&state)) || state.is_terminal()
}

/// Queues the answers the other parts give to a side effect: the capture role's
/// `Captured`, the renderer's result, the PUT of an upload attempt not yet sent
/// (`uploads`: attempts in flight, attempts finished).
fn queue_answers(
    a: &Action,
    m: &MachineState,
    world: &World,
    queue: &mut VecDeque<Item>,
    (in_flight, done): (&mut HashSet<u32>, &HashSet<u32>),
) {
    match a {
        Action::StopCapture if !m.parked => {
            queue.push_back(Item::Answer(E::Captured {
                has_audio: world.has_audio,
            }));
        }
        Action::Render => {
            queue.push_back(Item::Answer(E::RenderStarted));
            queue.push_back(Item::Answer(if world.render_ok {
                E::Rendered(file())
            } else {
                E::RenderFailed {
                    detail: "stitch: bad segment".into(),
                }
            }));
        }
        Action::Upload { attempt, .. }
            if !in_flight.contains(attempt) && !done.contains(attempt) =>
        {
            in_flight.insert(*attempt);
            queue.push_back(Item::PutStarted(*attempt));
            queue.push_back(Item::PutAnswer(*attempt));
        }
        _ => {}
    }
}

fn run(kind: JobKind, world: &World) -> Trace {
    simulate(MachineState::new(kind), world).unwrap_or_else(|e| panic!("{e}"))
}

fn cancelled(reason: &str) -> Report {
    Report::cancelled(reason)
}

fn failed(reason: &str) -> Report {
    Report::failed(reason)
}

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

// ── The invariant, over every state and every end path ──────────────────────────────

/// A job brought to `state` the way the table would, with optional facts.
fn reached(kind: JobKind, state: JobState, stop_pending: bool, lease_lost: bool) -> MachineState {
    let mut m = MachineState::at(state, kind);
    if kind == JobKind::Controller {
        m.stop_pending = stop_pending && state != Claimed;
        // A lost lease only survives, unacted on, until the audio is rendered.
        if lease_lost && matches!(state, Capturing | Stopping | Captured | Rendering) {
            m.verdict = Some(Verdict::Failed {
                reason: reason::LEASE_EXPIRED.into(),
            });
        }
    }
    if state != Claimed && state != Capturing {
        m.end_cause = Some(reason::DURATION.into());
    }
    if matches!(state, Cached | Uploading) {
        m.recording = Some(file());
    }
    m
}

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
