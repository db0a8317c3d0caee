//! Capture groups end member by member: a stop, cancel or failure of one job of a group
//! ends that job's window at the frame the shared capture had reached (an event on its
//! own timeline), while the capture goes on for the others; the capture stops when the
//! last of them has ended. Each job's render then stops at its own end frame.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use crate::core::job::JobState;
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{Journal, JournalError};
use crate::segment::writer::now_ms;

/// The detail of the event that ends one job's window inside its group's capture.
pub const MEMBER_ENDED: &str = "capture group member ended";

/// A job's own end inside its group's capture: the first frame at which it ended.
pub fn own_end_frame(own_events: &[TimelineEvent]) -> Option<u64> {
    own_events
        .iter()
        .filter(|e| e.kind == EventKind::StopRequested && e.detail.starts_with(MEMBER_ENDED))
        .map(|e| e.frame)
        .min()
}

/// Whether a job in this state no longer wants the shared capture.
fn has_ended(state: JobState) -> bool {
    state == JobState::Stopping || state.is_terminal()
}

/// The group-wide view the leader's capture thread keeps while it captures.
#[derive(Default)]
pub struct GroupEnds {
    /// The capture's position, as the supervisor last saw it.
    frames: Cell<u64>,
    /// Jobs whose end is journaled (by this thread).
    marked: RefCell<HashSet<String>>,
}

impl GroupEnds {
    pub fn note_frames(&self, frames: u64) {
        self.frames.set(frames);
    }

    /// Journals the end of each group job that ended since the last look; true once every
    /// job the capture serves (the leader and its members) has ended. A job alone is not
    /// marked: its capture simply stops.
    pub fn all_ended(&self, journal: &Journal, leader: &str) -> Result<bool, JournalError> {
        let members = journal.group_members(leader)?;
        let mut all = true;
        for id in std::iter::once(leader.to_string()).chain(members.iter().cloned()) {
            let Some(job) = journal.job(&id)? else {
                continue;
            };
            if !has_ended(job.state) {
                all = false;
                continue;
            }
            if members.is_empty() || self.marked.borrow().contains(&id) {
                continue;
            }
            let detail = format!("{MEMBER_ENDED}: {}", job.state);
            let ev = TimelineEvent::new(EventKind::StopRequested, self.frames.get(), now_ms())
                .with_detail(detail);
            journal.add_event(&id, &ev)?;
            log::info!(
                "{id}: ends at frame {} of its group's capture; the capture goes on",
                self.frames.get()
            );
            self.marked.borrow_mut().insert(id);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_member_end_counts() {
        let ev = |kind, frame, detail: &str| TimelineEvent::new(kind, frame, 0).with_detail(detail);
        let events = vec![
            ev(EventKind::StopRequested, 900, "stop requested"),
            ev(
                EventKind::StopRequested,
                700,
                &format!("{MEMBER_ENDED}: stopping"),
            ),
            ev(
                EventKind::StopRequested,
                800,
                &format!("{MEMBER_ENDED}: cancelled"),
            ),
        ];
        assert_eq!(own_end_frame(&events), Some(700));
        assert_eq!(own_end_frame(&events[..1]), None);
    }
}
