//! Job states as the journal stores them. The full controller state machine (issue 4)
//! builds on these names; a local `edgerec record` job walks
//! capturing -> captured -> rendering -> delivered, or ends failed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Claimed,
    Capturing,
    Stopping,
    Captured,
    Rendering,
    Cached,
    Uploading,
    /// Terminal: the recording reached its destination (the controller, or for a local
    /// job, the output directory).
    Delivered,
    /// Terminal: the job could not produce a recording; `end_cause` says why.
    Failed,
    /// Terminal: cancelled before or during capture.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 10] = [
        JobState::Claimed,
        JobState::Capturing,
        JobState::Stopping,
        JobState::Captured,
        JobState::Rendering,
        JobState::Cached,
        JobState::Uploading,
        JobState::Delivered,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            JobState::Claimed => "claimed",
            JobState::Capturing => "capturing",
            JobState::Stopping => "stopping",
            JobState::Captured => "captured",
            JobState::Rendering => "rendering",
            JobState::Cached => "cached",
            JobState::Uploading => "uploading",
            JobState::Delivered => "delivered",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Delivered | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_terminals() {
        for s in JobState::ALL {
            assert_eq!(s.name().parse::<JobState>().unwrap(), s);
        }
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [JobState::Delivered, JobState::Failed, JobState::Cancelled]
        );
    }
}
