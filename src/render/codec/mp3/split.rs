//! MP3 on two cores: the input in two spans, encoded at once by two LAME encoders with
//! the same settings, joined into one stream (see [`super::join`]). Span 1 runs from the
//! start to a little past the middle (or the point that leaves span 2 within
//! [`SPAN2_BUDGET`]); span 2 starts [`PRE_ROLL`] frames before the first
//! join candidate, on span 1's frame grid, so its encoder has settled (psychoacoustics,
//! MDCT overlap) by the join and its frames there are the ones one encoder makes, near
//! enough. Span 1 streams into the output; span 2 is kept in memory and written once,
//! after the join, so no byte reaches the flash twice. Peaks and clipping are taken once: span 1 up to
//! a pixel boundary in the overlap, span 2 from it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mp3lame_encoder::{FlushGap, InterleavedPcm, MonoPcm};

use super::frames::{FRAME_SAMPLES, FrameLog, Header, crc16, crc16_zeros, kbps};
use super::join::{self, Join};
use super::tag;
use super::{encode_err, id3v2, lame};
use crate::render::codec::{CodecError, EncoderParams};
use crate::render::peaks::Peaks;
use crate::render::pipeline::{RenderError, RenderRequest, read_plan_range};

/// Frames span 2 encodes before its first join candidate.
const PRE_ROLL: u64 = 16;
/// Join points tried, around the middle.
const CANDIDATES: u64 = 32;
/// Frames span 1 encodes past the last candidate (LAME looks ahead).
const LOOK_AHEAD: u64 = 4;
/// Shorter inputs take one span.
const MIN_SECONDS: u64 = 30;
/// Span 2's MP3 at its preset's typical bitrate must fit this (16 MiB: ~11 min of V2
/// input); longer inputs give span 2 that much and span 1 the rest. The buffer is capped
/// at [`SPAN2_CAP`] as VBR runs above typical (speech and noise at V2: 237 kbps).
const SPAN2_BUDGET: u64 = 16 << 20;
const SPAN2_CAP: usize = 32 << 20;

/// The most input frames span 2 takes at `rate` and `kbps` (typical) within the budget.
pub fn span2_max_frames(rate: u32, kbps: u32) -> u64 {
    let frames = u128::from(SPAN2_BUDGET) * 8 * u128::from(rate) / (u128::from(kbps.max(1)) * 1000);
    u64::try_from(frames).unwrap_or(u64::MAX)
}

/// Where the spans run, in input frames (the output's: MP3 spans never resample).
#[derive(Clone, Debug, PartialEq)]
pub struct Spans {
    /// Span 1: `0..end1`; span 2: `start2..frames`.
    pub end1: u64,
    pub start2: u64,
    /// Peaks and clipping: span 1 below, span 2 from.
    pub handover: u64,
    /// Global audio frames to join at, best first.
    pub candidates: Vec<usize>,
}

/// The two spans of a `frames`-long render at `rate` and `kbps` (typical), or `None` for
/// one span: they meet in the middle, or span 2 is the last [`span2_max_frames`].
pub fn plan(
    frames: u64,
    (rate, kbps): (u32, u32),
    samples_per_pixel: u64,
    cores: usize,
) -> Option<Spans> {
    if cores < 2 || frames < MIN_SECONDS * u64::from(rate) || !(32_000..=48_000).contains(&rate) {
        return None;
    }
    let meet = (frames / 2).max(frames.saturating_sub(span2_max_frames(rate, kbps)));
    let first = (meet / FRAME_SAMPLES).checked_sub(CANDIDATES / 2)?;
    let start2 = first.checked_sub(PRE_ROLL)? * FRAME_SAMPLES;
    let end1 = ((first + CANDIDATES + LOOK_AHEAD + 1) * FRAME_SAMPLES).min(frames);
    let handover = first * FRAME_SAMPLES / samples_per_pixel * samples_per_pixel;
    if handover < start2 {
        return None; // pixels wider than the overlap (days-long inputs)
    }
    let mid = first + CANDIDATES / 2;
    let mut candidates: Vec<usize> = (first..first + CANDIDATES).map(|g| g as usize).collect();
    candidates.sort_by_key(|&g| (g as u64).abs_diff(mid));
    Some(Spans {
        end1,
        start2,
        handover,
        candidates,
    })
}

/// One span's encode.
struct SpanOut<W> {
    out: W,
    log: FrameLog,
    tag: Vec<u8>,
    peaks: Peaks,
    clipped: u64,
}

fn codec_err(source: CodecError) -> RenderError {
    RenderError::Codec {
        codec: "mp3",
        source,
    }
}

fn io_err(e: io::Error) -> RenderError {
    codec_err(CodecError::Io(e))
}

/// Where a span's frames go: the output file, or memory up to a cap.
trait SpanSink {
    /// `false` when the bytes would pass the cap.
    fn put(&mut self, bytes: &[u8]) -> io::Result<bool>;
}

impl SpanSink for BufWriter<File> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<bool> {
        self.write_all(bytes).map(|()| true)
    }
}

impl SpanSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<bool> {
        if self.len() + bytes.len() > SPAN2_CAP {
            return Ok(false);
        }
        self.extend_from_slice(bytes);
        Ok(true)
    }
}

/// Encodes the plan's `range` into `out`, with peaks and clipping over `keep`; `None`
/// when the frames cannot be joined or pass the sink's cap.
fn encode_span<W: SpanSink>(
    req: &RenderRequest,
    p: &EncoderParams,
    range: Range<u64>,
    keep: Range<u64>,
    mut out: W,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Option<SpanOut<W>>, RenderError> {
    let (mut lame, ch) = lame(p).map_err(codec_err)?;
    let mut peaks = Peaks::new(p.channels, p.rate, p.frames);
    let (mut log, mut buf, mut clipped, mut at) = (FrameLog::default(), Vec::new(), 0, range.start);
    // LAME chose frames this module does not join (MPEG-2 at a low preset, say): the
    // first output says so, and the caller renders in one span.
    let unjoinable = std::cell::Cell::new(false);
    let put = |buf: &[u8], log: &mut FrameLog, out: &mut W| {
        if log.feed(buf).is_err() || !out.put(buf).map_err(io_err)? {
            unjoinable.set(true);
            return Err(codec_err(CodecError::Unsupported("unjoinable".into())));
        }
        Ok(())
    };
    let total = range.end - range.start;
    let read = read_plan_range(req, range, total, progress, &mut |s: &[f32]| {
        let frames = (s.len() / ch) as u64;
        let lo = (keep.start.clamp(at, at + frames) - at) as usize * ch;
        let hi = (keep.end.clamp(at, at + frames) - at) as usize * ch;
        peaks.push(&s[lo..hi]);
        clipped += s[lo..hi]
            .iter()
            .filter(|x| !(-1.0..=1.0).contains(*x))
            .count() as u64;
        at += frames;
        buf.clear();
        buf.reserve(mp3lame_encoder::max_required_buffer_size(frames as usize));
        if ch == 1 {
            lame.encode_to_vec(MonoPcm(s), &mut buf)
        } else {
            lame.encode_to_vec(InterleavedPcm(s), &mut buf)
        }
        .map_err(|e| codec_err(encode_err(e)))?;
        put(&buf, &mut log, &mut out)
    });
    let flushed = read.and_then(|()| {
        buf.clear();
        buf.reserve(7200 * 2);
        lame.flush_to_vec::<FlushGap>(&mut buf)
            .map_err(|e| codec_err(encode_err(e)))?;
        put(&buf, &mut log, &mut out)
    });
    match flushed {
        Err(_) if unjoinable.get() => return Ok(None),
        r => r?,
    }
    let mut tag = Vec::with_capacity(lame.lame_tag_size().max(1));
    lame.lame_tag_encode_to_vec(&mut tag);
    if !log.is_whole() || log.protected || tag.is_empty() {
        return Ok(None);
    }
    Ok(Some(SpanOut {
        out,
        log,
        tag,
        peaks,
        clipped,
    }))
}

/// Renders `req` as two spans into `partial`: `(frames, clipped, peaks JSON)`, or `None`
/// when span 2 passed its cap or no join point was found (the caller renders it in one
/// span).
pub fn render(
    req: &RenderRequest,
    p: &EncoderParams,
    spans: &Spans,
    partial: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Option<(u64, u64, Vec<u8>)>, RenderError> {
    let id3 = id3v2(&p.facts, p.rate);
    let file1 = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(partial)
        .map_err(io_err)?;
    let total = spans.end1 + (p.frames - spans.start2);
    let done2 = AtomicU64::new(0);
    let (one, two) = std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("render-mp3-2".into())
            .spawn_scoped(s, || {
                let mut count = |d: u64, _: u64| done2.store(d, Ordering::Relaxed);
                let keep = spans.handover..p.frames;
                encode_span(req, p, spans.start2..p.frames, keep, Vec::new(), &mut count)
            })
            .map_err(io_err)?;
        let mut count = |d: u64, _: u64| progress(d + done2.load(Ordering::Relaxed), total);
        let mut out1 = BufWriter::with_capacity(256 * 1024, file1);
        let one = out1
            .write_all(&id3)
            .map_err(io_err)
            .and_then(|()| encode_span(req, p, 0..spans.end1, 0..spans.handover, out1, &mut count));
        let two = worker.join().unwrap_or_else(|_| {
            Err(RenderError::Unsupported(
                "the second MP3 span panicked".into(),
            ))
        });
        Ok::<_, RenderError>((one?, two?))
    })?;
    let (Some(one), Some(two)) = (one, two) else {
        return Ok(None);
    };
    let first2 = (spans.start2 / FRAME_SAMPLES) as usize;
    let Some(j) = join::choose(&one.log, &two.log, first2, &spans.candidates) else {
        log::info!(
            "mp3: no join point among {} frames; encoding in one span",
            CANDIDATES
        );
        return Ok(None);
    };
    log::debug!(
        "mp3 on two cores: joined at frame {} (free {} B, reservoir {} B, raised to {:?})",
        j.frame,
        j.free,
        j.reservoir,
        j.raise_to
    );
    let clipped = one.clipped + two.clipped;
    let peaks = one.peaks.append(two.peaks).finish();
    let file1 = one.out.into_inner().map_err(|e| io_err(e.into_error()))?;
    assemble(
        file1,
        &one.log,
        one.tag,
        &two.out,
        &two.log,
        &two.tag,
        id3.len() as u64,
        first2,
        &j,
    )
    .map_err(|e| codec_err(CodecError::Encode(format!("joining the MP3 spans: {e}"))))?;
    progress(total, total);
    Ok(Some((p.frames, clipped, peaks)))
}

fn read_at(file: &mut File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0; len];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut v)?;
    Ok(v)
}

/// Writes the joined stream into file 1: its frames before the join (the tail patched),
/// span 2's (`b`, in memory) from the join on, the tag rewritten; synced.
#[allow(clippy::too_many_arguments)]
fn assemble(
    mut a: File,
    log_a: &FrameLog,
    mut tag_frame: Vec<u8>,
    b: &[u8],
    log_b: &FrameLog,
    tag_b: &[u8],
    id3: u64,
    first2: usize,
    j: &Join,
) -> Result<(), String> {
    let e = |e: io::Error| e.to_string();
    let (delay, _) = tag::delay_padding(&tag_frame)?;
    let (delay2, padding) = tag::delay_padding(tag_b)?;
    if delay != delay2 {
        return Err(format!(
            "the spans' encoder delays differ ({delay}, {delay2})"
        ));
    }
    let header = Header::parse(&tag_frame).ok_or("LAME's tag frame has no header")?;
    let payload_start = header.payload_start();
    // Span 1: log indexes 1..=f kept; the tail from `pa` holds the room the reservoir needs.
    let (end_a, ib) = (j.frame + 1, j.frame + 1 - first2);
    let pa = join::frames_back(log_a, end_a, j.free.max(j.reservoir), payload_start);
    let at_a = log_a.offset(pa);
    let mut tail = read_at(&mut a, id3 + at_a, (log_a.offset(end_a) - at_a) as usize).map_err(e)?;
    let pb = join::frames_back(log_b, ib, j.reservoir, payload_start);
    let at_b = log_b.offset(pb);
    let before = b
        .get(at_b as usize..log_b.offset(ib) as usize)
        .ok_or("span 2's frames are short")?;
    let positions = join::last_payload(before, j.reservoir).ok_or("span 2's reservoir is short")?;
    let reservoir: Vec<u8> = positions.iter().map(|&i| before[i]).collect();
    let added = join::patch_tail(&mut tail, j, &reservoir)?;
    // Span 2 from the join: its music CRC from its own states, carried over span 1's.
    let from_b = log_b.offset(ib);
    let len_b = log_b.bytes - from_b;
    let crc_a = crc16(log_a.frames[pa].crc_before, &tail);
    let crc_b = log_b.crc ^ crc16_zeros(log_b.frames[ib].crc_before, len_b);
    let mut rates: Vec<u16> = log_a.frames[1..end_a]
        .iter()
        .map(|f| kbps(f.bitrate_index))
        .collect();
    if let (Some(r), Some(last)) = (j.raise_to, rates.last_mut()) {
        *last = kbps(r);
    }
    rates.extend(log_b.frames[ib..].iter().map(|f| kbps(f.bitrate_index)));
    let audio_bytes = log_a.offset(end_a) - log_a.offset(1) + added as u64 + len_b;
    tag::rewrite(
        &mut tag_frame,
        &tag::Stream {
            kbps: &rates,
            audio_bytes,
            music_crc: crc_b ^ crc16_zeros(crc_a, len_b),
            padding,
        },
    )?;
    a.seek(SeekFrom::Start(id3 + at_a)).map_err(e)?;
    a.write_all(&tail).map_err(e)?;
    let rest = b
        .get(from_b as usize..)
        .ok_or("span 2's frames are short")?;
    if rest.len() as u64 != len_b {
        return Err("span 2's frames are short".into());
    }
    a.write_all(rest).map_err(e)?;
    let end = id3 + at_a + tail.len() as u64 + len_b;
    a.set_len(end).map_err(e)?;
    a.seek(SeekFrom::Start(id3)).map_err(e)?;
    a.write_all(&tag_frame).map_err(e)?;
    a.sync_all().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span2_stays_within_the_memory_budget() {
        let (rate, min) = (48_000u32, 60 * 48_000u64);
        // 16 MiB at 190 kbps (V2) is 706 s of input.
        assert_eq!(span2_max_frames(rate, 190) / u64::from(rate), 706);
        assert_eq!(span2_max_frames(rate, 0), span2_max_frames(rate, 1)); // no division by 0
        let span2 = |minutes: u64| {
            let s = plan(minutes * min, (rate, 190), 4800, 2).unwrap();
            (s.start2, minutes * min - s.start2)
        };
        // 20 min: the middle, within the budget; 2 h: span 2 is 706 s plus the overlap.
        let (start2, len2) = span2(20);
        assert!(start2 < 10 * min && len2 < 10 * min + 40 * FRAME_SAMPLES);
        let (_, len2) = span2(120);
        assert!(
            len2 >= 706 * u64::from(rate) && len2 <= 708 * u64::from(rate),
            "{len2}"
        );
        assert_eq!(plan(29 * u64::from(rate), (rate, 190), 4800, 2), None);
        assert_eq!(plan(120 * min, (rate, 190), 4800, 1), None);
    }

    #[test]
    fn the_memory_sink_refuses_past_its_cap() {
        let mut v = Vec::new();
        assert!(v.put(&[1; 1000]).unwrap());
        v.resize(SPAN2_CAP - 10, 0);
        assert!(v.put(&[2; 10]).unwrap());
        assert!(!v.put(&[3]).unwrap());
        assert_eq!(v.len(), SPAN2_CAP);
    }
}
