//! The recording's quality timeline: what happened, at which frame, at what wall time.
//! Positions are frames on the job's timeline (frame 0 = the job's first captured frame;
//! gaps count as frames of silence).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Kinds of timeline event. Names are stable: never change one's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    DeviceLost,
    DeviceRestored,
    Stall,
    /// Frames the device or the ring dropped (`dropped_frames`).
    Overrun,
    /// The source delivered no audio for a while (synth scripted drop-out).
    DropOut,
    DiskPause,
    DiskResume,
    /// A crash or power loss: `gap_frames` lost between the last synced frame and restart.
    CrashRecovered,
    /// The device came back unable to deliver the job's format; capture failed.
    DeviceMismatch,
    /// The job ended while its device was still lost (the recording ends at its last
    /// captured frame; older journals carry `gap_frames` for the rest).
    DeviceStillLost,
    /// The device delivered its first frame after the job's window had opened (missing,
    /// busy or silent at the start): `gap_frames` is the missing start.
    LateStart,
    StopRequested,
    /// The end of capture, with the cause in `detail`.
    Ended,
    /// A segment file that can no longer be read (damaged, truncated into its header,
    /// deleted): `gap_frames` covers the frames it held. The file is kept for an operator.
    SegmentUnreadable,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Started,
        EventKind::DeviceLost,
        EventKind::DeviceRestored,
        EventKind::Stall,
        EventKind::Overrun,
        EventKind::DropOut,
        EventKind::DiskPause,
        EventKind::DiskResume,
        EventKind::CrashRecovered,
        EventKind::DeviceMismatch,
        EventKind::DeviceStillLost,
        EventKind::LateStart,
        EventKind::StopRequested,
        EventKind::Ended,
        EventKind::SegmentUnreadable,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::DeviceLost => "device_lost",
            EventKind::DeviceRestored => "device_restored",
            EventKind::Stall => "stall",
            EventKind::Overrun => "overrun",
            EventKind::DropOut => "drop_out",
            EventKind::DiskPause => "disk_pause",
            EventKind::DiskResume => "disk_resume",
            EventKind::CrashRecovered => "crash_recovered",
            EventKind::DeviceMismatch => "device_mismatch",
            EventKind::DeviceStillLost => "device_still_lost",
            EventKind::LateStart => "late_start",
            EventKind::StopRequested => "stop_requested",
            EventKind::Ended => "ended",
            EventKind::SegmentUnreadable => "segment_unreadable",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown timeline event kind {s:?}"))
    }
}

/// One timeline row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub kind: EventKind,
    /// Position on the job's timeline.
    pub frame: u64,
    /// Wall time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Frames of silence this event stands for on the timeline (gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_frames: Option<u64>,
}

impl TimelineEvent {
    pub fn new(kind: EventKind, frame: u64, at_ms: i64) -> Self {
        TimelineEvent {
            kind,
            frame,
            at_ms,
            detail: String::new(),
            gap_frames: None,
        }
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
    pub fn with_gap(mut self, frames: u64) -> Self {
        self.gap_frames = Some(frames);
        self
    }
}

/// A segment as the stitcher sees it: where it sits on the timeline and how long it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedSegment<P> {
    pub file: P,
    pub first_frame: u64,
    pub frames: u64,
}

/// One step of a stitch: copy a segment's frames, or write silence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<P> {
    /// Copy `frames` frames of `file`, starting `skip` frames into its audio.
    Segment {
        file: P,
        skip: u64,
        frames: u64,
    },
    Silence {
        frames: u64,
    },
}

/// How gaps between segments are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapFill {
    /// Fill with silence so the output's time matches the wall clock (a logger's promise).
    #[default]
    Silence,
    /// Join the segments back to back.
    Splice,
}

/// Turns segments placed on the timeline into stitch steps, pure and deterministic.
/// Segments are taken in timeline order. An overlap (a segment starting before the
/// previous one ended, which only a damaged journal produces) is trimmed from the later
/// segment's head, so no instant plays twice. With `GapFill::Silence`, `total_frames`
/// longer than the last segment's end pads trailing silence (a capture ending in a gap).
pub fn stitch_plan<P: Clone>(
    segments: &[PlacedSegment<P>],
    total_frames: Option<u64>,
    fill: GapFill,
) -> Vec<Piece<P>> {
    let mut ordered: Vec<&PlacedSegment<P>> = segments.iter().filter(|s| s.frames > 0).collect();
    ordered.sort_by_key(|s| s.first_frame);
    let mut plan = Vec::with_capacity(ordered.len() * 2 + 1);
    let mut cursor = 0u64; // timeline position reached so far
    for seg in ordered {
        let end = seg.first_frame + seg.frames;
        if end <= cursor {
            continue; // wholly overlapped
        }
        if seg.first_frame > cursor && fill == GapFill::Silence {
            plan.push(Piece::Silence {
                frames: seg.first_frame - cursor,
            });
        }
        let skip = cursor.saturating_sub(seg.first_frame);
        plan.push(Piece::Segment {
            file: seg.file.clone(),
            skip,
            frames: seg.frames - skip,
        });
        cursor = end;
    }
    if fill == GapFill::Silence
        && let Some(total) = total_frames
        && total > cursor
    {
        plan.push(Piece::Silence {
            frames: total - cursor,
        });
    }
    plan
}

/// Frames a plan produces.
pub fn plan_frames<P>(plan: &[Piece<P>]) -> u64 {
    plan.iter()
        .map(|p| match p {
            Piece::Segment { frames, .. } | Piece::Silence { frames } => *frames,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file: &'static str, first_frame: u64, frames: u64) -> PlacedSegment<&'static str> {
        PlacedSegment {
            file,
            first_frame,
            frames,
        }
    }
    fn s(file: &'static str, skip: u64, frames: u64) -> Piece<&'static str> {
        Piece::Segment { file, skip, frames }
    }
    fn gap(frames: u64) -> Piece<&'static str> {
        Piece::Silence { frames }
    }

    /// (name, segments, total frames, fill, expected plan)
    type Case = (
        &'static str,
        Vec<PlacedSegment<&'static str>>,
        Option<u64>,
        GapFill,
        Vec<Piece<&'static str>>,
    );

    #[test]
    #[allow(clippy::too_many_lines, reason = "one table of cases")]
    fn stitch_plan_table() {
        let cases: Vec<Case> = vec![
            (
                "contiguous",
                vec![seg("a", 0, 10), seg("b", 10, 5)],
                None,
                GapFill::Silence,
                vec![s("a", 0, 10), s("b", 0, 5)],
            ),
            (
                "gap filled",
                vec![seg("a", 0, 10), seg("b", 14, 5)],
                None,
                GapFill::Silence,
                vec![s("a", 0, 10), gap(4), s("b", 0, 5)],
            ),
            (
                "gap spliced",
                vec![seg("a", 0, 10), seg("b", 14, 5)],
                Some(30),
                GapFill::Splice,
                vec![s("a", 0, 10), s("b", 0, 5)],
            ),
            (
                "leading gap",
                vec![seg("a", 3, 2)],
                None,
                GapFill::Silence,
                vec![gap(3), s("a", 0, 2)],
            ),
            (
                "trailing gap to total",
                vec![seg("a", 0, 10)],
                Some(12),
                GapFill::Silence,
                vec![s("a", 0, 10), gap(2)],
            ),
            (
                "total shorter than audio keeps audio",
                vec![seg("a", 0, 10)],
                Some(8),
                GapFill::Silence,
                vec![s("a", 0, 10)],
            ),
            (
                "out of order input",
                vec![seg("b", 10, 5), seg("a", 0, 10)],
                None,
                GapFill::Silence,
                vec![s("a", 0, 10), s("b", 0, 5)],
            ),
            (
                "overlap trimmed",
                vec![seg("a", 0, 10), seg("b", 8, 5)],
                None,
                GapFill::Silence,
                vec![s("a", 0, 10), s("b", 2, 3)],
            ),
            (
                "swallowed segment dropped",
                vec![seg("a", 0, 10), seg("b", 2, 3)],
                None,
                GapFill::Silence,
                vec![s("a", 0, 10)],
            ),
            (
                "empty segments ignored",
                vec![seg("a", 0, 0), seg("b", 0, 4)],
                None,
                GapFill::Silence,
                vec![s("b", 0, 4)],
            ),
            (
                "nothing but silence",
                vec![],
                Some(7),
                GapFill::Silence,
                vec![gap(7)],
            ),
        ];
        for (name, segments, total, fill, want) in cases {
            let got = stitch_plan(&segments, total, fill);
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn plan_frames_sums_pieces() {
        assert_eq!(plan_frames(&[s("a", 0, 10), gap(4)]), 14);
    }

    #[test]
    fn event_kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.name().parse::<EventKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
    }
}

/// Where a job's timeline ends: after its last segment or its last gap, whichever is later.
pub fn timeline_end<P>(segments: &[PlacedSegment<P>], events: &[TimelineEvent]) -> u64 {
    let seg_end = segments
        .iter()
        .map(|s| s.first_frame + s.frames)
        .max()
        .unwrap_or(0);
    let gap_end = events
        .iter()
        .filter_map(|e| e.gap_frames.map(|g| e.frame + g))
        .max()
        .unwrap_or(0);
    seg_end.max(gap_end)
}

#[cfg(test)]
mod end_tests {
    use super::*;

    #[test]
    fn timeline_end_takes_the_later_of_audio_and_gaps() {
        let segs = [PlacedSegment {
            file: "a",
            first_frame: 0,
            frames: 100,
        }];
        let gap = TimelineEvent::new(EventKind::CrashRecovered, 100, 0).with_gap(50);
        let mark = TimelineEvent::new(EventKind::Ended, 100, 0);
        assert_eq!(timeline_end(&segs, &[]), 100);
        assert_eq!(timeline_end(&segs, &[gap.clone(), mark]), 150);
        assert_eq!(timeline_end::<&str>(&[], &[gap]), 150);
    }
}
