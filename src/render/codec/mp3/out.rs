//! The joined MP3 stream as it is written: each span's frames (see [`SpanBytes`]) go to
//! the output once, in order, from the join that starts the span to the join that ends
//! it. The head span's last frames before its next join are held in memory ([`HOLD`]
//! frames before the first candidate on), so the bytes the join changes are patched
//! before they are written, never after. The music CRC, the byte count and the frames'
//! bitrates (the tag's TOC) are taken as the bytes go out.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use super::frames::{FrameLog, Header, crc16, kbps};
use super::join::{self, Join};
use super::tag;

/// Frames held back before a join's first candidate: the join reaches back for at most
/// 511 bytes of main-data room (`main_data_begin`'s 9 bits), at least 60 bytes a frame.
pub const HOLD: usize = 16;

/// One span's encoded frames, as its worker sends them.
pub struct SpanBytes {
    pub log: FrameLog,
    /// Global audio frame of log index 1 (log index 0 is LAME's tag frame).
    pub first: usize,
    /// The frames not written yet, from `buf_at` (an offset in the span's stream).
    buf: Vec<u8>,
    buf_at: u64,
    /// The first log index (and its offset) to write: set by the join that starts it.
    kept: usize,
    kept_at: u64,
}

impl SpanBytes {
    pub fn new(first: usize) -> SpanBytes {
        SpanBytes {
            log: FrameLog::default(),
            first,
            buf: Vec::new(),
            buf_at: 0,
            kept: 0,
            kept_at: 0,
        }
    }

    /// Takes the next bytes: `Err` when they are not whole MPEG-1 Layer III frames
    /// without CRCs (the render then takes one span).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.log.feed(bytes)?;
        if self.log.protected {
            return Err("MP3 frames with CRCs".into());
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes in memory.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The log index of global audio frame `g`.
    pub fn index(&self, g: usize) -> usize {
        g + 1 - self.first
    }

    fn bytes(&self, from: usize, to: usize) -> Result<&[u8], String> {
        let (a, b) = (self.log.offset(from), self.log.offset(to));
        let at = |x: u64| usize::try_from(x - self.buf_at).unwrap_or(usize::MAX);
        (a >= self.buf_at)
            .then(|| self.buf.get(at(a)..at(b)))
            .flatten()
            .ok_or_else(|| "span frames no longer in memory".to_string())
    }
}

/// The output: the frames written so far and what the tag needs of them.
pub struct Output {
    file: BufWriter<File>,
    /// Where the tag frame sits (after the ID3v2 tag).
    tag_at: u64,
    crc: u16,
    audio_bytes: u64,
    kbps: Vec<u16>,
}

impl Output {
    /// Writes go to `file` after its `tag_at` bytes (the ID3v2 tag, written already).
    pub fn new(file: File, tag_at: u64) -> Output {
        Output {
            file: BufWriter::with_capacity(256 * 1024, file),
            tag_at,
            crc: 0,
            audio_bytes: 0,
            kbps: Vec::new(),
        }
    }

    /// Writes `span`'s frames from its kept index up to log index `upto` (at most its
    /// last whole frame). Span 0's log index 0 (LAME's blank tag frame) holds the tag's
    /// place.
    pub fn write_frames(&mut self, span: &mut SpanBytes, upto: usize) -> io::Result<()> {
        let upto = upto.min(span.log.frames.len());
        if upto <= span.kept {
            return Ok(());
        }
        let frames = &span.log.frames[span.kept..upto];
        let len: u64 = frames.iter().map(|f| u64::from(f.len)).sum();
        let start = (span.kept_at - span.buf_at) as usize;
        let end = start + len as usize;
        let bytes = &span.buf[start..end];
        self.file.write_all(bytes)?;
        let tag_len = if span.kept == 0 && span.first == 0 {
            usize::from(frames[0].len)
        } else {
            0
        };
        let audio = &bytes[tag_len..];
        self.crc = crc16(self.crc, audio);
        self.audio_bytes += audio.len() as u64;
        let from = usize::from(tag_len > 0);
        self.kbps
            .extend(frames[from..].iter().map(|f| kbps(f.bitrate_index)));
        span.buf.drain(..end);
        // A span kept in memory streams now: give its buffer back, or two spans' worth
        // stay resident while the next one fills.
        if span.buf.capacity() > 1 << 20 && span.buf.len() < span.buf.capacity() / 4 {
            span.buf.shrink_to(span.buf.len().max(64 * 1024));
        }
        span.buf_at += end as u64;
        span.kept = upto;
        span.kept_at += len;
        Ok(())
    }

    /// Joins span `a` (the head, ended) to `b` at the first of `candidates` (global audio
    /// frames, best first) that [`join::choose`] accepts: `a`'s frames to the join go
    /// out, its tail patched with `b`'s reservoir bytes, and `b` is kept from the join on.
    /// `Ok(None)`: no join point.
    pub fn join(
        &mut self,
        a: &mut SpanBytes,
        b: &mut SpanBytes,
        candidates: &[usize],
        payload_start: usize,
    ) -> Result<Option<Join>, String> {
        let Some(j) = join::choose(&a.log, a.first, &b.log, b.first, candidates) else {
            return Ok(None);
        };
        let (end_a, ib) = (a.index(j.frame), b.index(j.frame));
        let pa = join::frames_back(&a.log, end_a, j.free.max(j.reservoir), payload_start);
        if pa < a.kept {
            return Err("the join reaches back past the frames held".into());
        }
        self.write_frames(a, pa).map_err(|e| e.to_string())?;
        let mut tail = a.bytes(pa, end_a)?.to_vec();
        let pb = join::frames_back(&b.log, ib, j.reservoir, payload_start);
        let before = b.bytes(pb, ib)?;
        let positions =
            join::last_payload(before, j.reservoir).ok_or("span 2's reservoir is short")?;
        let reservoir: Vec<u8> = positions.iter().map(|&i| before[i]).collect();
        join::patch_tail(&mut tail, &j, &reservoir)?;
        self.file.write_all(&tail).map_err(|e| e.to_string())?;
        self.crc = crc16(self.crc, &tail);
        self.audio_bytes += tail.len() as u64;
        self.kbps.extend(
            a.log.frames[pa..end_a]
                .iter()
                .map(|f| kbps(f.bitrate_index)),
        );
        if let (Some(r), Some(last)) = (j.raise_to, self.kbps.last_mut()) {
            *last = kbps(r);
        }
        b.kept = ib;
        b.kept_at = b.log.offset(ib);
        Ok(Some(j))
    }

    /// Rewrites `tag_frame` (span 0's, with the last span's `padding`) for the stream
    /// written, puts it in its place and syncs the file.
    pub fn finish(&mut self, mut tag_frame: Vec<u8>, padding: u16) -> Result<(), String> {
        let e = |e: io::Error| e.to_string();
        Header::parse(&tag_frame).ok_or("LAME's tag frame has no header")?;
        tag::rewrite(
            &mut tag_frame,
            &tag::Stream {
                kbps: &self.kbps,
                audio_bytes: self.audio_bytes,
                music_crc: self.crc,
                padding,
            },
        )?;
        self.file.flush().map_err(e)?;
        let file = self.file.get_mut();
        file.seek(SeekFrom::Start(self.tag_at)).map_err(e)?;
        file.write_all(&tag_frame).map_err(e)?;
        file.sync_all().map_err(e)
    }
}
