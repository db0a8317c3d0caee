//! The thread that runs an N-span MP3 render ([`super::split`]): it hands spans to the
//! two workers as the [`Schedule`] allows, feeds their frames to [`SpanBytes`], streams
//! the head into the [`Output`], makes each join as soon as both sides have the frames
//! it needs, and rewrites the tag at the end. Any reason the spans cannot be joined ends
//! it with `None`: the caller renders in one span.

use super::frames::FRAME_SAMPLES;
use super::out::{HOLD, Output, SpanBytes};
use super::sched::Schedule;
use super::split::{CANDIDATES, PRE_ROLL, SPAN_CAP, Spans};
use super::tag;
use super::worker::{Msg, SpanEnd};
use super::{CodecError, EncoderParams};
use crate::render::peaks::Peaks;
use crate::render::pipeline::RenderError;

fn codec_err(source: CodecError) -> RenderError {
    RenderError::Codec {
        codec: "mp3",
        source,
    }
}

fn join_err(e: String) -> RenderError {
    codec_err(CodecError::Encode(format!("joining the MP3 spans: {e}")))
}

/// The thread that hands out spans and writes the stream.
pub struct Writer<'a> {
    spans: &'a Spans,
    sched: Schedule,
    out: Output,
    bytes: Vec<Option<SpanBytes>>,
    /// Input frames read per span, for progress.
    read: Vec<u64>,
    payload_start: usize,
    /// Span 0's tag frame; per span, LAME's (delay, padding).
    tag: Vec<u8>,
    delays: Vec<Option<(u16, u16)>>,
    /// Spans' peaks not yet appended to `all_peaks` (the first `merged` spans').
    peaks: Vec<Option<Peaks>>,
    all_peaks: Option<Peaks>,
    merged: usize,
    clipped: u64,
    frames: u64,
}

/// `Err(None)`: render in one span instead.
type Step = Result<(), Option<RenderError>>;

impl<'a> Writer<'a> {
    pub fn new(spans: &'a Spans, p: &EncoderParams, out: Output) -> Writer<'a> {
        let n = spans.spans.len();
        Writer {
            spans,
            sched: Schedule::new(n),
            out,
            bytes: (0..n).map(|_| None).collect(),
            read: vec![0; n],
            payload_start: 4 + if p.channels == 1 { 17 } else { 32 },
            tag: Vec::new(),
            delays: vec![None; n],
            peaks: (0..n).map(|_| None).collect(),
            all_peaks: None,
            merged: 0,
            clipped: 0,
            frames: p.frames,
        }
    }

    pub fn run(
        mut self,
        rx: crossbeam_channel::Receiver<Msg>,
        jobs: Vec<crossbeam_channel::Sender<usize>>,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Option<(u64, u64, Vec<u8>)>, RenderError> {
        let total: u64 = self
            .spans
            .spans
            .iter()
            .map(|s| s.range.end - s.range.start)
            .sum();
        let mut idle = vec![1, 0];
        let step = loop {
            if let Err(e) = self.assign(&mut idle, &jobs).and_then(|()| self.joins()) {
                break Err(e);
            }
            debug_assert!(
                self.sched.buffered() <= 2,
                "one span in memory, and a start"
            );
            if self.sched.complete() {
                break self.finish();
            }
            let r = match rx.recv() {
                Err(_) => Err(Some(lost())),
                Ok(Msg::Lost) => Err(Some(lost())),
                Ok(Msg::Bytes { span, bytes, read }) => {
                    self.read[span] = read;
                    progress(self.read.iter().sum(), total);
                    self.take_bytes(span, &bytes)
                }
                Ok(Msg::Done { worker, span, end }) => {
                    idle.push(worker);
                    self.span_done(span, end)
                }
            };
            if let Err(e) = r {
                break Err(e);
            }
        };
        match step {
            Ok(()) => {
                progress(total, total);
                let peaks = self.all_peaks.take().map(Peaks::finish).unwrap_or_default();
                Ok(Some((self.frames, self.clipped, peaks)))
            }
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    /// Gives idle workers the spans the schedule lets start.
    fn assign(&mut self, idle: &mut Vec<usize>, jobs: &[crossbeam_channel::Sender<usize>]) -> Step {
        while let Some(&w) = idle.last() {
            let Some(span) = self.sched.take() else {
                break;
            };
            let first = (self.spans.spans[span].range.start / FRAME_SAMPLES) as usize;
            self.bytes[span] = Some(SpanBytes::new(first));
            jobs[w].send(span).map_err(|_| Some(lost()))?;
            idle.pop();
        }
        Ok(())
    }

    fn take_bytes(&mut self, span: usize, bytes: &[u8]) -> Step {
        let head = self.sched.head();
        let Some(b) = self.bytes[span].as_mut() else {
            return Err(Some(join_err(format!(
                "frames for span {span}, not running"
            ))));
        };
        if let Err(e) = b.push(bytes) {
            log::info!("mp3: {e}; encoding in one span");
            return Err(None);
        }
        if span != head && b.held() > SPAN_CAP {
            log::info!("mp3: span {span} passed {SPAN_CAP} B in memory; encoding in one span");
            return Err(None);
        }
        if span == head {
            self.stream_head()?;
        }
        Ok(())
    }

    /// Writes the head's frames up to [`HOLD`] frames before its join's first candidate.
    fn stream_head(&mut self) -> Step {
        let head = self.sched.head();
        let Some(b) = self.bytes[head].as_mut() else {
            return Ok(());
        };
        let upto = match self.spans.joins.get(head) {
            Some(c) => (c.iter().min().copied().unwrap_or(0) + 1)
                .saturating_sub(b.first)
                .saturating_sub(HOLD),
            None => usize::MAX,
        };
        self.out.write_frames(b, upto).map_err(|e| Some(io_err(e)))
    }

    fn span_done(&mut self, span: usize, end: Result<SpanEnd, RenderError>) -> Step {
        let SpanEnd {
            tag,
            peaks,
            clipped,
        } = end.map_err(Some)?;
        let whole = self.bytes[span].as_ref().is_some_and(|b| b.log.is_whole());
        let Ok(delay) = tag::delay_padding(&tag) else {
            log::info!("mp3: span {span} has no LAME tag; encoding in one span");
            return Err(None);
        };
        if !whole {
            log::info!("mp3: span {span} ended inside a frame; encoding in one span");
            return Err(None);
        }
        if span == 0 {
            self.tag = tag;
        }
        self.delays[span] = Some(delay);
        self.clipped += clipped;
        self.peaks[span] = Some(peaks);
        // Peaks in order: each span's onto those before it.
        while let Some(next) = self.peaks.get_mut(self.merged).and_then(Option::take) {
            self.all_peaks = Some(match self.all_peaks.take() {
                Some(a) => a.append(next),
                None => next,
            });
            self.merged += 1;
        }
        self.sched.finished(span);
        if span == self.sched.head() {
            self.stream_head()?;
        }
        Ok(())
    }

    /// Makes the joins that can be made: the head ended, its successor has its first
    /// frames (or ended).
    fn joins(&mut self) -> Step {
        while self.sched.joinable() {
            let h = self.sched.head();
            let need = (PRE_ROLL + CANDIDATES + 2) as usize;
            let ready = self.delays[h + 1].is_some()
                || self.bytes[h + 1]
                    .as_ref()
                    .is_some_and(|b| b.log.frames.len() >= need);
            if !ready {
                return Ok(());
            }
            let (left, right) = self.bytes.split_at_mut(h + 1);
            let (Some(a), Some(b)) = (left[h].as_mut(), right[0].as_mut()) else {
                return Err(Some(join_err("a span's frames are missing".into())));
            };
            let joined = self
                .out
                .join(a, b, &self.spans.joins[h], self.payload_start)
                .map_err(|e| Some(join_err(e)))?;
            let Some(j) = joined else {
                log::info!("mp3: no join point among {CANDIDATES} frames; encoding in one span");
                return Err(None);
            };
            log::debug!(
                "mp3 on two cores: joined at frame {} (free {} B, reservoir {} B, raised to {:?})",
                j.frame,
                j.free,
                j.reservoir,
                j.raise_to
            );
            self.bytes[h] = None;
            self.sched.joined();
            self.stream_head()?;
        }
        Ok(())
    }

    /// The last span's frames out, the tag rewritten for the whole stream.
    fn finish(&mut self) -> Step {
        let delays: Vec<(u16, u16)> = self.delays.iter().flatten().copied().collect();
        if delays.len() != self.delays.len() || delays.iter().any(|d| d.0 != delays[0].0) {
            log::info!("mp3: the spans' encoder delays differ; encoding in one span");
            return Err(None);
        }
        let padding = delays.last().map_or(0, |d| d.1);
        self.out
            .finish(std::mem::take(&mut self.tag), padding)
            .map_err(|e| Some(join_err(e)))
    }
}

fn io_err(e: std::io::Error) -> RenderError {
    codec_err(CodecError::Io(e))
}

fn lost() -> RenderError {
    RenderError::Unsupported("an MP3 span's worker stopped".into())
}
