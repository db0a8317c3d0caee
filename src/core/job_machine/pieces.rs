//! The pieces the transition table is built from: a transition under construction
//! ([`Next`]), the state edits its rows make, and the alerts they raise.

use super::{
    Action, Alert, AlertLevel, Event, JobKind, MachineState, RenderedFile, Report, reason,
};
use crate::core::job::JobState;
use serde_json::{Map, Value};

/// A transition being built: the new state and its actions, in order.
pub(super) struct Next {
    pub(super) m: MachineState,
    pub(super) actions: Vec<Action>,
}

impl Next {
    pub(super) fn stay(m: &MachineState) -> Next {
        Next {
            m: m.clone(),
            actions: Vec::new(),
        }
    }

    /// Moves to `state`; leaving `Capturing` un-parks.
    pub(super) fn to(m: &MachineState, state: JobState) -> Next {
        let mut next = Next::stay(m);
        if state != m.state {
            next.m.parked = false;
        }
        next.m.state = state;
        next
    }

    /// The only way into a terminal state: sets the end cause and queues the one report.
    /// By default the report says what happened (`failed`/`cancelled` with `why`, or
    /// `completed`), or nothing once the controller has decided; [`Next::report`]
    /// overrides it. A local job's report is always `Local`.
    pub(super) fn end(m: &MachineState, state: JobState, why: &str) -> Next {
        let mut next = Next::to(m, state);
        next.m.end_cause = Some(why.to_string());
        next.actions.push(Action::EnqueueReport(match state {
            _ if m.verdict.is_some() => Report::ControllerDecided,
            JobState::Cancelled => Report::cancelled(why),
            JobState::Failed => Report::failed(why),
            _ => Report::Completed,
        }));
        next.localize_report()
    }

    /// Replaces the report queued by [`Next::end`].
    pub(super) fn report(mut self, report: Report) -> Next {
        for a in &mut self.actions {
            if let Action::EnqueueReport(r) = a {
                *r = report.clone();
            }
        }
        self.localize_report()
    }

    pub(super) fn localize_report(mut self) -> Next {
        if self.m.kind == JobKind::Local {
            for a in &mut self.actions {
                if let Action::EnqueueReport(r) = a {
                    *r = Report::Local;
                }
            }
        }
        self
    }

    /// The controller already ended the job (`m.verdict` is set): end in its terminal
    /// state, report nothing; `kept` names why audio stays local, when there is audio.
    pub(super) fn decided(m: MachineState, kept: Option<&str>) -> Next {
        let (state, why) = match &m.verdict {
            Some(v) => v.terminal(),
            None => (JobState::Failed, reason::UPLOAD_REFUSED),
        };
        let next = Next::end(&m, state, why).report(Report::ControllerDecided);
        match kept {
            Some(reason) => next.kept(reason),
            None => next,
        }
    }

    /// Capture ended without a single frame: nothing to render or upload.
    pub(super) fn no_audio(m: &MachineState) -> Next {
        if m.verdict.is_some() {
            return Next::decided(m.clone(), None);
        }
        if m.stop_pending {
            return Next::end(m, JobState::Cancelled, reason::CONTROLLER_STOP_REQUESTED);
        }
        let why = match m.end_cause.as_deref() {
            Some(c) if c == reason::DEVICE_GONE || c.starts_with(reason::CAPTURE_FAILED) => c,
            _ => reason::NO_AUDIO,
        };
        Next::end(m, JobState::Failed, why)
    }

    /// (Re-)enqueues the upload of the rendered file, or re-renders when the file is not
    /// known (a job resumed from a row without its facts).
    pub(super) fn upload_again(m: &MachineState) -> Next {
        match &m.recording {
            Some(file) => Next::to(m, JobState::Cached).act(Action::Upload {
                file: file.clone(),
                attempt: m.checksum_mismatches,
            }),
            None => Next::to(m, JobState::Captured).act(Action::Render),
        }
    }

    /// Notes the controller's verdict (the first one stands); a new verdict drops the
    /// job's chunk uploads still queued: the controller would refuse them.
    pub(super) fn verdict(mut self, event: &Event) -> Next {
        let first = self.m.verdict.is_none();
        self.m = self.m.with_verdict(event);
        if first && self.m.verdict.is_some() {
            self.actions.push(Action::DropUpload);
        }
        self
    }

    pub(super) fn act(mut self, action: Action) -> Next {
        self.actions.push(action);
        self
    }

    /// A health event for the controller; a local job has no one to send it to.
    pub(super) fn health(self, event: Alert) -> Next {
        if self.m.kind == JobKind::Local {
            return self;
        }
        self.act(Action::EnqueueHealthEvent(event))
    }

    /// The audio stays in the local library, undelivered: flag it, and say so.
    pub(super) fn kept(self, why: &str) -> Next {
        let mut event = Alert::new("agent.recording.kept_locally", AlertLevel::Warning);
        event.details.insert("reason".into(), Value::from(why));
        self.act(Action::FlagLocalRecording {
            reason: why.to_string(),
        })
        .health(event)
    }

    pub(super) fn cause(mut self, why: &str) -> Next {
        self.m = self.m.with_cause(why);
        self
    }

    pub(super) fn stop_pending(mut self) -> Next {
        if self.m.kind == JobKind::Controller {
            self.m.stop_pending = true;
        }
        self
    }

    pub(super) fn parked(mut self) -> Next {
        self.m.parked = true;
        self
    }

    pub(super) fn recovered(mut self) -> Next {
        self.m = self.m.recovered();
        self
    }
}

impl MachineState {
    /// Keeps the first end cause: the one that actually ended capture.
    pub(super) fn with_cause(&self, why: &str) -> MachineState {
        let mut m = self.clone();
        m.end_cause.get_or_insert_with(|| why.to_string());
        m
    }

    pub(super) fn cause_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.end_cause.as_deref().unwrap_or(default)
    }

    /// Keeps the first verdict: the controller's transitions are compare-and-set, so a
    /// second, different one is noise.
    pub(super) fn with_verdict(&self, event: &Event) -> MachineState {
        let mut m = self.clone();
        if m.verdict.is_none() {
            m.verdict = event.verdict();
        }
        m
    }

    pub(super) fn verdict_reason(&self) -> &str {
        self.verdict
            .as_ref()
            .map_or(reason::UPLOAD_REFUSED, |v| v.terminal().1)
    }

    pub(super) fn with_recording(&self, file: &RenderedFile) -> MachineState {
        let mut m = self.clone();
        m.recording = Some(file.clone());
        m
    }

    pub(super) fn recovered(&self) -> MachineState {
        let mut m = self.clone();
        m.recoveries = m.recoveries.saturating_add(1);
        m.parked = false;
        m
    }

    pub(super) fn recovered_if_crash(&self, event: &Event) -> MachineState {
        match event {
            Event::Crashed { .. } => self.recovered(),
            _ => self.clone(),
        }
    }

    pub(super) fn mismatched(&self) -> MachineState {
        let mut m = self.clone();
        m.checksum_mismatches = m.checksum_mismatches.saturating_add(1);
        m
    }
}

pub(super) fn local_stop_cause(event: &Event) -> &'static str {
    match event {
        Event::Shutdown => reason::SHUTDOWN,
        _ => reason::STOP_REQUESTED,
    }
}

/// A capture failure's reason for the controller: the kind, then what the device said.
pub(super) fn failed_because(detail: &str) -> String {
    format!("{}: {detail}", reason::CAPTURE_FAILED)
}

/// A render failure's reason for the controller: the kind, then what the render said
/// (which channel a map names that the capture lacks, which segment is unreadable).
pub(super) fn render_failed_because(detail: &str) -> String {
    format!("{}: {detail}", reason::RENDER_FAILED)
}

pub(super) fn failure_event(what: &str, detail: &str) -> Alert {
    let mut event = Alert::new(format!("agent.{what}"), AlertLevel::Critical);
    event.details.insert("detail".into(), Value::from(detail));
    event
}

pub(super) fn crash_loop_event(m: &MachineState) -> Alert {
    let mut event = Alert::new("agent.job.crash_loop", AlertLevel::Critical);
    let mut details = Map::new();
    details.insert("state".into(), Value::from(m.state.name()));
    details.insert("recoveries".into(), Value::from(m.recoveries));
    event.details = details;
    event
}

pub(super) fn checksum_event(m: &MachineState) -> Alert {
    let mut event = Alert::new("agent.upload.checksum_mismatch", AlertLevel::Warning);
    event
        .details
        .insert("mismatches".into(), Value::from(m.checksum_mismatches + 1));
    event
}
