//! Where two spans' MP3 streams join, and the bytes around the join. Both spans use the
//! same frame grid, so global frame `g` is span 1's audio frame `g - first1` and span
//! 2's `g - first2`. The stream keeps span 1's frames before the join frame `f` and span 2's
//! from `f` on. Span 2's frame `f` starts its main data `b2` bytes back (the bit
//! reservoir) in frames we drop; span 1's frame `f` says `b1` bytes at the end of the
//! kept frames are free. With `b2 <= b1` span 2's reservoir bytes go into that free
//! room; otherwise span 1's last kept frame gets a higher bitrate index (a larger frame)
//! for the difference. The join is only made where both encoders chose the same block
//! types for the granule before it, so the window sequence stays a valid one.

use super::frames::{Frame, FrameLog, Header};

/// The join: span 2 takes over at global audio frame `frame`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Join {
    pub frame: usize,
    /// Span 1's last kept frame re-labelled at this bitrate index, when its free room is
    /// short of span 2's reservoir.
    pub raise_to: Option<u8>,
    /// `b1`, `b2`.
    pub free: usize,
    pub reservoir: usize,
}

/// The log index of global audio frame `g` in a span whose log index 1 is global audio
/// frame `first` (each log's frame 0 is LAME's tag frame).
fn index(g: usize, first: usize) -> Option<usize> {
    (g + 1).checked_sub(first)
}

/// The first candidate (in the order given) where the streams can join: one that needs
/// no larger frame, else one that does. `first_a`, `first_b`: the global audio frames
/// the spans' logs start at.
pub fn choose(
    a: &FrameLog,
    first_a: usize,
    b: &FrameLog,
    first_b: usize,
    candidates: &[usize],
) -> Option<Join> {
    let at = |g: usize| -> Option<Join> {
        let (ia, ib) = (index(g, first_a)?, index(g, first_b)?);
        let (a_next, a_last) = (a.frames.get(ia)?, a.frames.get(ia.checked_sub(1)?)?);
        let (b_first, b_prev) = (b.frames.get(ib)?, b.frames.get(ib.checked_sub(1)?)?);
        (ib >= 2 && ia >= 2 && a_last.side.last_granule() == b_prev.side.last_granule()).then(
            || Join {
                frame: g,
                raise_to: None,
                free: usize::from(a_next.side.main_data_begin),
                reservoir: usize::from(b_first.side.main_data_begin),
            },
        )
    };
    let fits = candidates
        .iter()
        .filter_map(|&g| at(g))
        .find(|j| j.reservoir <= j.free);
    fits.or_else(|| {
        candidates.iter().filter_map(|&g| at(g)).find_map(|j| {
            let last = a.frames[j.frame - first_a];
            raise(&last, a.rate, j.reservoir.saturating_sub(j.free)).map(|r| Join {
                raise_to: Some(r),
                ..j
            })
        })
    })
}

/// The smallest higher bitrate index giving `frame` at least `more` bytes.
fn raise(frame: &Frame, rate: u32, more: usize) -> Option<u8> {
    let len = usize::from(frame.len);
    let padding = len != Header::len_at(frame.bitrate_index, rate, false);
    (frame.bitrate_index + 1..15).find(|&r| Header::len_at(r, rate, padding) >= len + more)
}

/// Positions in `bytes` (whole frames) of the last `n` bytes of main-data room (each
/// frame's bytes after its side info), in stream order; `None` if there are fewer.
pub fn last_payload(bytes: &[u8], n: usize) -> Option<Vec<usize>> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = Header::parse(&bytes[at..])?;
        starts.push((at + h.payload_start(), at + h.len()));
        at += h.len();
    }
    let mut out: Vec<usize> = starts
        .iter()
        .rev()
        .flat_map(|&(s, e)| (s..e).rev())
        .take(n)
        .collect();
    if out.len() < n {
        return None;
    }
    out.reverse();
    Some(out)
}

/// Patches span 1's kept tail (whole frames ending with its last kept one): the raised
/// bitrate index and its extra bytes, the free room zeroed, span 2's reservoir bytes
/// last. Returns the bytes added.
pub fn patch_tail(tail: &mut Vec<u8>, j: &Join, reservoir: &[u8]) -> Result<usize, String> {
    let mut free = j.free;
    let mut added = 0;
    if let Some(r) = j.raise_to {
        let last = last_frame_start(tail).ok_or("no whole frame at the join")?;
        let h = Header::parse(&tail[last..]).ok_or("no frame header at the join")?;
        tail[last + 2] = tail[last + 2] & 0x0F | r << 4;
        added = Header::len_at(r, h.rate, h.padding) - h.len();
        tail.resize(tail.len() + added, 0);
        free += added;
    }
    let room = last_payload(tail, free).ok_or("the free room is not in the frames read")?;
    if reservoir.len() > room.len() {
        return Err("span 2's reservoir does not fit the free room".into());
    }
    for &i in &room {
        tail[i] = 0;
    }
    for (&i, &b) in room[room.len() - reservoir.len()..].iter().zip(reservoir) {
        tail[i] = b;
    }
    Ok(added)
}

fn last_frame_start(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut last = None;
    while at < bytes.len() {
        last = Some(at);
        at += Header::parse(&bytes[at..])?.len();
    }
    last.filter(|_| at == bytes.len())
}

/// From frame `end` (a log index, exclusive) back, the first log index whose frames hold
/// `n` bytes of main-data room (never the tag frame).
pub fn frames_back(log: &FrameLog, end: usize, n: usize, payload_start: usize) -> usize {
    let mut room = 0;
    let mut i = end;
    while i > 1 && room < n {
        i -= 1;
        room += usize::from(log.frames[i].len).saturating_sub(payload_start);
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 48 kHz stereo frame of `kbps_index` whose payload bytes are `fill`.
    fn frame(index: u8, fill: u8) -> Vec<u8> {
        let mut f = vec![0xFF, 0xFB, index << 4 | 0x04, 0x44];
        let len = Header::len_at(index, 48_000, false);
        f.resize(36, 0);
        f.resize(len, fill);
        f
    }

    #[test]
    fn the_reservoir_lands_at_the_end_of_the_free_room() {
        let mut tail = [frame(9, 1), frame(1, 2)].concat(); // 384 + 96 bytes
        let j = Join {
            frame: 7,
            raise_to: None,
            free: 70,
            reservoir: 10,
        };
        let added = patch_tail(&mut tail, &j, &[9; 10]).unwrap();
        assert_eq!(added, 0);
        // The last frame's 60 payload bytes and the first frame's last 10 are the room.
        assert_eq!(&tail[384 - 10..384], &[0; 10]);
        assert_eq!(&tail[384 + 36..tail.len() - 10], &[0; 50]);
        assert_eq!(&tail[tail.len() - 10..], &[9; 10]);
        assert_eq!(tail[384 - 11], 1);
    }

    #[test]
    fn a_short_room_gets_a_larger_frame() {
        let mut tail = frame(1, 2); // 32 kbps: 96 bytes
        let j = Join {
            frame: 3,
            raise_to: Some(2),
            free: 5,
            reservoir: 20,
        };
        let added = patch_tail(&mut tail, &j, &[7; 20]).unwrap();
        assert_eq!((added, tail.len()), (24, 120)); // 40 kbps
        assert_eq!(
            super::super::frames::kbps(Header::parse(&tail).unwrap().bitrate_index),
            40
        );
        assert_eq!(&tail[120 - 20..], &[7; 20]);
        assert_eq!(&tail[120 - 29..100], &[0; 9]);
        let f = Frame {
            len: 96,
            bitrate_index: 1,
            side: super::super::frames::SideInfo {
                main_data_begin: 0,
                blocks: 0,
            },
        };
        assert_eq!(raise(&f, 48_000, 24), Some(2));
        assert_eq!(raise(&f, 48_000, 25), Some(3));
        assert_eq!(raise(&f, 48_000, 5000), None);
    }
}
