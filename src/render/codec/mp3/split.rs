//! MP3 on two cores: the input in N spans of bounded length on one frame grid, encoded by
//! two workers ([`super::worker`]) with LAME encoders of the same settings and joined into
//! one stream ([`super::join`]). Each span but the first starts [`PRE_ROLL`] frames
//! before its join's first candidate, so its encoder has settled (psychoacoustics, MDCT
//! overlap) by the join and its frames there are the ones one encoder makes, near
//! enough. The head span streams into the output; the next is kept in memory until the
//! head ends, joins it and is written once ([`super::sched`], [`super::out`]). A span's
//! MP3 at the preset's typical bitrate fits [`SPAN_BUDGET`], so memory stays at about
//! one span whatever the length. Peaks and clipping are taken once: each span over the
//! input between pixel boundaries in its overlaps.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::frames::FRAME_SAMPLES;
use super::out::Output;
use super::worker;
use super::writer::Writer;
use super::{CodecError, EncoderParams, id3v2};
use crate::render::pipeline::{RenderError, RenderRequest};

pub use super::worker::Span;

/// Frames a span encodes before its join's first candidate.
pub(super) const PRE_ROLL: u64 = 16;
/// Join points tried, around each boundary.
pub(super) const CANDIDATES: u64 = 32;
/// Frames a span encodes past its join's last candidate (LAME looks ahead).
const LOOK_AHEAD: u64 = 4;
/// Shorter inputs take one span.
const MIN_SECONDS: u64 = 30;
/// A span's MP3 at its preset's typical bitrate fits this (V2, 190 kbps: 706 s of
/// input). The span in memory is capped at [`SPAN_CAP`], as VBR runs above typical
/// (speech and noise at V2: 237 kbps); past it the render takes one span.
const SPAN_BUDGET: u64 = 16 << 20;
pub(super) const SPAN_CAP: usize = 32 << 20;
/// `EDGEREC_MP3_SPAN_SECONDS` sets the longest span (tests); never below this.
const MIN_SPAN_SECONDS: u64 = 10;

/// The most input frames a span takes at `rate` and `kbps` (typical) within the budget.
pub fn span_max_frames(rate: u32, kbps: u32) -> u64 {
    let frames = u128::from(SPAN_BUDGET) * 8 * u128::from(rate) / (u128::from(kbps.max(1)) * 1000);
    u64::try_from(frames).unwrap_or(u64::MAX)
}

/// The spans of a render and their joins.
#[derive(Clone, Debug, PartialEq)]
pub struct Spans {
    pub spans: Vec<Span>,
    /// Per join (span `k` to `k + 1`): global audio frames to join at, best first.
    pub joins: Vec<Vec<usize>>,
}

/// The spans of a `frames`-long render at `rate` and `kbps` (typical), or `None` for
/// one span; the longest span is the budget's, or `EDGEREC_MP3_SPAN_SECONDS`.
pub fn plan(
    frames: u64,
    (rate, kbps): (u32, u32),
    samples_per_pixel: u64,
    cores: usize,
) -> Option<Spans> {
    let max_span = std::env::var("EDGEREC_MP3_SPAN_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or_else(|| span_max_frames(rate, kbps), |s| s * u64::from(rate));
    plan_with(frames, rate, samples_per_pixel, cores, max_span)
}

/// [`plan`] with spans of at most `max_span` frames: an even count of equal spans, so
/// two workers at one pace end together.
pub fn plan_with(
    frames: u64,
    rate: u32,
    samples_per_pixel: u64,
    cores: usize,
    max_span: u64,
) -> Option<Spans> {
    if cores < 2 || frames < MIN_SECONDS * u64::from(rate) || !(32_000..=48_000).contains(&rate) {
        return None;
    }
    let max_span = max_span.max(MIN_SPAN_SECONDS * u64::from(rate));
    let n = 2 * frames.div_ceil(2 * max_span);
    let (mut spans, mut joins) = (Vec::new(), Vec::new());
    let (mut start, mut handover, mut last_first) = (0, 0, 0);
    for k in 1..n {
        let meet = u64::try_from(u128::from(frames) * u128::from(k) / u128::from(n)).ok()?;
        let first = (meet / FRAME_SAMPLES).checked_sub(CANDIDATES / 2)?;
        if k > 1 && first < last_first + 4 * (PRE_ROLL + CANDIDATES + LOOK_AHEAD) {
            return None; // spans too short to hold their joins apart
        }
        let next = first.checked_sub(PRE_ROLL)? * FRAME_SAMPLES;
        let end = ((first + CANDIDATES + LOOK_AHEAD + 1) * FRAME_SAMPLES).min(frames);
        let at = first * FRAME_SAMPLES / samples_per_pixel * samples_per_pixel;
        if at < next || at <= handover {
            return None; // pixels wider than the overlap (days-long inputs)
        }
        spans.push(Span {
            range: start..end,
            keep: handover..at,
        });
        let mid = first + CANDIDATES / 2;
        let mut candidates: Vec<usize> = (first..first + CANDIDATES).map(|g| g as usize).collect();
        candidates.sort_by_key(|&g| (g as u64).abs_diff(mid));
        joins.push(candidates);
        (start, handover, last_first) = (next, at, first);
    }
    spans.push(Span {
        range: start..frames,
        keep: handover..frames,
    });
    Some(Spans { spans, joins })
}

/// Renders `req` as `spans` into `partial`: `(frames, clipped, peaks JSON)`, or `None`
/// when LAME wrote frames this module does not join, a span in memory passed its cap or
/// no join point was found (the caller renders it in one span).
pub fn render(
    req: &RenderRequest,
    p: &EncoderParams,
    spans: &Spans,
    partial: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Option<(u64, u64, Vec<u8>)>, RenderError> {
    let io = |e: std::io::Error| RenderError::Codec {
        codec: "mp3",
        source: CodecError::Io(e),
    };
    let id3 = id3v2(&p.facts, p.rate);
    let mut file = File::create(partial).map_err(io)?;
    file.write_all(&id3).map_err(io)?;
    let out = Output::new(file, id3.len() as u64);
    let (tx, rx) = crossbeam_channel::bounded(64);
    std::thread::scope(|s| {
        let mut jobs = Vec::new();
        for w in 0..2 {
            let (job_tx, job_rx) = crossbeam_channel::bounded(1);
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("render-mp3-{w}"))
                .spawn_scoped(s, move || worker::run(req, p, &spans.spans, w, job_rx, tx))
                .map_err(io)?;
            jobs.push(job_tx);
        }
        drop(tx);
        // Returning drops `rx` and `jobs`: the workers stop at their next send.
        Writer::new(spans, p, out).run(rx, jobs, progress)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::peaks::Peaks;

    const RATE: u32 = 48_000;

    #[test]
    fn spans_stay_within_the_memory_budget() {
        // 16 MiB at 190 kbps (V2) is 706 s of input.
        assert_eq!(span_max_frames(RATE, 190) / u64::from(RATE), 706);
        assert_eq!(span_max_frames(RATE, 0), span_max_frames(RATE, 1)); // no division by 0
        let max = span_max_frames(RATE, 190);
        let min = 60 * u64::from(RATE);
        for (minutes, n) in [(1, 2), (20, 2), (30, 4), (120, 12)] {
            let frames = minutes * min;
            let s = plan(frames, (RATE, 190), Peaks::pixel_width(frames), 2).unwrap();
            assert_eq!(s.spans.len(), n, "{minutes} min");
            assert_eq!(s.joins.len(), n - 1);
            let overlap = (PRE_ROLL + CANDIDATES + LOOK_AHEAD + 1) * FRAME_SAMPLES;
            for (k, span) in s.spans.iter().enumerate() {
                assert!(span.range.end - span.range.start <= max + overlap, "{k}");
                assert!(span.range.contains(&span.keep.start));
                assert!(span.keep.end <= span.range.end);
            }
            // The spans cover the input, overlap at each join and the peaks' ranges tile it.
            assert_eq!(
                (s.spans[0].range.start, s.spans[n - 1].range.end),
                (0, frames)
            );
            for (k, w) in s.spans.windows(2).enumerate() {
                assert_eq!(w[0].keep.end, w[1].keep.start);
                let first = *s.joins[k].iter().min().unwrap() as u64;
                assert_eq!(w[1].range.start, (first - PRE_ROLL) * FRAME_SAMPLES);
                assert!(w[0].range.end > (first + CANDIDATES) * FRAME_SAMPLES);
            }
        }
        assert_eq!(plan(29 * u64::from(RATE), (RATE, 190), 4800, 2), None);
        assert_eq!(plan(120 * min, (RATE, 190), 4800, 1), None);
        assert_eq!(plan_with(120 * min, 44_100 / 2, 4800, 2, max), None);
    }

    #[test]
    fn short_spans_are_clamped_and_never_squeeze_the_joins() {
        let frames = 70 * u64::from(RATE);
        // 20 s spans: four of 17.5 s.
        let s = plan_with(frames, RATE, 256, 2, 20 * u64::from(RATE)).unwrap();
        assert_eq!(s.spans.len(), 4);
        // 1 s asked: 10 s at least, an even count.
        let s = plan_with(frames, RATE, 256, 2, u64::from(RATE)).unwrap();
        assert_eq!(s.spans.len(), 8);
        // Pixels wider than an overlap: one span.
        assert_eq!(plan_with(frames, RATE, 1 << 20, 2, u64::from(RATE)), None);
    }
}
