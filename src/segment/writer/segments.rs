//! Opening and closing segments: the file is created and made durable before its journal
//! row names it, and the row learns the length when it closes.

use std::time::Instant;

use super::{Writer, WriterError, now_ms};
use crate::core::disk_budget::DiskAction;
use crate::journal::{NewSegment, SegmentState};
use crate::segment::disk;
use crate::segment::file::SegmentFile;
use crate::segment::wav::SegmentIdentity;

pub(super) struct OpenSegment {
    pub file: SegmentFile,
    pub id: i64,
    pub last_row_update: Instant,
    pub last_flush: Instant,
    pub last_sync: Instant,
}

impl Writer {
    pub(super) fn open_segment(&mut self) -> Result<(), WriterError> {
        let name = format!("{:06}.wav", self.next_seq);
        let path = self.cfg.job_dir.join(&name);
        // Self-describing: a lost journal can be rebuilt from the files (repair --rebuild).
        let identity = SegmentIdentity {
            job: self.cfg.job_id.clone(),
            seq: self.next_seq,
            first_frame: self.timeline_pos,
            opened_at_ms: now_ms(),
        };
        let file = match SegmentFile::create_identified(&path, self.cfg.spec, Some(&identity)) {
            Ok(mut file) => {
                file.hold_partial_page(self.hold_pages);
                file
            }
            // No room for a new file is a full disk like a failed write: pause.
            Err(source) if disk::is_disk_full(&source) && self.spool.is_some() => {
                let _ = std::fs::remove_file(&path);
                let action = self.spool.as_mut().expect("checked above").write_failed();
                if action == DiskAction::Pause {
                    self.pause_writing("creating a segment failed: disk full (ENOSPC/EDQUOT)")?;
                }
                return Ok(());
            }
            Err(source) => return Err(WriterError::Segment { path, source }),
        };
        // The file and its directory entry are durable: now the journal may name it.
        let row = NewSegment {
            job_id: self.cfg.job_id.clone(),
            seq: self.next_seq,
            path: name,
            first_frame: self.timeline_pos,
            spec: self.cfg.spec,
            opened_at_ms: now_ms(),
        };
        let Some(id) = self.journaled(|j| j.insert_segment(&row))? else {
            // No room even for the row: the file goes (it holds no audio yet) and the
            // frames become the pause's gap until space returns.
            let _ = std::fs::remove_file(&path);
            return Ok(());
        };
        self.next_seq += 1;
        let now = Instant::now();
        self.current = Some(OpenSegment {
            file,
            id,
            last_row_update: now,
            last_flush: now,
            last_sync: now,
        });
        Ok(())
    }

    pub(super) fn close_segment(&mut self) -> Result<(), WriterError> {
        let Some(seg) = self.current.take() else {
            return Ok(());
        };
        let path = seg.file.path().to_path_buf();
        let frames = seg
            .file
            .close()
            .map_err(|source| WriterError::Segment { path, source })?;
        // Without room for the row, the segment stays `open` in the journal and repair
        // closes it from the file, which is valid up to its last frame.
        self.journaled(|j| j.close_segment(seg.id, frames, SegmentState::Closed, now_ms()))?;
        Ok(())
    }
}
