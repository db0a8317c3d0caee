//! Detectors on generated signals: each bad condition fires once and clears once; a
//! signal sitting on a threshold does not flap; levels read true.

use super::*;

const RATE: f64 = 48_000.0;
const WINDOW: usize = 48_000; // one-second windows

/// `WINDOW` stereo frames from a per-frame function of (frame, channel).
fn window(f: impl Fn(usize, usize) -> f64) -> Levels {
    let mut m = LevelMeter::new(2);
    let samples: Vec<f64> = (0..WINDOW).flat_map(|i| [f(i, 0), f(i, 1)]).collect();
    m.feed(&samples);
    m.take()
}

fn sine(amplitude: f64, hz: f64) -> impl Fn(usize, usize) -> f64 {
    move |i, _| amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / RATE).sin()
}

fn from_dbfs(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A sine whose RMS is `rms_dbfs`.
fn sine_rms(rms_dbfs: f64) -> impl Fn(usize, usize) -> f64 {
    sine(from_dbfs(rms_dbfs) * std::f64::consts::SQRT_2, 997.0)
}

fn healthy() -> Levels {
    window(sine_rms(-20.0))
}

/// Runs `bad` for three windows then `healthy` for three; the changes seen.
fn episode(bad: Levels) -> Vec<Change> {
    let mut d = Detectors::new(Thresholds::default());
    let mut seen = d.update(&healthy());
    assert!(seen.is_empty(), "a healthy tone opens nothing: {seen:?}");
    for _ in 0..3 {
        seen.extend(d.update(&bad));
    }
    for _ in 0..3 {
        seen.extend(d.update(&healthy()));
    }
    seen
}

fn opened_and_cleared(changes: &[Change], condition: Condition, channel: u16) -> bool {
    let mine: Vec<_> = changes
        .iter()
        .filter(|c| c.condition == condition && c.channel == channel)
        .collect();
    mine.len() == 2 && mine[0].opened && !mine[1].opened
}

#[test]
fn each_condition_fires_once_and_clears_once() {
    // (name, signal, condition, channel)
    let rows: Vec<(&str, Levels, Condition, u16)> = vec![
        (
            "clipped sine",
            window(|i, c| (sine(1.6, 440.0)(i, c)).clamp(-1.0, 1.0)),
            Condition::Clipping,
            1,
        ),
        ("silence", window(|_, _| 0.0), Condition::Flatline, 1),
        (
            "-60 dBFS tone",
            window(sine_rms(-60.0)),
            Condition::LowSignal,
            1,
        ),
        (
            "DC",
            window(|i, c| 0.2 + sine_rms(-30.0)(i, c)),
            Condition::DcOffset,
            2,
        ),
        (
            "inverted stereo",
            window(|i, c| {
                let x = sine_rms(-20.0)(i, 0);
                if c == 0 { x } else { -x }
            }),
            Condition::ChannelCorrelation,
            1,
        ),
    ];
    for (name, bad, condition, channel) in rows {
        let changes = episode(bad);
        assert!(
            opened_and_cleared(&changes, condition, channel),
            "{name}: {condition:?} on ch {channel} should open once and clear once: {changes:?}"
        );
        let others: Vec<_> = changes
            .iter()
            .filter(|c| c.condition != condition)
            .collect();
        assert!(others.is_empty(), "{name}: nothing else: {others:?}");
    }
}

#[test]
fn a_tone_sitting_at_a_threshold_does_not_flap() {
    let t = Thresholds::default();
    let mut d = Detectors::new(t);
    // Wobbling ±0.5 dB around the low-signal mark for 20 windows: inside the hysteresis.
    let mut changes = Vec::new();
    for i in 0..20 {
        let wobble = if i % 2 == 0 { 0.5 } else { -0.5 };
        changes.extend(d.update(&window(sine_rms(t.low_signal_open_dbfs + wobble))));
    }
    let low: Vec<_> = changes
        .iter()
        .filter(|c| c.condition == Condition::LowSignal && c.channel == 1)
        .collect();
    assert!(
        low.len() <= 1,
        "at most one opening, never a stream: {low:?}"
    );
    assert!(low.iter().all(|c| c.opened));
}

#[test]
fn levels_read_true() {
    let l = window(sine_rms(-20.0));
    for ch in &l.channels {
        assert!((ch.rms_dbfs + 20.0).abs() < 0.05, "rms {}", ch.rms_dbfs);
        assert!(
            (ch.peak_dbfs + 20.0 - 3.0103).abs() < 0.05,
            "peak {}",
            ch.peak_dbfs
        );
        assert_eq!(ch.clipped, 0);
        assert!(ch.dc.abs() < 1e-3);
    }
    assert!(
        (l.pair_correlation[0].unwrap() - 1.0).abs() < 1e-9,
        "identical channels"
    );
    let silent = window(|_, _| 0.0);
    assert_eq!(silent.channels[0].rms_dbfs, FLOOR_DBFS);
    assert_eq!(silent.pair_correlation[0], None);
}

#[test]
fn native_formats_meter_alike() {
    // A -20 dBFS RMS tone in each format the segments hold reads the same.
    let frames = 4_800;
    let x = |i: usize| sine_rms(-20.0)(i, 0);
    let cases: Vec<(SampleFormat, Vec<u8>)> = vec![
        (
            SampleFormat::S16Le,
            (0..frames)
                .flat_map(|i| ((x(i) * 32767.0) as i16).to_le_bytes())
                .collect(),
        ),
        (
            SampleFormat::S24Le3,
            (0..frames)
                .flat_map(|i| {
                    let v = (x(i) * 8_388_607.0) as i32;
                    let b = v.to_le_bytes();
                    [b[0], b[1], b[2]]
                })
                .collect(),
        ),
        (
            SampleFormat::S24Le,
            (0..frames)
                .flat_map(|i| (((x(i) * 8_388_607.0) as i32) & 0x00ff_ffff).to_le_bytes())
                .collect(),
        ),
        (
            SampleFormat::S32Le,
            (0..frames)
                .flat_map(|i| ((x(i) * 2_147_483_647.0) as i32).to_le_bytes())
                .collect(),
        ),
        (
            SampleFormat::FloatLe,
            (0..frames)
                .flat_map(|i| (x(i) as f32).to_le_bytes())
                .collect(),
        ),
    ];
    for (format, bytes) in cases {
        let mut m = LevelMeter::new(1);
        m.feed_bytes(format, &bytes);
        let l = m.take();
        assert_eq!(l.frames, frames as u64, "{format:?}");
        assert!(
            (l.channels[0].rms_dbfs + 20.0).abs() < 0.05,
            "{format:?}: {}",
            l.channels[0].rms_dbfs
        );
    }
    // A full-scale S16 sample is on the rail.
    let mut m = LevelMeter::new(1);
    m.feed_bytes(SampleFormat::S16Le, &i16::MIN.to_le_bytes());
    assert_eq!(m.take().channels[0].clipped, 1);
}

#[test]
fn the_native_pass_matches_decoding_each_sample() {
    // Mono and stereo, odd counts (a lone last channel: the pairs do not tile a row of
    // lanes) and a wide 64, past one block, rails included: every format's pass gives
    // what decoding sample by sample gives.
    for channels in [1usize, 2, 3, 6, 64] {
        native_pass_matches(channels);
    }
}

fn native_pass_matches(channels: usize) {
    let frames = 9_000usize;
    let raw = |i: usize, ch: usize| -> i64 {
        match (i % 1000, ch) {
            (7, 0) => i64::MAX, // the positive rail
            (8, _) => i64::MIN, // the negative rail
            _ => ((i * 7919 + ch * 104_729) % 65_536) as i64 - 32_768,
        }
    };
    for format in SampleFormat::ALL {
        let width = format.bytes_per_sample();
        let bytes: Vec<u8> = (0..frames * channels)
            .flat_map(|k| native_sample(format, raw(k / channels, k % channels)))
            .collect();
        let mut fast = LevelMeter::new(channels as u16);
        fast.feed_bytes(format, &bytes);
        let (mut peak, mut sq, mut sum, mut clip) = (
            vec![0.0f64; channels],
            vec![0.0f64; channels],
            vec![0.0f64; channels],
            vec![0u64; channels],
        );
        let mut cross = 0.0;
        for frame in bytes.chunks_exact(width * channels) {
            let x: Vec<(f64, bool)> = frame
                .chunks_exact(width)
                .map(|s| normalized(format, s))
                .collect();
            for (ch, &(v, rail)) in x.iter().enumerate() {
                peak[ch] = peak[ch].max(v.abs());
                sq[ch] += v * v;
                sum[ch] += v;
                clip[ch] += rail as u64;
            }
            if channels >= 2 {
                cross += x[0].0 * x[1].0;
            }
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let what = |w: &str, ch: usize| format!("{format:?} {channels} ch: {w} {ch}");
        for ch in 0..channels {
            assert_eq!(fast.clipped[ch], clip[ch], "{}", what("clipped", ch));
            assert!(close(fast.peak[ch], peak[ch]), "{}", what("peak", ch));
            assert!(close(fast.sum_sq[ch], sq[ch]), "{}", what("sum_sq", ch));
            assert!(close(fast.sum[ch], sum[ch]), "{}", what("sum", ch));
        }
        if channels >= 2 {
            assert!(close(fast.cross[0], cross), "{}", what("cross", 0));
        }
        assert_eq!(fast.take().frames, frames as u64);
    }
}

/// `v` (clamped to the format's range; i64::MAX/MIN mean the rails) in native bytes.
fn native_sample(format: SampleFormat, v: i64) -> Vec<u8> {
    let fit = |bits: u32| v.clamp(-(1i64 << bits), (1i64 << bits) - 1) as i32;
    match format {
        SampleFormat::S16Le => (fit(15) as i16).to_le_bytes().to_vec(),
        SampleFormat::S24Le3 => fit(23).to_le_bytes()[..3].to_vec(),
        SampleFormat::S24Le => (fit(23) & 0x00ff_ffff).to_le_bytes().to_vec(),
        SampleFormat::S32Le => fit(31).to_le_bytes().to_vec(),
        SampleFormat::FloatLe => {
            let x = if v == i64::MAX {
                1.0
            } else if v == i64::MIN {
                -1.0
            } else {
                v as f32 / 32768.0
            };
            x.to_le_bytes().to_vec()
        }
    }
}
