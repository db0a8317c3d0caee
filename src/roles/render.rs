//! `edgerec render`: renders a finished local job again, with other output options, from
//! its segments and journal (the same plan and pipeline finalize uses). Read-only on the
//! journal; writes only the output file (and its peaks beside it).

use std::path::{Path, PathBuf};

use crate::core::timeline::{self, GapFill, Piece, PlacedSegment};
use crate::journal::{JobRow, Journal, JournalError};
use crate::render::codec::Facts;
use crate::render::enhance::Enhancement;
use crate::render::job::{JobRenderError, OutputOptions};
use crate::render::pipeline::{self, RenderError, RenderReport, RenderRequest};
use crate::render::stitch::StitchError;
use crate::roles::finalize::journal_path;
use crate::segment::wav::parse_header;

#[derive(Debug, thiserror::Error)]
pub enum RenderCmdError {
    #[error(
        "{} is neither an output directory of `edgerec record` (with edgerec.db) nor a job directory inside one",
        .0.display()
    )]
    NotAJob(PathBuf),
    #[error("no job {0:?} in the journal")]
    NoSuchJob(String),
    #[error("job {job} is {state}: render it once it has finished")]
    NotFinished { job: String, state: String },
    #[error("job {0} holds no audio")]
    NoAudio(String),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Options(#[from] JobRenderError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// The journal and job a path names: an output directory (its newest job, or `job`), or a
/// job directory in one.
pub fn locate(path: &Path, job: Option<&str>) -> Result<(Journal, JobRow), RenderCmdError> {
    let (dir, job_id) = if journal_path(path).exists() {
        (path.to_path_buf(), job.map(str::to_string))
    } else if let Some(parent) = path.parent().filter(|p| journal_path(p).exists()) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        (parent.to_path_buf(), job.map(str::to_string).or(name))
    } else {
        return Err(RenderCmdError::NotAJob(path.to_path_buf()));
    };
    let journal = Journal::open_read_only(&journal_path(&dir))?;
    let row = match job_id {
        Some(id) => journal.job(&id)?.ok_or(RenderCmdError::NoSuchJob(id))?,
        None => journal
            .jobs()?
            .into_iter()
            .next()
            .ok_or_else(|| RenderCmdError::NoSuchJob("(newest)".into()))?,
    };
    if !row.state.is_terminal() && row.state != crate::core::job::JobState::Cached {
        return Err(RenderCmdError::NotFinished {
            job: row.id,
            state: row.state.to_string(),
        });
    }
    Ok((journal, row))
}

/// Renders `job` with its own options overridden by `overrides` into `out` (default: the
/// job directory's `<job id>.<ext>`). Returns the output path and the report.
pub fn render_job_dir(
    journal: &Journal,
    job: &JobRow,
    overrides: &OutputOptions,
    enhancement: Option<&Enhancement>,
    out: Option<&Path>,
    fill: GapFill,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(PathBuf, RenderReport), RenderCmdError> {
    let options = merge(
        OutputOptions::from_command_json(&job.command_json),
        overrides,
    );
    let segments = journal.segments(&job.id)?;
    if segments.iter().all(|s| s.frames == 0) {
        return Err(RenderCmdError::NoAudio(job.id.clone()));
    }
    let events = journal.events(&job.id)?;
    let placed: Vec<PlacedSegment<PathBuf>> = segments
        .iter()
        .map(|s| PlacedSegment {
            file: job.dir.join(&s.path),
            first_frame: s.first_frame,
            frames: s.frames,
        })
        .collect();
    let end = timeline::timeline_end(&placed, &events);
    let plan = timeline::stitch_plan(&placed, Some(end), fill);
    let facts = crate::render::job::job_facts(job, job.started_at_ms);
    let request = options.request(plan, job.spec, facts)?;
    let out = out.map_or_else(
        || {
            job.dir
                .join(format!("{}.{}", job.id, request.codec.extension))
        },
        Path::to_path_buf,
    );
    let report = run_render(&request, enhancement, &out, progress)?;
    Ok((out, report))
}

/// Renders a plain WAV file (any PCM or float WAV, e.g. a stitched recording or a test
/// input) through the same pipeline, as one segment.
pub fn render_wav_file(
    input: &Path,
    options: &OutputOptions,
    enhancement: Option<&Enhancement>,
    out: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RenderReport, RenderCmdError> {
    let bad = |source| {
        RenderCmdError::Render(RenderError::Segment(StitchError::BadSegment {
            file: input.to_path_buf(),
            source,
        }))
    };
    let open = |source| {
        RenderCmdError::Render(RenderError::Segment(StitchError::OpenSegment {
            file: input.to_path_buf(),
            source,
        }))
    };
    let mut f = std::fs::File::open(input).map_err(open)?;
    let info = parse_header(&mut f).map_err(bad)?;
    let len = f.metadata().map_err(open)?.len();
    let frames = info
        .frames_in_file(len)
        .0
        .min(info.declared_data_len / info.spec.bytes_per_frame() as u64);
    let plan = vec![Piece::Segment {
        file: input.to_path_buf(),
        skip: 0,
        frames,
    }];
    let facts = Facts {
        job_id: input
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let request = options.request(plan, info.spec, facts)?;
    Ok(run_render(&request, enhancement, out, progress)?)
}

/// The plain render with its peaks, or the enhanced rendition (no progress: two passes).
fn run_render(
    request: &RenderRequest,
    enhancement: Option<&Enhancement>,
    out: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RenderReport, RenderError> {
    match enhancement {
        Some(e) => crate::render::enhance::render(request, e, out),
        None => pipeline::render(request, out, Some(&peaks_path(out)), progress),
    }
}

/// `<out>.peaks.json`.
pub fn peaks_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".peaks.json");
    out.with_file_name(name)
}

/// `base` with every option `over` sets replaced.
fn merge(base: OutputOptions, over: &OutputOptions) -> OutputOptions {
    let o = over.clone();
    OutputOptions {
        output_codec: o.output_codec.or(base.output_codec),
        output_bitrate_kbps: o.output_bitrate_kbps.or(base.output_bitrate_kbps),
        output_vbr: o.output_vbr.or(base.output_vbr),
        output_sample_rate: o.output_sample_rate.or(base.output_sample_rate),
        output_bits: o.output_bits.or(base.output_bits),
        output_file_name: o.output_file_name.or(base.output_file_name),
        capture_channel_selection: o
            .capture_channel_selection
            .or(base.capture_channel_selection),
        channel_map: o.channel_map.or(base.channel_map),
        // `edgerec render` writes one file, whatever the job's chunking.
        chunk_seconds: None,
    }
}
