//! The broadcast facts every output carries (BWF `bext`, Vorbis comments, ID3v2 frames):
//! who made it, for which job and recording, and when frame 0 was captured. Times are UTC.

const MS_PER_DAY: i64 = 86_400_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub job_id: String,
    pub recording_id: String,
    /// Wall time of the recording's frame 0, ms since the Unix epoch.
    pub started_at_ms: Option<i64>,
}

impl Facts {
    pub fn description(&self) -> String {
        let mut d = format!("edgerec job {}", self.job_id);
        if !self.recording_id.is_empty() {
            d.push_str(&format!(" recording {}", self.recording_id));
        }
        d
    }

    /// `("YYYY-MM-DD", "HH:MM:SS")` of frame 0.
    pub fn origination(&self) -> Option<(String, String)> {
        let ts = jiff::Timestamp::from_millisecond(self.started_at_ms?).ok()?;
        let t = jiff::tz::Offset::UTC.to_datetime(ts);
        Some((
            format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        ))
    }

    /// Frame 0 as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn iso8601(&self) -> Option<String> {
        let (date, time) = self.origination()?;
        let ms = self.started_at_ms?.rem_euclid(1000);
        Some(format!("{date}T{time}.{ms:03}Z"))
    }

    /// Samples at `rate` from midnight (UTC) to frame 0: the BWF time reference.
    pub fn time_reference(&self, rate: u32) -> u64 {
        self.started_at_ms.map_or(0, |ms| {
            (ms.rem_euclid(MS_PER_DAY) as u128 * u128::from(rate) / 1000) as u64
        })
    }

    /// `(key, value)` text fields, for tag formats with free keys.
    pub fn fields(&self, rate: u32) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("DESCRIPTION", self.description()),
            ("EDGEREC_JOB", self.job_id.clone()),
            ("ENCODER", format!("edgerec {}", env!("CARGO_PKG_VERSION"))),
        ];
        if !self.recording_id.is_empty() {
            f.push(("EDGEREC_RECORDING", self.recording_id.clone()));
        }
        if let Some(at) = self.iso8601() {
            f.push(("DATE", at));
            f.push(("TIME_REFERENCE", self.time_reference(rate).to_string()));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origination_and_time_reference() {
        // 2026-11-23 13:45:06.250 UTC
        let midnight = 1_795_392_000_000; // 2026-11-23T00:00:00Z
        let ms = midnight + ((13 * 3600 + 45 * 60 + 6) * 1000 + 250);
        let f = Facts {
            job_id: "j1".into(),
            recording_id: "r1".into(),
            started_at_ms: Some(ms),
        };
        assert_eq!(
            f.origination(),
            Some(("2026-11-23".into(), "13:45:06".into()))
        );
        assert_eq!(f.iso8601().unwrap(), "2026-11-23T13:45:06.250Z");
        assert_eq!(f.time_reference(48_000), 49_506_250u64 * 48);
        assert_eq!(f.description(), "edgerec job j1 recording r1");
        assert_eq!(Facts::default().time_reference(48_000), 0);
        assert!(
            f.fields(48_000)
                .contains(&("TIME_REFERENCE", "2376300000".into()))
        );
    }
}
