//! The enhanced live-listen chunk (`?rendition=enhanced`): the writer's mono listen WAV
//! (at most 24 kHz), resampled to 48 kHz for RNNoise, denoised, and back to its own rate,
//! so its length and headers stay those of the raw chunk. Done by the sync role's meter
//! lane, never the writer; one chunk (≤ 512 KiB) at a time.
//!
//! Each chunk is denoised on its own (RNNoise settles within its first frames); Rakkr's
//! agent keeps one denoiser across chunks instead.

use std::io::Cursor;

use serde_json::Value;

use super::dsp::{Denoiser, RATE};
use crate::render::resample::{ResampleError, Resampler};
use crate::segment::wav::mono_s16_wav;

/// Whether a node config's `monitorEnhancement` (`{engine, requested}`) asks for enhanced
/// live audio. Both of Rakkr's engines are served by RNNoise here.
pub fn monitor_wants_enhanced(monitor: Option<&Value>) -> bool {
    let Some(m) = monitor else { return false };
    let requested = m.get("requested").and_then(Value::as_bool) == Some(true);
    let engine = m.get("engine").and_then(Value::as_str);
    requested && matches!(engine, None | Some("rnnoise" | "deepfilternet3"))
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("listen chunk: {0}")]
    Wav(#[from] hound::Error),
    #[error("listen chunk: {0}")]
    Resample(#[from] ResampleError),
    #[error("listen chunk is not 16-bit mono")]
    Layout,
}

/// The denoised WAV of a listen chunk `wav` (16-bit mono), at its rate and length.
pub fn enhance_listen_wav(wav: &[u8]) -> Result<Vec<u8>, ListenError> {
    let mut reader = hound::WavReader::new(Cursor::new(wav))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(ListenError::Layout);
    }
    let input: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32_768.0))
        .collect::<Result<_, _>>()?;
    let rate = spec.sample_rate;
    let mut at48 = Vec::with_capacity(input.len() * (RATE / rate.max(1)).max(1) as usize);
    let mut collect = |s: &[f32]| -> Result<(), ListenError> {
        at48.extend_from_slice(s);
        Ok(())
    };
    if rate == RATE {
        collect(&input)?;
    } else {
        let mut up = Resampler::new(rate, RATE, 1)?;
        up.push(&input, &mut collect)?;
        up.finish(&mut collect)?;
    }
    let mut clean = Vec::with_capacity(at48.len());
    let mut d = Denoiser::new();
    let mut keep = |s: &[f32]| -> Result<(), ListenError> {
        clean.extend_from_slice(s);
        Ok(())
    };
    d.push(&at48, &mut keep)?;
    d.finish(&mut keep)?;
    let mut out = Vec::with_capacity(input.len());
    let mut take = |s: &[f32]| -> Result<(), ListenError> {
        out.extend(
            s.iter()
                .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16),
        );
        Ok(())
    };
    if rate == RATE {
        take(&clean)?;
    } else {
        let mut down = Resampler::new(RATE, rate, 1)?;
        down.push(&clean, &mut take)?;
        down.finish(&mut take)?;
    }
    out.resize(input.len(), 0); // the two resamplings may round a sample apart
    Ok(mono_s16_wav(&out, rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn monitor_enhancement_as_rakkr_sends_it() {
        let cases = [
            (json!({"engine": "deepfilternet3", "requested": true}), true),
            (json!({"engine": "rnnoise", "requested": true}), true),
            (json!({"engine": "rnnoise", "requested": false}), false),
            (json!({"engine": "other", "requested": true}), false),
            (json!({"requested": "yes"}), false),
            (json!(null), false),
        ];
        for (v, want) in cases {
            assert_eq!(monitor_wants_enhanced(Some(&v)), want, "{v}");
        }
        assert!(!monitor_wants_enhanced(None));
    }

    #[test]
    fn an_enhanced_chunk_keeps_rate_and_length_and_is_quieter_in_noise() {
        let rate = 24_000u32;
        let n = rate as usize * 5;
        let mut x: u64 = 99;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = 0.02 * ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0);
                let t = i as f64 / f64::from(rate);
                let tone = 0.3 * (std::f64::consts::TAU * 1000.0 * t).sin();
                ((noise + tone) * 32_767.0) as i16
            })
            .collect();
        let out = enhance_listen_wav(&mono_s16_wav(&samples, rate)).unwrap();
        let mut r = hound::WavReader::new(Cursor::new(out)).unwrap();
        assert_eq!((r.spec().sample_rate, r.spec().channels), (rate, 1));
        let y: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(y.len(), n);
        // The noise floor in 4–8 kHz, a band the 1 kHz tone leaves alone, past 1 s.
        let band = |v: &[i16]| -> f64 {
            let mut w: Vec<f32> = v[rate as usize..].iter().map(|s| f32::from(*s)).collect();
            for _ in 0..3 {
                super::super::dsp::Biquad::highpass(rate, 4000.0).run(&mut w);
                super::super::dsp::Biquad::lowpass(rate, 8000.0).run(&mut w);
            }
            10.0 * (w.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / w.len() as f64).log10()
        };
        let drop = band(&y) - band(&samples);
        assert!(drop < -10.0, "the noise floor fell only {drop:.1} dB");
        assert!(enhance_listen_wav(b"RIFF....WAVE").is_err());
    }
}
