//! A job's enhanced rendition beside its raw render: `enhanced.<ext>` and its sidecar
//! `enhanced.json` (a [`RenderSidecar`], with `keepRaw`). Best effort, as on Rakkr: an
//! enhancement that cannot be made leaves the sidecar's reason, and the raw render is
//! then delivered as the primary.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Enhancement;
use crate::render::job::{Deliverable, OutputOptions, RenderSidecar};
use crate::render::pipeline::RenderRequest;

/// The sidecar of the enhanced rendition.
pub const ENHANCED_FILE: &str = "enhanced.json";
/// The stem of the enhanced file in the job directory.
pub const ENHANCED_STEM: &str = "enhanced";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnhancedSidecar {
    #[serde(flatten)]
    render: RenderSidecar,
    keep_raw: bool,
}

/// Renders the enhanced rendition the job's `command_json` asks for, if any, from the raw
/// render's `request`. Returns the reason when it was asked for and could not be made.
pub fn render_for_job(
    job_dir: &Path,
    command_json: &str,
    options: &OutputOptions,
    request: &RenderRequest,
) -> std::io::Result<Option<String>> {
    let sidecar = job_dir.join(ENHANCED_FILE);
    let enhancement = match Enhancement::from_command_json(command_json) {
        Ok(None) => return Ok(None),
        // Each chunk carries its renditions (`super::chunk`); options it cannot use are
        // the job's failure, said once.
        Ok(Some(_)) if options.chunk_seconds.is_some() => return Ok(None),
        Ok(Some(e)) => e,
        Err(e) => return failed(&sidecar, e.to_string()),
    };
    let file = format!("{ENHANCED_STEM}.{}", request.codec.extension);
    let report = match super::render(request, &enhancement, &job_dir.join(&file)) {
        Ok(r) => r,
        Err(e) => return failed(&sidecar, format!("enhanced rendition: {e}")),
    };
    let side = EnhancedSidecar {
        render: RenderSidecar {
            file,
            file_name: options.delivered_name(request.codec),
            report: Some(report),
            error: None,
            stream: None,
        },
        keep_raw: enhancement.keep_raw,
    };
    write(&sidecar, &side)?;
    Ok(None)
}

fn failed(sidecar: &Path, reason: String) -> std::io::Result<Option<String>> {
    let side = EnhancedSidecar {
        render: RenderSidecar::failed(&reason),
        keep_raw: true,
    };
    write(sidecar, &side)?;
    Ok(Some(reason))
}

fn write(path: &Path, side: &EnhancedSidecar) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(side).map_err(std::io::Error::other)?;
    crate::render::write_atomically(path, &json)
}

/// The enhanced rendition a job directory holds, and whether the raw one goes too.
pub fn enhanced_deliverable(job_dir: &Path) -> Option<(Deliverable, bool)> {
    let side = read(job_dir)?;
    let report = side.render.report?;
    let path = job_dir.join(&side.render.file);
    path.is_file().then_some((
        Deliverable {
            path,
            file_name: side.render.file_name,
            content_type: report.content_type,
            duration_seconds: report.duration_seconds,
            stream: None,
        },
        side.keep_raw,
    ))
}

/// Why the job's enhancement was not made, when it was asked for and failed.
pub fn enhancement_failure(job_dir: &Path) -> Option<String> {
    read(job_dir)?.render.error
}

fn read(job_dir: &Path) -> Option<EnhancedSidecar> {
    let bytes = std::fs::read(job_dir.join(ENHANCED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
