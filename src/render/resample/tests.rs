use super::*;

fn run(from: u32, to: u32, input: &[f32], channels: u16, step: usize) -> Vec<f32> {
    run_on(
        Resampler::new(from, to, channels).unwrap(),
        input,
        channels,
        step,
    )
}

fn run_on(mut r: Resampler, input: &[f32], channels: u16, step: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let mut emit = |s: &[f32]| -> Result<(), ResampleError> {
        out.extend_from_slice(s);
        Ok(())
    };
    for piece in input.chunks(step * channels as usize) {
        r.push(piece, &mut emit).unwrap();
    }
    r.finish(&mut emit).unwrap();
    out
}

#[test]
fn exact_frame_counts() {
    for (from, to, frames) in [
        (48_000, 44_100, 48_000u64),
        (44_100, 48_000, 44_100),
        (48_000, 16_000, 1000),
        (48_000, 44_100, 7),
        (48_000, 44_100, 0),
    ] {
        let input = vec![0.1f32; frames as usize * 2];
        let out = run(from, to, &input, 2, 777);
        assert_eq!(
            out.len() as u64,
            output_frames(frames, from, to) * 2,
            "{from}->{to} {frames}"
        );
    }
    assert_eq!(output_frames(48_000 * 60, 48_000, 44_100), 44_100 * 60);
}

#[test]
fn a_tone_keeps_its_phase_and_level() {
    // 1 kHz at 48 kHz to 44.1 kHz: after delay trimming, the output is the same tone,
    // in phase, so the delay really was removed.
    let tone = |rate: f32, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate).sin() * 0.5)
            .collect()
    };
    let out = run(48_000, 44_100, &tone(48_000.0, 48_000), 1, 1000);
    let want = tone(44_100.0, 44_100);
    let err = out[2000..42_000]
        .iter()
        .zip(&want[2000..42_000])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 0.01, "max error {err}");
}

#[test]
fn two_threads_give_the_same_samples_as_one() {
    // Distinct channels (a tone, a ramp, noise-like), an odd length and odd steps: the
    // split path must be sample for sample the single-thread one, tail included.
    for channels in [2u16, 3] {
        let frames = 48_000 * 3 + 517;
        let input: Vec<f32> = (0..frames * channels as usize)
            .map(|i| {
                let (f, c) = (i / channels as usize, i % channels as usize);
                match c {
                    0 => (f as f32 * 0.013).sin() * 0.7,
                    1 => (f % 997) as f32 / 997.0 - 0.5,
                    _ => ((f * 7919) % 1013) as f32 / 1013.0 - 0.5,
                }
            })
            .collect();
        let one = Resampler::with_threads(48_000, 44_100, channels, false).unwrap();
        let two = Resampler::with_threads(48_000, 44_100, channels, true).unwrap();
        assert!(two.helper.is_some() && one.helper.is_none());
        let a = run_on(one, &input, channels, 3001);
        let b = run_on(two, &input, channels, 777);
        assert_eq!(
            a.len() as u64,
            output_frames(frames as u64, 48_000, 44_100) * u64::from(channels)
        );
        assert!(a == b, "{channels} channels: the split output differs");
    }
}
