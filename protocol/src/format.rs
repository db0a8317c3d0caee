//! Sample formats and stream shapes. Samples stay in the device's native format from
//! the capture thread to the segment file; only rendering converts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A PCM sample format, named as ALSA names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SampleFormat {
    /// Signed 16-bit little endian.
    #[serde(rename = "S16_LE")]
    S16Le,
    /// Signed 24-bit packed in 3 bytes, little endian (ALSA `S24_3LE`).
    #[serde(rename = "S24_3LE")]
    S24Le3,
    /// Signed 24-bit, low-justified in a 4-byte little-endian word (ALSA `S24_LE`).
    #[serde(rename = "S24_LE")]
    S24Le,
    /// Signed 32-bit little endian.
    #[serde(rename = "S32_LE")]
    S32Le,
    /// IEEE 754 32-bit float little endian, nominal range -1.0..1.0.
    #[serde(rename = "FLOAT_LE")]
    FloatLe,
}

impl SampleFormat {
    pub const ALL: [SampleFormat; 5] = [
        SampleFormat::S16Le,
        SampleFormat::S24Le3,
        SampleFormat::S24Le,
        SampleFormat::S32Le,
        SampleFormat::FloatLe,
    ];

    /// Bytes one sample occupies in memory and in the segment file.
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::S16Le => 2,
            SampleFormat::S24Le3 => 3,
            SampleFormat::S24Le | SampleFormat::S32Le | SampleFormat::FloatLe => 4,
        }
    }

    /// Bits that carry signal (24 for both 24-bit layouts).
    pub const fn valid_bits(self) -> u16 {
        match self {
            SampleFormat::S16Le => 16,
            SampleFormat::S24Le3 | SampleFormat::S24Le => 24,
            SampleFormat::S32Le | SampleFormat::FloatLe => 32,
        }
    }

    pub const fn is_float(self) -> bool {
        matches!(self, SampleFormat::FloatLe)
    }

    /// The ALSA name, also used in configs, the journal and `timeline.json`.
    pub const fn name(self) -> &'static str {
        match self {
            SampleFormat::S16Le => "S16_LE",
            SampleFormat::S24Le3 => "S24_3LE",
            SampleFormat::S24Le => "S24_LE",
            SampleFormat::S32Le => "S32_LE",
            SampleFormat::FloatLe => "FLOAT_LE",
        }
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown sample format {0:?} (expected one of S16_LE, S24_3LE, S24_LE, S32_LE, FLOAT_LE)")]
pub struct UnknownFormat(pub String);

impl FromStr for SampleFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let found = match upper.as_str() {
            "S16_LE" | "S16" => SampleFormat::S16Le,
            "S24_3LE" => SampleFormat::S24Le3,
            "S24_LE" => SampleFormat::S24Le,
            "S32_LE" | "S32" => SampleFormat::S32Le,
            "FLOAT_LE" | "F32_LE" | "FLOAT" => SampleFormat::FloatLe,
            _ => return Err(UnknownFormat(s.to_string())),
        };
        Ok(found)
    }
}

/// The shape of one capture stream: what every frame in its ring and segments looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamSpec {
    pub format: SampleFormat,
    pub rate: u32,
    pub channels: u16,
}

impl StreamSpec {
    pub const fn bytes_per_frame(&self) -> usize {
        self.format.bytes_per_sample() * self.channels as usize
    }

    /// Whole frames in `d`, rounded down.
    pub fn frames_in(&self, d: Duration) -> u64 {
        (d.as_nanos() * self.rate as u128 / 1_000_000_000) as u64
    }

    /// Wall duration of `frames` at this rate.
    pub fn duration_of(&self, frames: u64) -> Duration {
        Duration::from_nanos((frames as u128 * 1_000_000_000 / self.rate.max(1) as u128) as u64)
    }
}

impl fmt::Display for StreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} Hz {} ch", self.format, self.rate, self.channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in SampleFormat::ALL {
            assert_eq!(f.name().parse::<SampleFormat>().unwrap(), f);
        }
        assert!("S8".parse::<SampleFormat>().is_err());
    }

    #[test]
    fn frame_arithmetic() {
        let spec = StreamSpec {
            format: SampleFormat::S24Le3,
            rate: 48_000,
            channels: 2,
        };
        assert_eq!(spec.bytes_per_frame(), 6);
        assert_eq!(spec.frames_in(Duration::from_millis(1500)), 72_000);
        assert_eq!(spec.duration_of(48_000), Duration::from_secs(1));
    }
}
