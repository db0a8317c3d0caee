//! What one cache-file PUT sends: the whole rendered recording, or, for a chunked job, the
//! first chunk the controller has not acknowledged (the journal's `uploads` table), so a
//! restart resumes at chunk granularity. Name, type and duration come from the render's
//! sidecars, so they agree with the bytes.
//!
//! A job with an enhanced rendition sends the raw render first (`rendition=raw`, when
//! `keepRaw`), then the enhanced one (`rendition=enhanced`), the primary that completes the
//! job: after it the controller has decided, so nothing is left to send. (Rakkr also takes
//! a raw PUT for a completed job, but a failed or cancelled one refuses it.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::output_file_name;
use crate::controller::client::Rendition;
use crate::core::job_machine::RenderedFile;
use crate::journal::JobRow;
use crate::render::chunks::Chunks;
use crate::render::enhance::job::enhanced_deliverable;

/// One PUT's body and headers.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sending {
    /// The bytes: a file of known length.
    pub path: PathBuf,
    pub file_name: String,
    pub mime_type: String,
    pub duration_seconds: f64,
    /// `(index, total)` for a chunk; the final one carries `chunkTotal`. The total is
    /// unknown (`None`) for a chunk sent while the job captures: never the final one.
    pub chunk: Option<(u32, Option<u32>)>,
    pub rendition: Option<Rendition>,
    /// A chunk sent as rendered because its enhancement could not be made: why.
    pub enhancement_error: Option<String>,
}

pub(super) use crate::journal::RAW_ROW;

impl Sending {
    /// The chunk index (0 for a whole recording).
    pub fn chunk_index(&self) -> u32 {
        self.chunk.map_or(0, |(i, _)| i)
    }

    /// The `uploads` row this PUT acknowledges.
    pub fn upload_row(&self) -> u32 {
        match self.rendition {
            Some(Rendition::Raw) => RAW_ROW + self.chunk_index(),
            _ => self.chunk_index(),
        }
    }

    /// A chunk before the last, or the supplementary raw rendition: its acknowledgement
    /// does not complete the job.
    pub fn is_partial(&self) -> bool {
        self.rendition == Some(Rendition::Raw)
            || self
                .chunk
                .is_some_and(|(i, total)| total.is_none_or(|t| i + 1 < t))
    }

    /// A chunk sent while the job captures: its own outbox row, done once acknowledged.
    pub fn is_live(&self) -> bool {
        self.chunk.is_some_and(|(_, total)| total.is_none())
    }

    pub fn chunk_total(&self) -> Option<u32> {
        if self.rendition == Some(Rendition::Raw) {
            return None;
        }
        self.chunk
            .and_then(|(i, total)| total.filter(|&t| i + 1 == t))
    }
}

/// An upload row's body for one chunk rendered while the job captures (the job's own
/// upload row holds its [`RenderedFile`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct LiveChunk {
    pub chunk: u32,
}

impl LiveChunk {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Option<LiveChunk> {
        serde_json::from_str(body).ok()
    }

    /// What its PUT sends: the chunk as `chunks.json` lists it so far, no `chunkTotal`;
    /// its raw rendition first, until `acked` has it.
    pub fn sending(&self, job: &JobRow, acked: &HashSet<u32>) -> Option<Sending> {
        let listed = Chunks::read_so_far(&job.dir)?;
        chunk_sending(job, &listed, self.chunk, None, acked)
    }
}

/// Chunk `index` of `listed` (`total` with the final one): its raw rendition while it has
/// one `acked` lacks, else the primary (enhanced, or as rendered).
fn chunk_sending(
    job: &JobRow,
    listed: &Chunks,
    index: u32,
    total: Option<u32>,
    acked: &HashSet<u32>,
) -> Option<Sending> {
    let part = listed.chunks.get(index as usize)?;
    let raw = part
        .raw_file
        .as_ref()
        .filter(|_| !acked.contains(&(RAW_ROW + index)));
    let (file, rendition) = match (raw, part.enhanced_gain) {
        (Some(raw), _) => (raw, Some(Rendition::Raw)),
        (None, Some(_)) => (&part.file, Some(Rendition::Enhanced)),
        (None, None) => (&part.file, None),
    };
    Some(Sending {
        path: job.dir.join(file),
        file_name: part.file_name.clone(),
        mime_type: listed.content_type.clone(),
        duration_seconds: part.duration_seconds,
        chunk: Some((index, total)),
        rendition,
        enhancement_error: part.enhancement_error.clone(),
    })
}

/// What to send next for `job`, whose render is `file`; `acked` are the `uploads` rows the
/// controller acknowledged. A chunk's raw rendition goes before its primary, so the final
/// primary chunk, which completes the job, goes last. When every chunk is acknowledged,
/// the last is sent again (a repeated PUT is idempotent) so the job machine hears the
/// final answer.
pub(super) fn next_sending(job: &JobRow, file: &RenderedFile, acked: &HashSet<u32>) -> Sending {
    if let Some(chunks) = Chunks::read(&job.dir) {
        let total = chunks.chunks.len() as u32;
        let index = (0..total)
            .find(|&i| !acked.contains(&i))
            .unwrap_or(total - 1);
        if let Some(sending) = chunk_sending(job, &chunks, index, Some(total), acked) {
            return sending;
        }
    }
    let Some((enhanced, keep_raw)) = enhanced_deliverable(&job.dir) else {
        return whole(job, file);
    };
    if keep_raw && !acked.contains(&RAW_ROW) {
        return Sending {
            rendition: Some(Rendition::Raw),
            ..whole(job, file)
        };
    }
    Sending {
        path: enhanced.path,
        file_name: enhanced.file_name,
        mime_type: enhanced.content_type,
        duration_seconds: enhanced.duration_seconds,
        chunk: None,
        rendition: Some(Rendition::Enhanced),
        enhancement_error: None,
    }
}

/// The whole rendered recording, as the render's sidecar describes it.
fn whole(job: &JobRow, file: &RenderedFile) -> Sending {
    let delivered = crate::render::job::deliverable(&job.dir);
    Sending {
        path: file.path.clone(),
        file_name: delivered
            .as_ref()
            .map_or_else(|| output_file_name(job), |d| d.file_name.clone()),
        mime_type: delivered
            .as_ref()
            .map_or_else(|| "audio/wav".to_string(), |d| d.content_type.clone()),
        duration_seconds: delivered.as_ref().map_or(0.0, |d| d.duration_seconds),
        chunk: None,
        rendition: None,
        enhancement_error: None,
    }
}

/// `path` as the `uploads` table records it: relative to the job's directory.
pub(super) fn relative<'a>(job_dir: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(job_dir)
        .ok()
        .or_else(|| path.file_name().map(Path::new))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::core::format::{SampleFormat, StreamSpec};
    use crate::core::job::JobState;
    use crate::journal::JobSource;

    pub(super) fn job(dir: &Path) -> JobRow {
        JobRow {
            id: "a".into(),
            source: JobSource::Controller,
            controller_job_id: Some("job_1".into()),
            recording_id: Some("rec_1".into()),
            command_json: "{}".into(),
            backend: "alsa".into(),
            device: "d".into(),
            spec: StreamSpec {
                format: SampleFormat::S16Le,
                rate: 48_000,
                channels: 2,
            },
            duration_frames: None,
            dir: dir.to_path_buf(),
            state: JobState::Uploading,
            end_cause: None,
            created_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            updated_at_ms: 0,
            captured_frames: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::job;
    use super::*;

    fn sidecar(file: &str, extra: &str) -> String {
        format!(
            r#"{{"file": "{file}", "fileName": "talk.flac", {extra} "report": {{"codec": "flac",
            "contentType": "audio/flac", "rate": 48000, "channels": 2, "bits": 16, "frames": 96000,
            "durationSeconds": 2.0, "bytes": 4, "sha256": "00", "clipped": 0}}}}"#
        )
    }

    #[test]
    fn the_raw_rendition_goes_first_then_the_enhanced_primary() {
        let raw = (Some(Rendition::Raw), "recording.flac", true, RAW_ROW);
        let primary = (Some(Rendition::Enhanced), "enhanced.flac", false, 0);
        let plain = (None, "recording.flac", false, 0);
        // (enhanced.json, acknowledged rows, expected (rendition, file, partial, row))
        let enhanced = |keep: bool| sidecar("enhanced.flac", &format!(r#""keepRaw": {keep},"#));
        let failed = r#"{"file": "", "fileName": "", "error": "bad", "keepRaw": true}"#;
        let cases = [
            (Some(enhanced(true)), vec![], raw),
            (Some(enhanced(true)), vec![RAW_ROW], primary),
            (Some(enhanced(false)), vec![], primary),
            (Some(failed.to_string()), vec![], plain),
            (None, vec![], plain),
        ];
        for (side, acked, (rendition, file, partial, row)) in cases {
            let dir = tempfile::tempdir().unwrap();
            for f in ["recording.flac", "enhanced.flac"] {
                std::fs::write(dir.path().join(f), b"fLaC").unwrap();
            }
            std::fs::write(
                dir.path().join("render.json"),
                sidecar("recording.flac", ""),
            )
            .unwrap();
            if let Some(s) = &side {
                std::fs::write(dir.path().join("enhanced.json"), s).unwrap();
            }
            let rendered = RenderedFile {
                path: dir.path().join("recording.flac"),
                sha256: "00".into(),
                bytes: 4,
            };
            let acked: HashSet<u32> = acked.into_iter().collect();
            let s = next_sending(&job(dir.path()), &rendered, &acked);
            let what = format!("{side:?} {acked:?}");
            assert_eq!(s.rendition, rendition, "{what}");
            assert_eq!(s.path, dir.path().join(file), "{what}");
            assert_eq!((s.is_partial(), s.upload_row()), (partial, row), "{what}");
            assert_eq!(
                (s.file_name.as_str(), s.mime_type.as_str()),
                ("talk.flac", "audio/flac")
            );
            assert_eq!(s.chunk_total(), None);
        }
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::tests_support::job;
    use super::*;
    use crate::render::chunks::{ChunkFile, Chunks};

    #[test]
    fn a_chunk_sent_while_capturing_never_carries_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let listed = Chunks {
            content_type: "audio/flac".into(),
            chunks: (0..2)
                .map(|i| ChunkFile {
                    file: crate::render::chunks::chunk_file(i, "flac"),
                    file_name: crate::render::chunks::chunk_name("hall.flac", i),
                    duration_seconds: 10.0,
                    ..ChunkFile::default()
                })
                .collect(),
            complete: false,
        };
        listed.write(dir.path()).unwrap();
        let job = job(dir.path());
        // The job's own upload row waits for the complete list.
        assert_eq!(Chunks::read(dir.path()), None);
        let body = LiveChunk { chunk: 1 }.body();
        let live = LiveChunk::parse(&body)
            .unwrap()
            .sending(&job, &HashSet::new())
            .unwrap();
        assert_eq!(live.path, dir.path().join("chunks/chunk-0001.flac"));
        assert_eq!(
            (live.file_name.as_str(), live.mime_type.as_str()),
            ("hall-001.flac", "audio/flac")
        );
        assert_eq!(
            (live.is_live(), live.is_partial(), live.chunk_total()),
            (true, true, None)
        );
        assert_eq!(live.upload_row(), 1);
        assert!(
            LiveChunk { chunk: 2 }
                .sending(&job, &HashSet::new())
                .is_none(),
            "not listed yet"
        );
        // The job's own row holds a rendered file, never a chunk number.
        let file = r#"{"path": "/x/chunks.json", "sha256": "00", "bytes": 4}"#;
        assert!(LiveChunk::parse(file).is_none());
        // At the end: the final chunk carries the total, the others do not.
        let end = |i, t| Sending {
            chunk: Some((i, Some(t))),
            ..live.clone()
        };
        assert_eq!(
            (end(2, 3).is_partial(), end(2, 3).chunk_total()),
            (false, Some(3))
        );
        assert_eq!(
            (end(1, 3).is_partial(), end(1, 3).chunk_total()),
            (true, None)
        );
        assert!(!end(2, 3).is_live());
    }
}

#[cfg(test)]
mod rendition_tests {
    use super::tests_support::job;
    use super::*;
    use crate::render::chunks::{ChunkFile, Chunks, chunk_file};
    use crate::render::enhance::chunk::enhanced_file;

    /// Each chunk's raw rendition goes before its primary, live or at the end, and only the
    /// final primary carries the total; a chunk whose enhancement failed goes as rendered.
    #[test]
    fn each_chunk_sends_raw_then_its_enhanced_primary_the_last_one_last() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |i: usize, enhanced: bool| ChunkFile {
            file: match enhanced {
                true => enhanced_file(i, "flac"),
                false => chunk_file(i, "flac"),
            },
            file_name: format!("hall-{i:03}.flac"),
            duration_seconds: 2.0,
            enhanced_gain: enhanced.then_some(0.5),
            raw_file: enhanced.then(|| chunk_file(i, "flac")),
            enhancement_error: (!enhanced).then(|| "no".to_string()),
        };
        let listed = Chunks {
            content_type: "audio/flac".into(),
            chunks: vec![chunk(0, true), chunk(1, false), chunk(2, true)],
            complete: true,
        };
        listed.write(dir.path()).unwrap();
        let job = job(dir.path());
        let file = RenderedFile {
            path: dir.path().join("chunks.json"),
            sha256: "00".into(),
            bytes: 4,
        };
        let (raw, enh) = (Some(Rendition::Raw), Some(Rendition::Enhanced));
        // (acknowledged rows, expected (chunk, rendition, file, total, uploads row))
        let cases = [
            (vec![], (0, raw, chunk_file(0, "flac"), None, RAW_ROW)),
            (vec![RAW_ROW], (0, enh, enhanced_file(0, "flac"), None, 0)),
            (vec![RAW_ROW, 0], (1, None, chunk_file(1, "flac"), None, 1)),
            (
                vec![RAW_ROW, 0, 1],
                (2, raw, chunk_file(2, "flac"), None, RAW_ROW + 2),
            ),
            (
                vec![RAW_ROW, 0, 1, RAW_ROW + 2],
                (2, enh, enhanced_file(2, "flac"), Some(3), 2),
            ),
        ];
        for (acked, (index, rendition, path, total, row)) in cases {
            let acked: HashSet<u32> = acked.into_iter().collect();
            let s = next_sending(&job, &file, &acked);
            let what = format!("{acked:?}");
            assert_eq!(s.chunk.map(|c| c.0), Some(index), "{what}");
            assert_eq!((s.rendition, &s.path), (rendition, &dir.path().join(path)));
            assert_eq!((s.chunk_total(), s.upload_row()), (total, row), "{what}");
            assert_eq!(s.is_partial(), total.is_none(), "{what}");
            assert_eq!(s.enhancement_error.is_some(), index == 1, "{what}");
            assert_eq!(s.file_name, format!("hall-{index:03}.flac"));
            // While capturing, the same order on the chunk's own row, never a total.
            let live = LiveChunk { chunk: index }.sending(&job, &acked).unwrap();
            assert_eq!((live.rendition, live.upload_row()), (rendition, row));
            assert_eq!((live.chunk_total(), live.is_live()), (None, true));
        }
    }
}
