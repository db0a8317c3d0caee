//! `[meter]`: where the level detectors open. Each clears a fixed step past its opening
//! ([`Thresholds::with_opening_marks`]: a level sitting at the mark is one event pair),
//! so the operator sets one number per condition.

use serde::Deserialize;

use super::ConfigError;
use crate::core::meter::{FLATLINE_CLEAR_DB, Thresholds};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeter {
    /// Samples at full scale in a 5 s window that open `clipping`.
    pub clipping_samples: Option<u64>,
    /// RMS below this is `flatline` (a dead input or muted preamp).
    pub flatline_below_dbfs: Option<f64>,
    /// RMS below this (and above flatline) is `low_signal`.
    pub low_signal_below_dbfs: Option<f64>,
    /// A mean offset above this share of full scale is a DC fault.
    pub dc_offset_above: Option<f64>,
    /// A stereo pair correlated below this is inverted (one leg's polarity swapped).
    pub inverted_correlation_below: Option<f64>,
}

pub fn resolve(raw: &RawMeter) -> Result<Thresholds, ConfigError> {
    let d = Thresholds::default();
    let range = |key: &'static str, v: Option<f64>, default: f64, lo: f64, hi: f64| match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(&x) => Ok(x),
        Some(x) => Err(ConfigError::Invalid {
            key,
            message: format!("{x} is outside {lo}..={hi}"),
        }),
    };
    let clipping = raw.clipping_samples.unwrap_or(d.clipping_open_samples);
    if !(1..=1_000_000).contains(&clipping) {
        return Err(ConfigError::Invalid {
            key: "meter.clipping_samples",
            message: format!("{clipping} is outside 1..=1000000"),
        });
    }
    let flat = range(
        "meter.flatline_below_dbfs",
        raw.flatline_below_dbfs,
        d.flatline_open_dbfs,
        -140.0,
        -20.0,
    )?;
    let low = range(
        "meter.low_signal_below_dbfs",
        raw.low_signal_below_dbfs,
        d.low_signal_open_dbfs,
        -120.0,
        -6.0,
    )?;
    if low <= flat + FLATLINE_CLEAR_DB {
        return Err(ConfigError::Invalid {
            key: "meter.low_signal_below_dbfs",
            message: format!(
                "{low} dBFS must be more than {FLATLINE_CLEAR_DB} dB above flatline_below_dbfs \
                 ({flat}), or a quiet input flaps between the two"
            ),
        });
    }
    let dc = range(
        "meter.dc_offset_above",
        raw.dc_offset_above,
        d.dc_open,
        0.001,
        0.5,
    )?;
    let corr = range(
        "meter.inverted_correlation_below",
        raw.inverted_correlation_below,
        d.correlation_open,
        -1.0,
        0.0,
    )?;
    Ok(Thresholds::with_opening_marks(
        clipping, flat, low, dc, corr,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_detectors_and_each_mark_clears_past_itself() {
        assert_eq!(
            resolve(&RawMeter::default()).unwrap(),
            Thresholds::default()
        );
        let t = resolve(&RawMeter {
            low_signal_below_dbfs: Some(-40.0),
            dc_offset_above: Some(0.1),
            ..RawMeter::default()
        })
        .unwrap();
        assert_eq!(
            (t.low_signal_open_dbfs, t.low_signal_clear_dbfs),
            (-40.0, -34.0)
        );
        assert!((t.dc_clear - 0.04).abs() < 1e-12);
        let bad = RawMeter {
            flatline_below_dbfs: Some(-60.0),
            low_signal_below_dbfs: Some(-55.0),
            ..RawMeter::default()
        };
        assert!(resolve(&bad).unwrap_err().to_string().contains("flaps"));
    }
}
