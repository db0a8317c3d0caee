//! Level metering of captured audio, off the real-time thread: per channel peak and RMS
//! dBFS, samples at full scale, DC offset, and for each channel pair a correlation figure;
//! and detectors that open and clear with hysteresis, so one condition is one event pair.
//! Pure: samples in, levels and condition changes out; no clock, no I/O.

use crate::core::format::SampleFormat;

/// dBFS of digital silence as reported (the controller's floor).
pub const FLOOR_DBFS: f64 = -160.0;

/// Accumulates one metering window (a few seconds) of interleaved frames.
#[derive(Clone, Debug)]
pub struct LevelMeter {
    channels: usize,
    peak: Vec<f64>,
    sum_sq: Vec<f64>,
    sum: Vec<f64>,
    clipped: Vec<u64>,
    /// Σ x·y for each adjacent pair (1-2, 3-4, …).
    cross: Vec<f64>,
    frames: u64,
    scratch: feed::Scratch,
}

/// One window's levels.
#[derive(Clone, Debug, PartialEq)]
pub struct Levels {
    pub channels: Vec<ChannelLevel>,
    /// For channels 1-2, 3-4, …: Σxy/√(Σx²Σy²), −1 (inverted) … +1 (mono); `None` when
    /// either channel is silent.
    pub pair_correlation: Vec<Option<f64>>,
    pub frames: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelLevel {
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    /// Samples at full scale (either rail).
    pub clipped: u64,
    /// Mean sample value, full scale = 1.
    pub dc: f64,
}

impl LevelMeter {
    pub fn new(channels: u16) -> LevelMeter {
        let n = channels.max(1) as usize;
        LevelMeter {
            channels: n,
            peak: vec![0.0; n],
            sum_sq: vec![0.0; n],
            sum: vec![0.0; n],
            clipped: vec![0; n],
            cross: vec![0.0; n / 2],
            frames: 0,
            scratch: feed::Scratch::default(),
        }
    }

    /// Feeds interleaved frames in the device's native format (as the segments hold them).
    pub fn feed_bytes(&mut self, format: SampleFormat, bytes: &[u8]) {
        self.feed_native(format, bytes);
    }

    /// Feeds interleaved frames already normalized to full scale = 1.
    pub fn feed(&mut self, samples: &[f64]) {
        for frame in samples.chunks_exact(self.channels) {
            for (ch, &x) in frame.iter().enumerate() {
                self.add(ch, x, x.abs() >= 1.0);
            }
            for pair in 0..self.cross.len() {
                self.cross[pair] += frame[2 * pair] * frame[2 * pair + 1];
            }
            self.frames += 1;
        }
    }

    fn add(&mut self, ch: usize, x: f64, at_rail: bool) {
        self.peak[ch] = self.peak[ch].max(x.abs());
        self.sum_sq[ch] += x * x;
        self.sum[ch] += x;
        self.clipped[ch] += at_rail as u64;
    }

    /// The window's levels; starts the next window.
    pub fn take(&mut self) -> Levels {
        let n = self.frames.max(1) as f64;
        let channels = (0..self.channels)
            .map(|ch| ChannelLevel {
                peak_dbfs: dbfs(self.peak[ch]),
                rms_dbfs: dbfs((self.sum_sq[ch] / n).sqrt()),
                clipped: self.clipped[ch],
                dc: self.sum[ch] / n,
            })
            .collect();
        let pair_correlation = (0..self.cross.len())
            .map(|p| {
                let energy = self.sum_sq[2 * p] * self.sum_sq[2 * p + 1];
                (energy > 1e-12).then(|| (self.cross[p] / energy.sqrt()).clamp(-1.0, 1.0))
            })
            .collect();
        let levels = Levels {
            channels,
            pair_correlation,
            frames: self.frames,
        };
        let scratch = std::mem::take(&mut self.scratch);
        *self = LevelMeter::new(self.channels as u16);
        self.scratch = scratch; // warm: the next window's feeds allocate nothing
        levels
    }
}

/// A sample as full scale = 1, and whether it sits on a rail: the sample-by-sample
/// reference the tests hold the fast passes to.
#[cfg(test)]
pub(crate) fn normalized(format: SampleFormat, s: &[u8]) -> (f64, bool) {
    match format {
        SampleFormat::S16Le => {
            let v = i16::from_le_bytes([s[0], s[1]]);
            (v as f64 / 32768.0, v == i16::MAX || v == i16::MIN)
        }
        SampleFormat::S24Le3 => {
            let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
            (v as f64 / 8_388_608.0, v == 8_388_607 || v == -8_388_608)
        }
        SampleFormat::S24Le => {
            // Low-justified in 32 bits: sign-extend the low 24.
            let v = (i32::from_le_bytes([s[0], s[1], s[2], s[3]]) << 8) >> 8;
            (v as f64 / 8_388_608.0, v == 8_388_607 || v == -8_388_608)
        }
        SampleFormat::S32Le => {
            let v = i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            (v as f64 / 2_147_483_648.0, v == i32::MAX || v == i32::MIN)
        }
        SampleFormat::FloatLe => {
            let v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64;
            let v = if v.is_finite() { v } else { 0.0 };
            (v, v.abs() >= 1.0)
        }
    }
}

/// Linear full-scale amplitude as dBFS, floored.
pub fn dbfs(linear: f64) -> f64 {
    if linear <= 0.0 || !linear.is_finite() {
        return FLOOR_DBFS;
    }
    (20.0 * linear.log10()).max(FLOOR_DBFS)
}

/// What the detectors watch for. Rakkr's names: `agent.meter.<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    Clipping,
    /// Digital silence or a dead input: RMS below the flatline mark.
    Flatline,
    LowSignal,
    DcOffset,
    /// A channel pair that is inverted (or cancels when summed to mono).
    ChannelCorrelation,
}

impl Condition {
    pub const fn name(self) -> &'static str {
        match self {
            Condition::Clipping => "clipping",
            Condition::Flatline => "flatline",
            Condition::LowSignal => "low_signal",
            Condition::DcOffset => "dc_offset",
            Condition::ChannelCorrelation => "channel_correlation",
        }
    }
}

/// Where each detector opens and where it clears: the gap between the two is the
/// hysteresis, so a signal sitting on a threshold does not flap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Clipped samples in a window that open clipping; it clears after a window with none.
    pub clipping_open_samples: u64,
    pub flatline_open_dbfs: f64,
    pub flatline_clear_dbfs: f64,
    pub low_signal_open_dbfs: f64,
    pub low_signal_clear_dbfs: f64,
    pub dc_open: f64,
    pub dc_clear: f64,
    pub correlation_open: f64,
    pub correlation_clear: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::with_opening_marks(3, -90.0, -50.0, 0.05, -0.5)
    }
}

impl Thresholds {
    /// The detectors for these opening marks, each clearing a fixed step past its own:
    /// flatline 10 dB above, low signal 6 dB above, DC at 40 % of its mark, correlation
    /// 0.3 back towards 0.
    pub fn with_opening_marks(
        clipping_samples: u64,
        flatline_dbfs: f64,
        low_signal_dbfs: f64,
        dc: f64,
        correlation: f64,
    ) -> Thresholds {
        Thresholds {
            clipping_open_samples: clipping_samples,
            flatline_open_dbfs: flatline_dbfs,
            flatline_clear_dbfs: flatline_dbfs + FLATLINE_CLEAR_DB,
            low_signal_open_dbfs: low_signal_dbfs,
            low_signal_clear_dbfs: low_signal_dbfs + 6.0,
            dc_open: dc,
            dc_clear: dc * 0.4,
            correlation_open: correlation,
            correlation_clear: (correlation + 0.3).min(0.0),
        }
    }
}

/// How far above the flatline mark a channel must come back to clear it.
pub const FLATLINE_CLEAR_DB: f64 = 10.0;

/// A condition opened or cleared on a channel (pairs: their first channel), 1-based.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub condition: Condition,
    pub channel: u16,
    pub opened: bool,
}

/// The open conditions of one stream, updated window by window.
#[derive(Clone, Debug, Default)]
pub struct Detectors {
    thresholds: Thresholds,
    open: std::collections::BTreeSet<(u16, ConditionKey)>,
}

/// `Condition` in a stable order for the set.
type ConditionKey = u8;

fn key(c: Condition) -> ConditionKey {
    c as u8
}

impl Detectors {
    pub fn new(thresholds: Thresholds) -> Detectors {
        Detectors {
            thresholds,
            open: Default::default(),
        }
    }

    /// Whether `condition` is open on (1-based) `channel`.
    pub fn is_open(&self, condition: Condition, channel: u16) -> bool {
        self.open.contains(&(channel, key(condition)))
    }

    /// Feeds one window's levels; returns what opened and cleared.
    pub fn update(&mut self, levels: &Levels) -> Vec<Change> {
        let t = self.thresholds;
        let mut changes = Vec::new();
        for (i, l) in levels.channels.iter().enumerate() {
            let ch = i as u16 + 1;
            let flat = self.edge(
                Condition::Flatline,
                ch,
                l.rms_dbfs < t.flatline_open_dbfs,
                l.rms_dbfs > t.flatline_clear_dbfs,
                &mut changes,
            );
            // A dead input is flat, not merely low.
            let low_open = !flat && l.rms_dbfs < t.low_signal_open_dbfs;
            let low_clear = flat || l.rms_dbfs > t.low_signal_clear_dbfs;
            self.edge(Condition::LowSignal, ch, low_open, low_clear, &mut changes);
            let clip = l.clipped >= t.clipping_open_samples;
            self.edge(Condition::Clipping, ch, clip, l.clipped == 0, &mut changes);
            let dc = l.dc.abs();
            self.edge(
                Condition::DcOffset,
                ch,
                dc > t.dc_open,
                dc < t.dc_clear,
                &mut changes,
            );
        }
        for (p, corr) in levels.pair_correlation.iter().enumerate() {
            let ch = 2 * p as u16 + 1;
            let (open, clear) = match corr {
                Some(c) => (*c < t.correlation_open, *c > t.correlation_clear),
                None => (false, true),
            };
            self.edge(Condition::ChannelCorrelation, ch, open, clear, &mut changes);
        }
        changes
    }

    /// One detector's hysteresis: opens on `open`, clears on `clear`, else holds.
    /// Returns whether it is open after this window.
    fn edge(
        &mut self,
        condition: Condition,
        channel: u16,
        open: bool,
        clear: bool,
        changes: &mut Vec<Change>,
    ) -> bool {
        let k = (channel, key(condition));
        let was = self.open.contains(&k);
        let now = if was { !clear } else { open };
        if now != was {
            if now {
                self.open.insert(k);
            } else {
                self.open.remove(&k);
            }
            changes.push(Change {
                condition,
                channel,
                opened: now,
            });
        }
        now
    }
}

#[path = "meter_feed.rs"]
mod feed;
pub(crate) use feed::{decode_floats, decode_ints};
#[path = "meter_s16.rs"]
mod s16;

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "meter_feed_tests.rs"]
mod feed_tests;
