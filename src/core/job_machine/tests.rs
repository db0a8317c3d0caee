use super::*;
use Event as E;
use JobState::*;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

mod chunks;
mod end_paths;
mod scenarios;

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
