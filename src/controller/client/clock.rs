//! Clock skew from the controller's `Date` header. An appliance's clock may be unset or
//! drifting; the controller's lease times and the recording's wall-clock stamps only agree
//! with ours if the clocks do, so the client keeps an estimate and warns when it is large.
//!
//! Pure functions over times passed in: the client feeds them `SystemTime::now()`.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Skew above this is worth a warning (`PROTOCOL.md`).
pub const SKEW_WARN_ABOVE: Duration = Duration::from_secs(5);
/// At most one skew warning per this interval.
pub const SKEW_WARN_EVERY: Duration = Duration::from_secs(3600);

/// The controller's clock minus ours. Positive: the controller is ahead of us.
/// Resolution is about a second (the `Date` header has whole seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockSkew {
    millis: i64,
}

impl ClockSkew {
    pub const fn from_millis(millis: i64) -> ClockSkew {
        ClockSkew { millis }
    }

    /// Controller minus local, in milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.millis
    }

    pub const fn magnitude(self) -> Duration {
        Duration::from_millis(self.millis.unsigned_abs())
    }

    pub const fn controller_ahead(self) -> bool {
        self.millis > 0
    }

    /// Estimates the skew from a reply's `Date` (whole seconds, truncated by the server)
    /// and the local time the reply arrived: the server's time was in `[date, date + 1 s)`,
    /// so the middle of that second is the best guess.
    pub fn estimate(server_date: SystemTime, received_at: SystemTime) -> ClockSkew {
        let server = signed_millis(server_date) + 500;
        let local = signed_millis(received_at);
        ClockSkew::from_millis(server - local)
    }
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.millis < 0 { '-' } else { '+' };
        let m = self.millis.unsigned_abs();
        write!(f, "{sign}{}.{:03} s", m / 1000, m % 1000)?;
        match self.millis {
            0 => Ok(()),
            m if m > 0 => f.write_str(" (controller ahead)"),
            _ => f.write_str(" (controller behind)"),
        }
    }
}

fn signed_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The latest estimate, and when we last warned about it.
#[derive(Debug, Default)]
pub struct SkewTracker {
    latest: Option<ClockSkew>,
    last_warning: Option<Instant>,
}

impl SkewTracker {
    pub fn latest(&self) -> Option<ClockSkew> {
        self.latest
    }

    /// Records an estimate; returns true when the caller should warn now (above
    /// [`SKEW_WARN_ABOVE`], and no warning in the last [`SKEW_WARN_EVERY`]).
    pub fn observe(&mut self, skew: ClockSkew, now: Instant) -> bool {
        self.latest = Some(skew);
        if skew.magnitude() <= SKEW_WARN_ABOVE {
            return false;
        }
        let due = self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= SKEW_WARN_EVERY);
        if due {
            self.last_warning = Some(now);
        }
        due
    }
}

/// The length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE_LEN: usize = 29;

/// Parses an HTTP date in IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`), the only
/// form RFC 9110 lets servers send (jiff's RFC 2822 parser also takes looser forms, such
/// as a missing seconds field, which a server must not send: refused here).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    if s.len() != IMF_FIXDATE_LEN || !s.ends_with(" GMT") {
        return None;
    }
    let t = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s)
        .ok()?;
    SystemTime::try_from(t).ok().filter(|t| *t >= UNIX_EPOCH)
}

/// Formats a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); times before 1970
/// format as the epoch.
pub fn format_http_date(t: SystemTime) -> String {
    let t = jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_imf_fixdate() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Mon, 23 Nov 2026 01:00:00 GMT").unwrap();
        assert_eq!(format_http_date(t), "Mon, 23 Nov 2026 01:00:00 GMT");
        let leap = parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT").unwrap();
        assert_eq!(format_http_date(leap), "Thu, 29 Feb 2024 23:59:59 GMT");
        for bad in [
            "",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t));
        }
        assert_eq!(
            format_http_date(UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn estimates_and_displays() {
        let local = UNIX_EPOCH + Duration::from_millis(1_000_000_250);
        let server = UNIX_EPOCH + Duration::from_secs(1_000_007);
        let skew = ClockSkew::estimate(server, local);
        assert_eq!(skew.as_millis(), 7_250);
        assert!(skew.controller_ahead());
        assert_eq!(skew.to_string(), "+7.250 s (controller ahead)");
        let behind = ClockSkew::estimate(local - Duration::from_secs(3), local);
        assert_eq!(behind.as_millis(), -2_500);
        assert_eq!(behind.magnitude(), Duration::from_millis(2_500));
        assert_eq!(behind.to_string(), "-2.500 s (controller behind)");
    }

    #[test]
    fn warns_once_per_interval() {
        let mut tr = SkewTracker::default();
        let t0 = Instant::now();
        let big = ClockSkew::from_millis(-9_000);
        assert!(!tr.observe(ClockSkew::from_millis(4_000), t0));
        assert!(tr.observe(big, t0));
        assert!(!tr.observe(big, t0 + Duration::from_secs(60)));
        assert!(!tr.observe(ClockSkew::from_millis(100), t0 + Duration::from_secs(120)));
        assert_eq!(tr.latest(), Some(ClockSkew::from_millis(100)));
        assert!(tr.observe(big, t0 + SKEW_WARN_EVERY));
    }
}
