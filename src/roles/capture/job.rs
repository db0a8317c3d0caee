//! One job's thread: from wherever the journal says the job is (claimed, mid-capture after
//! a crash, captured) to its end, or to a shutdown that leaves it for the next start.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::job_stop::{JobStop, JournalNews, SHUTDOWN};
use super::{CaptureRoleSettings, JobThreadEnd, Waker};
use crate::capture::StopFlag;
use crate::core::job::JobState;
use crate::core::timeline::{EventKind, TimelineEvent};
use crate::journal::{JobRow, JobSource, Journal, JournalError};
use crate::roles::finalize::{self, JobEnd};
use crate::roles::live_chunks::LiveChunks;
use crate::roles::owner::JobLock;
use crate::roles::repair::{self, RepairSummary};
use crate::roles::runner::{self, CaptureOutcome};
use crate::segment::writer::{GapSince, ResumeGap, now_ms};

/// `news`: the role loop's word that the journal may hold a stop for the job; it can
/// reach the thread when the loop has a waker (its datagram socket). `journal`: the
/// thread's connection, a sibling of the role loop's (checked once, when the role opened).
pub(super) fn spawn_job(
    settings: CaptureRoleSettings,
    journal: Result<Journal, JournalError>,
    job: JobRow,
    lock: JobLock,
    shutdown: StopFlag,
    (waker, news): (Option<Waker>, Arc<JournalNews>),
) -> JoinHandle<JobThreadEnd> {
    std::thread::Builder::new()
        .name(format!(
            "edgerec-job-{}",
            &job.id[job.id.len().saturating_sub(8)..]
        ))
        .spawn(move || {
            let _lock = lock; // held until the thread ends
            let stops = JobStops {
                shutdown: &shutdown,
                news,
                news_reaches_us: waker.is_some(),
            };
            let end = match journal
                .map_err(JobError::from)
                .and_then(|journal| run_one(journal, &settings, &job, stops))
            {
                Ok(end) => end,
                Err(e) => JobThreadEnd::Failed(e.to_string(), e.is_disk_full()),
            };
            // The role loop reaps it now rather than at its next scan.
            if let Some(wake) = waker {
                wake();
            }
            end
        })
        .expect("spawn job thread")
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Run(#[from] runner::RunError),
    #[error("repair: {0}")]
    Repair(#[from] repair::RepairError),
    #[error("finalize: {0}")]
    Finalize(#[from] finalize::FinalizeError),
}

impl JobError {
    /// A full disk: the job waits for space rather than using up its attempts.
    fn is_disk_full(&self) -> bool {
        use crate::segment::disk::is_journal_disk_full;
        match self {
            JobError::Journal(e) | JobError::Run(runner::RunError::Journal(e)) => {
                is_journal_disk_full(e)
            }
            JobError::Finalize(e) | JobError::Repair(repair::RepairError::Finalize(e)) => {
                e.is_disk_full()
            }
            JobError::Repair(repair::RepairError::Journal(e)) => is_journal_disk_full(e),
            _ => false,
        }
    }
}

/// What can stop a job thread's capture: the role's shutdown, and the journal's stop.
struct JobStops<'a> {
    shutdown: &'a StopFlag,
    news: Arc<JournalNews>,
    news_reaches_us: bool,
}

/// Drives one job from wherever the journal says it is to its end (or to a shutdown).
fn run_one(
    mut journal: Journal,
    settings: &CaptureRoleSettings,
    job: &JobRow,
    stops: JobStops<'_>,
) -> Result<JobThreadEnd, JobError> {
    let mut resume = None;
    if let Some(leader) = journal.group_leader(&job.id)?
        && leader != job.id
    {
        // A member whose leader's capture is over: render it from the leader's segments.
        let how = JobEnd::new("captured by its capture group's leader");
        return finish(&mut journal, &job.id, &how, settings);
    }
    match job.state {
        JobState::Captured | JobState::Rendering => {
            return finish(&mut journal, &job.id, &JobEnd::new("captured"), settings);
        }
        JobState::Claimed => {
            // The job and its group's members in one commit.
            journal.atomically(|j| {
                j.set_job_state(&job.id, JobState::Capturing, None, now_ms())?;
                for member in j.group_members(&job.id)? {
                    j.set_job_state_if(
                        &member,
                        JobState::Claimed,
                        JobState::Capturing,
                        None,
                        now_ms(),
                    )?;
                }
                Ok(())
            })?;
        }
        _ => match after_a_crash(&mut journal, job)? {
            CrashedJob::WindowClosed => {
                // Capture ended early: the recording ends at its last captured frame.
                let how = JobEnd::new("window_closed_while_down");
                return finish(&mut journal, &job.id, &how, settings);
            }
            CrashedJob::Resume(gap) => resume = gap,
        },
    }
    let job = journal.job(&job.id)?.unwrap_or_else(|| job.clone());
    let stop = JobStop::new(
        stops.shutdown.clone(),
        journal.sibling()?,
        job.id.clone(),
        stops.news,
        stops.news_reaches_us,
    );
    let chunker = LiveChunks::start(&journal, &job, &settings.run, settings.gap_fill);
    let result = runner::run_job(&mut journal, &job, &settings.run, &stop, resume);
    let shutting_down =
        matches!(&result, Ok(r) if r.outcome == CaptureOutcome::Stopped(SHUTDOWN.into()));
    if let Some(chunker) = chunker {
        chunker.stop(!shutting_down);
    }
    let result = result?;
    if shutting_down {
        log::info!(
            "{}: segments closed for shutdown; the next start resumes the job",
            job.id
        );
        return Ok(JobThreadEnd::LeftForRestart(job.id.clone()));
    }
    // `captured` is committed with the start of rendering, in one commit.
    let how = JobEnd {
        cause: result.outcome.cause(),
        ended_at_ms: result.ended_at_ms,
        total_frames: result.total_frames,
        capture_failed: result.outcome.is_failure(),
        no_stitch: false,
        mark_captured: true,
    };
    finish(&mut journal, &job.id, &how, settings)
}

/// What a job a previous owner left mid-capture comes to.
enum CrashedJob {
    /// Its window closed (or it was stopping) while no one captured: it is `captured`.
    WindowClosed,
    /// Capture resumes; the gap since the last write, once the job has started.
    Resume(Option<ResumeGap>),
}

/// A previous owner died mid-capture: repair what it left, then resume or end.
fn after_a_crash(journal: &mut Journal, job: &JobRow) -> Result<CrashedJob, JobError> {
    let mut repaired = RepairSummary::default();
    let last_write_ms = repair::reconcile_job_segments(journal, job, &mut repaired)?;
    let job = journal.job(&job.id)?.unwrap_or_else(|| job.clone());
    let window_open = runner::window_end(&job).is_none_or(|end| now_ms() < end);
    if !window_open || job.state == JobState::Stopping {
        let (end, _) = runner::timeline_position(journal, &job.id)?;
        let gap = repair::crash_gap_frames(&job, end, last_write_ms, now_ms());
        let ev = TimelineEvent::new(EventKind::CrashRecovered, end, now_ms())
            .with_gap(gap)
            .with_detail(repair::crash_detail(&job, end, gap));
        journal.atomically(|j| {
            j.add_event(&job.id, &ev)?;
            j.set_job_state(&job.id, JobState::Captured, None, now_ms())
        })?;
        return Ok(CrashedJob::WindowClosed);
    }
    log::warn!(
        "{}: resuming capture after a crash or restart (last write {} ms ago)",
        job.id,
        now_ms() - last_write_ms
    );
    Ok(CrashedJob::Resume(job.started_at_ms.is_some().then(|| {
        ResumeGap {
            since: GapSince::WallMs(last_write_ms),
            kind: EventKind::CrashRecovered,
            detail: "capture resumed after a crash or restart".into(),
        }
    })))
}

fn finish(
    journal: &mut Journal,
    job_id: &str,
    how: &JobEnd,
    settings: &CaptureRoleSettings,
) -> Result<JobThreadEnd, JobError> {
    let job = journal.job(job_id)?.ok_or_else(|| JournalError::Corrupt {
        what: format!("job {job_id} vanished"),
    })?;
    // The capture that serves this job: its own, or its group leader's.
    let source = match journal.group_leader(job_id)? {
        Some(leader) if leader != job_id => journal.job(&leader)?.unwrap_or_else(|| job.clone()),
        _ => job.clone(),
    };
    if !job.state.is_terminal() && job.state != JobState::Cached {
        let done = finalize::finalize_from(journal, &job, &source, how, settings.gap_fill)?;
        if job.source == JobSource::Controller {
            log::info!("{job_id}: rendered; the sync role delivers it");
        }
        // One capture, every member rendered with its own channels.
        if source.id == job.id {
            for member in journal.group_members(job_id)? {
                match journal.job(&member)? {
                    Some(m) if !m.state.is_terminal() && m.state != JobState::Cached => {
                        // A member never ran on its own: its directory may not exist yet.
                        let rendered = std::fs::create_dir_all(&m.dir)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                finalize::finalize_from(journal, &m, &job, how, settings.gap_fill)
                                    .map_err(|e| e.to_string())
                            });
                        match rendered {
                            Ok(_) => log::info!("{member}: rendered from {job_id}'s capture"),
                            // The janitor renders it on its next pass.
                            Err(e) => {
                                log::error!("{member}: rendering from {job_id}'s capture: {e}")
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        return Ok(JobThreadEnd::Finalized(Box::new(done)));
    }
    Ok(JobThreadEnd::Failed(
        format!("{job_id} is already {}", job.state),
        false,
    ))
}
