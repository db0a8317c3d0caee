//! What each PUT sends: renditions, chunks, their order and rows.

use super::*;

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

mod whole {
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
