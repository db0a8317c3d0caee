//! A worker of the N-span MP3 render: it takes span numbers, encodes each span with its
//! own LAME encoder (the render's settings) and sends the frames, in batches, to the
//! thread that writes the output. Peaks and clipping are taken over the span's `keep`
//! range, so each input frame is counted once.

use std::ops::Range;

use crossbeam_channel::{Receiver, Sender};
use mp3lame_encoder::{FlushGap, InterleavedPcm, MonoPcm};

use super::{encode_err, lame};
use crate::render::codec::{CodecError, EncoderParams};
use crate::render::peaks::Peaks;
use crate::render::pipeline::{RenderError, RenderRequest, read_plan_range};

/// Bytes a worker gathers before it sends them (one message per ~0.7 s of V2).
const BATCH: usize = 16 * 1024;

/// One span to encode: its input frames, and those it takes peaks and clipping over.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub range: Range<u64>,
    pub keep: Range<u64>,
}

/// What a span left once its frames are sent.
pub struct SpanEnd {
    /// LAME's Xing/LAME tag frame for the span.
    pub tag: Vec<u8>,
    pub peaks: Peaks,
    pub clipped: u64,
}

/// A worker's messages to the writing thread.
pub enum Msg {
    /// `span`'s next frames; `read`: its input frames read so far.
    Bytes {
        span: usize,
        bytes: Vec<u8>,
        read: u64,
    },
    Done {
        worker: usize,
        span: usize,
        end: Result<SpanEnd, RenderError>,
    },
    /// The worker panicked.
    Lost,
}

/// Sends [`Msg::Lost`] if the worker unwinds, so the writer never waits on it.
struct Guard<'a>(&'a Sender<Msg>);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Msg::Lost); // the writer may be gone already
        }
    }
}

/// Encodes the spans `jobs` names until it closes (or the writer is gone).
pub fn run(
    req: &RenderRequest,
    p: &EncoderParams,
    spans: &[Span],
    worker: usize,
    jobs: Receiver<usize>,
    tx: Sender<Msg>,
) {
    let _guard = Guard(&tx);
    for span in jobs {
        let Some(s) = spans.get(span) else { return };
        let end = encode(req, p, s, span, &tx);
        if tx.send(Msg::Done { worker, span, end }).is_err() {
            return;
        }
    }
}

fn codec_err(source: CodecError) -> RenderError {
    RenderError::Codec {
        codec: "mp3",
        source,
    }
}

fn gone() -> RenderError {
    RenderError::Unsupported("the MP3 writer stopped".into())
}

fn encode(
    req: &RenderRequest,
    p: &EncoderParams,
    span: &Span,
    index: usize,
    tx: &Sender<Msg>,
) -> Result<SpanEnd, RenderError> {
    let (mut lame, ch) = lame(p).map_err(codec_err)?;
    let (keep, range) = (span.keep.clone(), span.range.clone());
    let mut peaks = Peaks::new(p.channels, p.rate, p.frames);
    let (mut clipped, mut at) = (0, range.start);
    let mut batch = Vec::with_capacity(2 * BATCH);
    let send = |batch: &mut Vec<u8>, read: u64, last: bool| {
        let due = batch.len() >= BATCH || (last && !batch.is_empty());
        if !due {
            return Ok(());
        }
        let bytes = std::mem::replace(batch, Vec::with_capacity(2 * BATCH));
        tx.send(Msg::Bytes {
            span: index,
            bytes,
            read,
        })
        .map_err(|_| gone())
    };
    let total = range.end - range.start;
    let mut count = |_: u64, _: u64| {}; // progress goes with the bytes
    read_plan_range(req, range, total, &mut count, &mut |s: &[f32]| {
        let frames = (s.len() / ch) as u64;
        let lo = (keep.start.clamp(at, at + frames) - at) as usize * ch;
        let hi = (keep.end.clamp(at, at + frames) - at) as usize * ch;
        peaks.push(&s[lo..hi]);
        clipped += s[lo..hi]
            .iter()
            .filter(|x| !(-1.0..=1.0).contains(*x))
            .count() as u64;
        at += frames;
        batch.reserve(mp3lame_encoder::max_required_buffer_size(frames as usize));
        if ch == 1 {
            lame.encode_to_vec(MonoPcm(s), &mut batch)
        } else {
            lame.encode_to_vec(InterleavedPcm(s), &mut batch)
        }
        .map_err(|e| codec_err(encode_err(e)))?;
        send(&mut batch, at - span.range.start, false)
    })?;
    batch.reserve(7200 * 2);
    lame.flush_to_vec::<FlushGap>(&mut batch)
        .map_err(|e| codec_err(encode_err(e)))?;
    send(&mut batch, total, true)?;
    let mut tag = Vec::with_capacity(lame.lame_tag_size().max(1));
    lame.lame_tag_encode_to_vec(&mut tag);
    Ok(SpanEnd {
        tag,
        peaks,
        clipped,
    })
}
