use super::*;

fn sine(hz: f64, amp: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (std::f64::consts::TAU * hz * i as f64 / f64::from(RATE)).sin() as f32)
        .collect()
}

/// A reproducible white noise (xorshift), uniform in ±amp.
fn noise(amp: f32, n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            amp * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn rms_db(x: &[f32]) -> f64 {
    let p = x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * p.max(1e-30).log10()
}

/// Gain (dB) of `f` on a steady sine, measured after the filter settles.
fn gain_db(f: &mut Biquad, hz: f64) -> f64 {
    let mut x = sine(hz, 0.5, RATE as usize);
    let before = rms_db(&x[RATE as usize / 2..]);
    f.run(&mut x);
    rms_db(&x[RATE as usize / 2..]) - before
}

#[test]
fn high_and_low_pass_keep_the_band_and_cut_outside_it() {
    // (filter, frequency, lowest gain dB, highest gain dB): 2nd order is 12 dB/octave.
    type Case = (&'static str, fn() -> Biquad, f64, f64, f64);
    let cases: [Case; 6] = [
        (
            "hp80 @1k",
            || Biquad::highpass(RATE, 80.0),
            1000.0,
            -0.1,
            0.1,
        ),
        (
            "hp80 @80",
            || Biquad::highpass(RATE, 80.0),
            80.0,
            -3.2,
            -2.8,
        ),
        (
            "hp80 @20",
            || Biquad::highpass(RATE, 80.0),
            20.0,
            -30.0,
            -20.0,
        ),
        (
            "lp4k @500",
            || Biquad::lowpass(RATE, 4000.0),
            500.0,
            -0.1,
            0.1,
        ),
        (
            "lp4k @4k",
            || Biquad::lowpass(RATE, 4000.0),
            4000.0,
            -3.2,
            -2.8,
        ),
        (
            "lp4k @16k",
            || Biquad::lowpass(RATE, 4000.0),
            16_000.0,
            -60.0,
            -20.0,
        ),
    ];
    for (name, make, hz, lo, hi) in cases {
        let g = gain_db(&mut make(), hz);
        assert!((lo..=hi).contains(&g), "{name}: {g:.2} dB");
    }
}

#[test]
fn filters_stream_the_same_in_any_block_sizes() {
    let x = noise(0.3, 10_000, 7);
    let mut whole = x.clone();
    Biquad::highpass(RATE, 120.0).run(&mut whole);
    let mut f = Biquad::highpass(RATE, 120.0);
    let mut parts = x.clone();
    for block in parts.chunks_mut(333) {
        f.run(block);
    }
    assert_eq!(whole, parts);
}

/// Counts the gate's open/close changes over `x`, in blocks of 480.
fn transitions(gate: &mut Gate, x: &mut [f32]) -> usize {
    let mut was = gate.is_open();
    let mut n = 0;
    for block in x.chunks_mut(480) {
        gate.run(block);
        n += usize::from(gate.is_open() != was);
        was = gate.is_open();
    }
    n
}

#[test]
fn the_gate_opens_on_signal_closes_after_hold_and_does_not_chatter() {
    let n = RATE as usize;
    // (case, signal, threshold, expected transitions, open at the end)
    let tone = |db: f32| sine(440.0, db_to_gain(db) * std::f32::consts::SQRT_2, n);
    let burst: Vec<f32> = [tone(-20.0), vec![0.0; n]].concat();
    // A tone whose level wobbles ±1 dB around the threshold, 4 times a second.
    let wobble: Vec<f32> = tone(-40.0)
        .iter()
        .enumerate()
        .map(|(i, s)| s * db_to_gain((i as f32 * 4.0 / RATE as f32 * std::f32::consts::TAU).sin()))
        .collect();
    let cases = [
        ("burst then silence", burst, -40.0, 2, false),
        (
            "noise under the threshold",
            noise(0.003, n, 3),
            -40.0,
            0,
            false,
        ),
        ("tone at the threshold", wobble, -40.0, 1, true),
        ("loud throughout", tone(-10.0), -40.0, 1, true),
    ];
    for (name, mut x, db, want, open) in cases {
        let mut g = Gate::new(RATE, db);
        assert_eq!(transitions(&mut g, &mut x), want, "{name}");
        assert_eq!(g.is_open(), open, "{name}");
    }
}

#[test]
fn a_closed_gate_attenuates_by_its_range_and_an_open_one_passes() {
    let n = RATE as usize;
    let mut quiet = noise(0.003, n, 5);
    let before = rms_db(&quiet[n / 2..]);
    Gate::new(RATE, -30.0).run(&mut quiet);
    let drop = rms_db(&quiet[n / 2..]) - before;
    assert!((drop - f64::from(Gate::RANGE_DB)).abs() < 0.5, "{drop:.2}");
    let mut loud = sine(1000.0, 0.5, n);
    let before = rms_db(&loud[n / 2..]);
    Gate::new(RATE, -30.0).run(&mut loud);
    assert!((rms_db(&loud[n / 2..]) - before).abs() < 0.01);
}

#[test]
fn normalising_gain_meets_the_target_under_the_peak_ceiling() {
    // (measured LUFS, true peak, target, ceiling dBTP, expected gain dB)
    let cases = [
        (-23.0, 0.1, -16.0, -1.5, 7.0),
        (-10.0, 0.9, -16.0, -1.5, -6.0),
        // The peak would pass -1.5 dBTP at +7 dB: held at the ceiling.
        (-23.0, 0.5, -16.0, -1.5, -1.5 - 20.0 * 0.5f64.log10()),
        (f64::NEG_INFINITY, 0.0, -16.0, -1.5, 0.0),
        (-75.0, 0.0001, -16.0, -1.5, 0.0),
    ];
    for (lufs, peak, target, tp, want) in cases {
        let g = 20.0 * f64::from(normalising_gain(lufs, peak, target, tp)).log10();
        assert!(
            (g - want).abs() < 0.01,
            "{lufs} {peak}: {g:.3} vs {want:.3}"
        );
    }
}

fn run_chain(chain: &mut Chain, x: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for block in x.chunks(1000) {
        chain
            .push::<()>(block, &mut |s| {
                out.extend_from_slice(s);
                Ok(())
            })
            .unwrap();
    }
    out
}

#[test]
fn two_passes_bring_a_tone_to_the_target_loudness() {
    let spec = ChainSpec {
        denoise: false,
        highpass_hz: Some(80.0),
        lowpass_hz: None,
        gate_db: None,
    };
    let x = sine(997.0, 0.1, 5 * RATE as usize);
    let mut first = Chain::measuring(&spec);
    run_chain(&mut first, &x);
    let (lufs, peak) = first.loudness().unwrap();
    assert!(
        (lufs + 23.0).abs() < 0.3,
        "a 0.1 sine is about -23 LUFS: {lufs}"
    );
    let mut second = Chain::new(&spec, normalising_gain(lufs, peak, -16.0, -1.5));
    let y = run_chain(&mut second, &x);
    let mut check = Chain::measuring(&ChainSpec {
        highpass_hz: None,
        ..spec
    });
    run_chain(&mut check, &y);
    let (after, _) = check.loudness().unwrap();
    assert!((after + 16.0).abs() < 0.1, "{after}");
}

/// RMS (dB) of `x` in the 4–8 kHz band (three HP/LP pairs: over 70 dB down at 1 kHz),
/// past the first second.
fn band_db(x: &[f32]) -> f64 {
    let mut v = x.to_vec();
    for _ in 0..3 {
        Biquad::highpass(RATE, 4000.0).run(&mut v);
        Biquad::lowpass(RATE, 8000.0).run(&mut v);
    }
    rms_db(&v[RATE as usize..])
}

#[test]
fn the_denoiser_keeps_length_alignment_and_tone_and_lowers_the_noise_floor() {
    // A 1 kHz tone from 0.5 s, in white noise: the output is as long, its tone starts
    // where the input's does at the same level, and the noise in a band the tone leaves
    // alone (4–8 kHz) is far lower.
    let n = 3 * RATE as usize + 123;
    let onset = RATE as usize / 2;
    let mut x = noise(0.01, n, 11);
    for (i, s) in sine(1000.0, 0.3, n - onset).iter().enumerate() {
        x[onset + i] += s;
    }
    let mut d = Denoiser::new();
    let mut out = Vec::new();
    let mut sink = |s: &[f32]| -> Result<(), ()> {
        out.extend_from_slice(s);
        Ok(())
    };
    for block in x.chunks(777) {
        d.push(block, &mut sink).unwrap();
    }
    d.finish(&mut sink).unwrap();
    assert_eq!(out.len(), n);
    let floor_drop = band_db(&out) - band_db(&x);
    assert!(
        floor_drop < -10.0,
        "noise floor only {floor_drop:.1} dB lower"
    );
    // Aligned: a 2.5 ms window just before the onset is noise, just after it is tone.
    let env = |from: usize| rms_db(&out[from..from + 120]);
    assert!(
        env(onset - 120) < env(onset) - 20.0,
        "the tone starts late or early"
    );
    let tone_kept = rms_db(&out[onset + 4800..n - 4800]) - rms_db(&x[onset + 4800..n - 4800]);
    assert!(tone_kept.abs() < 1.0, "tone changed by {tone_kept:.1} dB");
}
