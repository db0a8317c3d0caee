//! The disk budget: from the spool's free space, when to reclaim old recordings, when to
//! pause writing audio and when to resume. Pure: free bytes and times come in, decisions
//! come out. The `statvfs`, the deletes and the journal's reserve file live in
//! [`crate::segment::disk`].
//!
//! Three marks on free bytes:
//!
//! ```text
//! free: 0 ........ reserve_below ........ resume_above ........ reclaim_below ........
//!       | pause    |  (paused: stay paused)  | resume            |
//!       |<------------- reclaim delivered recordings ------------>|  nothing to do
//! ```
//!
//! - Below `reclaim_below`, delivered recordings past their retention are deleted, oldest
//!   first, until the free space is back at the mark (never a recording not yet delivered).
//! - Below `reserve_below`, writing audio pauses: the ring keeps draining so the device
//!   never notices, and the frames not written become a `disk_pause` gap on the timeline.
//! - Writing resumes only above `resume_above`. The gap between the two marks is the
//!   hysteresis: without it every segment written or deleted near the mark would flip the
//!   writer, and each flip costs a gap, two timeline events and a new segment.
//! - `ENOSPC`/`EDQUOT` on a write is the same event as falling below the reserve.
//!
//! The marks are ordered `0 < reserve_below < resume_above < reclaim_below`, so that a
//! paused writer always has reclaim working to free the space it waits for.

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Free space marks of the spool, in bytes. Built by [`DiskBudget::new`] or
/// [`DiskBudget::resolve`], which check the order of the marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskBudget {
    /// Below this much free, delete delivered recordings past retention.
    reclaim_below: u64,
    /// Below this much free, stop writing audio.
    reserve_below: u64,
    /// A paused writer resumes only above this much free.
    resume_above: u64,
}

/// Marks given by the operator (config); `None` takes the default, derived from the marks
/// that are given, so raising only the reserve keeps the others consistent with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetMarks {
    pub reserve_below: Option<u64>,
    pub resume_above: Option<u64>,
    pub reclaim_below: Option<u64>,
}

/// A budget that cannot work; each variant names the setting to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "disk budget: the reserve is 0 bytes; writing would stop only at ENOSPC, when the \
         journal has no room left either"
    )]
    ZeroReserve,
    #[error(
        "disk budget: resume mark ({resume_above} bytes free) must be above the reserve mark \
         ({reserve_below}), or writing pauses and resumes on every write"
    )]
    ResumeNotAboveReserve {
        reserve_below: u64,
        resume_above: u64,
    },
    #[error(
        "disk budget: reclaim mark ({reclaim_below} bytes free) must be above the resume mark \
         ({resume_above}), or a paused writer waits with nothing freeing space for it"
    )]
    ReclaimNotAboveResume {
        resume_above: u64,
        reclaim_below: u64,
    },
    #[error(
        "disk budget: resume mark ({resume_above} bytes free) is not below the spool's size \
         ({total_bytes} bytes); a paused writer would never resume"
    )]
    ResumeUnreachable { resume_above: u64, total_bytes: u64 },
    #[error("disk budget: a spool of {total_bytes} bytes is too small to record on")]
    SpoolTooSmall { total_bytes: u64 },
}

/// Whether audio is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskState {
    Writing,
    Paused,
}

/// What the writer does with the next frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskAction {
    /// Keep writing.
    Write,
    /// Stop writing now: close the segment, record `disk_pause`, drain the ring unwritten.
    Pause,
    /// Still paused: the frames drained from the ring are part of the gap.
    StayPaused,
    /// Start writing again: record the gap (`disk_resume`), open a new segment.
    Resume,
}

impl DiskAction {
    /// The state once the action is carried out.
    pub const fn next_state(self) -> DiskState {
        match self {
            DiskAction::Write | DiskAction::Resume => DiskState::Writing,
            DiskAction::Pause | DiskAction::StayPaused => DiskState::Paused,
        }
    }
}

/// The budget's answer for one look at the free space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: DiskAction,
    /// Free space is below the reclaim mark: run reclaim (independent of `action`).
    pub reclaim: bool,
}

impl DiskBudget {
    /// A budget from explicit marks, in ascending order of free bytes.
    pub fn new(
        reserve_below: u64,
        resume_above: u64,
        reclaim_below: u64,
    ) -> Result<DiskBudget, BudgetError> {
        if reserve_below == 0 {
            return Err(BudgetError::ZeroReserve);
        }
        if resume_above <= reserve_below {
            return Err(BudgetError::ResumeNotAboveReserve {
                reserve_below,
                resume_above,
            });
        }
        if reclaim_below <= resume_above {
            return Err(BudgetError::ReclaimNotAboveResume {
                resume_above,
                reclaim_below,
            });
        }
        Ok(DiskBudget {
            reclaim_below,
            reserve_below,
            resume_above,
        })
    }

    /// The default budget for a spool of `total_bytes` (`statvfs` `f_blocks × f_frsize`).
    pub fn for_spool_size(total_bytes: u64) -> Result<DiskBudget, BudgetError> {
        DiskBudget::resolve(total_bytes, BudgetMarks::default())
    }

    /// The operator's marks, with defaults for the ones not given:
    ///
    /// - `reserve_below` = 2 % of the spool, at least 1 MiB, at most 256 MiB, and at most
    ///   1/8 of the spool. The reserve is what everything but audio needs while audio is
    ///   paused: the journal's WAL, header rewrites, the filesystem's own slack (ext4 and
    ///   f2fs on SD cards slow down badly when nearly full, and their metadata needs
    ///   blocks), logs. That scales with the filesystem, hence a percentage; the floor
    ///   covers tiny spools, the cap stops a large disk from holding back gigabytes, and
    ///   the 1/8 keeps a very small spool (a test tmpfs) usable.
    /// - `resume_above` = 2 × reserve: a pause lasts until at least one reserve's worth has
    ///   been freed, so the writer does not flap around the mark (each flap is a gap, two
    ///   timeline events and a new segment).
    /// - `reclaim_below` = the larger of 2 × resume (= 4 × reserve) and 5 % of the spool:
    ///   reclaim starts well before the pause, so with old recordings to delete, a
    ///   steady recording never pauses; 5 % of a 32 GiB card (1.6 GiB) is ~18 min of
    ///   8 channels of 32-bit 48 kHz audio, time enough for reclaim to keep up.
    pub fn resolve(total_bytes: u64, marks: BudgetMarks) -> Result<DiskBudget, BudgetError> {
        let reserve_below = match marks.reserve_below {
            Some(r) => r,
            None => {
                let r = (total_bytes / 50)
                    .clamp(MIB, 256 * MIB)
                    .min(total_bytes / 8);
                if r == 0 {
                    return Err(BudgetError::SpoolTooSmall { total_bytes });
                }
                r
            }
        };
        let resume_above = marks
            .resume_above
            .unwrap_or_else(|| reserve_below.saturating_mul(2));
        let reclaim_below = marks
            .reclaim_below
            .unwrap_or_else(|| resume_above.saturating_mul(2).max(total_bytes / 20));
        let budget = DiskBudget::new(reserve_below, resume_above, reclaim_below)?;
        if resume_above >= total_bytes {
            return Err(BudgetError::ResumeUnreachable {
                resume_above,
                total_bytes,
            });
        }
        Ok(budget)
    }

    pub const fn reclaim_below(&self) -> u64 {
        self.reclaim_below
    }

    pub const fn reserve_below(&self) -> u64 {
        self.reserve_below
    }

    pub const fn resume_above(&self) -> u64 {
        self.resume_above
    }

    /// What to do, in `state`, with `free_bytes` free (as the budget counts it: see
    /// `JournalReserve::budget_free` in `segment::disk`).
    pub fn decide(&self, state: DiskState, free_bytes: u64) -> Decision {
        let action = match state {
            DiskState::Writing if free_bytes < self.reserve_below => DiskAction::Pause,
            DiskState::Writing => DiskAction::Write,
            DiskState::Paused if free_bytes > self.resume_above => DiskAction::Resume,
            DiskState::Paused => DiskAction::StayPaused,
        };
        Decision {
            action,
            reclaim: free_bytes < self.reclaim_below,
        }
    }

    /// A write failed with `ENOSPC` or `EDQUOT`: the same event as falling below the
    /// reserve, whatever `statvfs` says (quotas and reserved blocks are invisible to it).
    /// Resuming is then up to [`DiskBudget::decide`].
    pub fn on_write_error(&self, state: DiskState) -> Decision {
        let action = match state {
            DiskState::Writing => DiskAction::Pause,
            DiskState::Paused => DiskAction::StayPaused,
        };
        Decision {
            action,
            reclaim: true,
        }
    }

    /// Bytes reclaim should free to bring `free_bytes` back to the reclaim mark.
    pub fn reclaim_need(&self, free_bytes: u64) -> u64 {
        self.reclaim_below.saturating_sub(free_bytes)
    }
}

/// A recording reclaim may consider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimCandidate {
    pub job_id: String,
    /// Delivered to where it no longer needs this copy (the controller acknowledged it).
    /// A recording whose local copy is the only one is never a candidate; pass `false`.
    pub delivered: bool,
    /// When the job reached its terminal state (wall ms).
    pub ended_at_ms: i64,
    /// Bytes deleting it gives back.
    pub bytes: u64,
}

/// Whether a recording that ended at `ended_at_ms` has been kept for `retention_ms` at
/// `now_ms`. A clock that went backwards (an appliance whose clock was unset) keeps it.
pub fn past_retention(ended_at_ms: i64, now_ms: i64, retention_ms: u64) -> bool {
    i128::from(now_ms) - i128::from(ended_at_ms) >= i128::from(retention_ms)
}

/// The recordings to delete to free `need_bytes`: only delivered ones past retention,
/// oldest first (ties by id), stopping as soon as enough is freed. May free less than
/// `need_bytes` when there is not enough to delete.
pub fn reclaim_plan(
    candidates: &[ReclaimCandidate],
    now_ms: i64,
    retention_ms: u64,
    need_bytes: u64,
) -> Vec<String> {
    let mut eligible: Vec<&ReclaimCandidate> = candidates
        .iter()
        .filter(|c| c.delivered && past_retention(c.ended_at_ms, now_ms, retention_ms))
        .collect();
    eligible.sort_by(|a, b| {
        a.ended_at_ms
            .cmp(&b.ended_at_ms)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    let mut freed = 0u64;
    let mut plan = Vec::new();
    for c in eligible {
        if freed >= need_bytes {
            break;
        }
        plan.push(c.job_id.clone());
        freed = freed.saturating_add(c.bytes);
    }
    plan
}

mod look;
pub use look::{MAX_LOOK_EVERY, observed_fill_rate};

#[cfg(test)]
mod tests;
