//! Which span a free worker takes, and when the spans join, in an N-span MP3 render. The
//! head (the lowest span not yet joined to its successor) streams into the output; the
//! span after it is kept in memory until the head ends and the two join, then it is the
//! head. So one span's frames are in memory at a time, plus, while a finished head waits
//! for its successor's first frames (a fraction of a second of encoding), the start of
//! the span after that. Pure: the render drives it from its workers' messages.

/// The spans' state.
#[derive(Debug)]
pub struct Schedule {
    next: usize,
    head: usize,
    done: Vec<bool>,
}

impl Schedule {
    /// A schedule of `spans` spans (at least one).
    pub fn new(spans: usize) -> Schedule {
        Schedule {
            next: 0,
            head: 0,
            done: vec![false; spans.max(1)],
        }
    }

    /// The span a free worker takes now: the lowest not taken, if it is the head or the
    /// one after it, or two after a finished head (whose successor has begun).
    pub fn take(&mut self) -> Option<usize> {
        let limit = self.head + 1 + usize::from(self.done[self.head]);
        if self.next >= self.done.len() || self.next > limit {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    pub fn finished(&mut self, span: usize) {
        self.done[span] = true;
    }

    /// The span whose frames go to the output.
    pub fn head(&self) -> usize {
        self.head
    }

    /// Whether the head has ended and has a successor to join (once that has its first
    /// frames).
    pub fn joinable(&self) -> bool {
        self.done[self.head] && self.head + 1 < self.done.len()
    }

    /// The head joined to its successor, which is the head now.
    pub fn joined(&mut self) {
        debug_assert!(self.joinable());
        self.head += 1;
    }

    /// Whether the last span has ended (and every join is made).
    pub fn complete(&self) -> bool {
        self.head + 1 == self.done.len() && self.done[self.head]
    }

    /// Spans taken, not the head and not joined: the ones whose frames are in memory.
    pub fn buffered(&self) -> usize {
        self.next.saturating_sub(self.head + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What two workers do with `spans` spans taking `cost(span)` time units each; a
    /// join needs the successor to have run one unit. Returns the joins' order, the end
    /// time, the most spans in memory at once and each worker's spans.
    fn run(spans: usize, cost: impl Fn(usize) -> u64) -> (Vec<usize>, u64, usize, [Vec<usize>; 2]) {
        let mut s = Schedule::new(spans);
        let mut took: [Vec<usize>; 2] = Default::default();
        let mut workers: [Option<(usize, u64, u64)>; 2] = [None; 2]; // span, start, end
        let (mut now, mut joins, mut most) = (0, Vec::new(), 0);
        loop {
            for (i, w) in workers.iter_mut().enumerate() {
                if w.is_none() {
                    *w = s.take().map(|span| (span, now, now + cost(span)));
                    took[i].extend(w.map(|w| w.0));
                }
            }
            most = most.max(s.buffered());
            let started = |span: usize, now: u64| {
                workers
                    .iter()
                    .flatten()
                    .any(|&(x, start, _)| x == span && now > start)
            };
            while s.joinable() && (s.done[s.head + 1] || started(s.head + 1, now)) {
                joins.push(s.head());
                s.joined();
            }
            if s.complete() {
                return (joins, now, most, took);
            }
            now += 1;
            for w in &mut workers {
                if let Some((span, _, end)) = *w {
                    if end == now {
                        s.finished(span);
                        *w = None;
                    }
                }
            }
            assert!(now < 10_000, "stuck: {s:?}");
        }
    }

    #[test]
    fn equal_spans_keep_both_workers_busy_and_join_in_order() {
        for n in [2, 4, 12] {
            let (joins, end, most, took) = run(n, |_| 100);
            // The output is written span by span: each join makes the next the head.
            assert_eq!(joins, (0..n - 1).collect::<Vec<_>>());
            // Each worker takes every other span.
            assert_eq!(took[0], (0..n).step_by(2).collect::<Vec<_>>());
            assert_eq!(took[1], (1..n).step_by(2).collect::<Vec<_>>());
            // Pairs run side by side: n / 2 span times, plus a unit per pair for a join
            // that waits on its successor's first frames.
            assert!(end <= (n as u64 / 2) * 101, "{n}: {end}");
            assert!(most <= 2, "{n}: {most}");
        }
        // An odd count leaves one worker idle for the last span.
        assert_eq!(run(3, |_| 100).1, 200);
    }

    #[test]
    fn a_fast_span_waits_in_memory_and_never_a_second_one() {
        // Span 1 is slow: span 2 ends in memory and its worker waits; nothing past it
        // starts until span 1 ends.
        let (joins, end, most, took) = run(5, |s| if s == 0 { 300 } else { 100 });
        assert_eq!(joins, vec![0, 1, 2, 3]);
        assert_eq!(took, [vec![0, 2, 4], vec![1, 3]]);
        assert!(most <= 2);
        assert!((500..=505).contains(&end), "{end}");
        let mut s = Schedule::new(5);
        assert_eq!((s.take(), s.take(), s.take()), (Some(0), Some(1), None));
        s.finished(1);
        assert_eq!(s.take(), None, "span 2 would be a second span in memory");
        s.finished(0);
        assert!(s.joinable());
        s.joined();
        // The head (span 1) has ended: its successors may start, two at most.
        assert_eq!((s.take(), s.take(), s.take()), (Some(2), Some(3), None));
        assert_eq!(s.buffered(), 2);
        s.joined();
        assert_eq!((s.head(), s.buffered(), s.take()), (2, 1, None));
    }

    #[test]
    fn one_span_is_complete_when_it_ends() {
        let mut s = Schedule::new(1);
        assert_eq!((s.take(), s.take()), (Some(0), None));
        assert!(!s.complete() && !s.joinable());
        s.finished(0);
        assert!(s.complete() && !s.joinable());
    }
}
