//! Wall-clock helpers on `jiff`: milliseconds since the Unix epoch in the store, ISO 8601
//! UTC with milliseconds on the wire, and the ISO 8601 forms nodes send (`capturedAt`,
//! `openedAt`). The `Date` header on replies is hyper's.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The controller's clock: milliseconds since the Unix epoch. Store functions take `now`
/// as a parameter; only the routes, the lease runner and `Admin` read the clock.
pub(crate) fn now_ms() -> i64 {
    // A clock before 1970 is broken; 0 keeps every comparison defined.
    Timestamp::now().as_millisecond().max(0)
}

/// `2026-11-23T01:00:00.000Z`.
pub(crate) fn iso_ms(ms: i64) -> String {
    let t = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    format!("{t:.3}")
}

/// Parses the ISO 8601 forms a node sends: `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fff…]]`
/// followed by `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing (read as UTC). Returns ms since
/// the epoch (sub-millisecond digits are truncated).
pub(crate) fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t.as_millisecond());
    }
    // No offset: jiff refuses to guess one for a `Timestamp`; a node's bare time is UTC.
    let civil = s.parse::<DateTime>().ok()?;
    Some(TimeZone::UTC.to_timestamp(civil).ok()?.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(1_795_395_600_123), "2026-11-23T01:00:00.123Z");
    }

    #[test]
    fn parses() {
        let t = 1_795_395_600_123;
        assert_eq!(parse_iso8601("2026-11-23T01:00:00.123Z"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T02:00:00.123+01:00"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T00:30:00.123-0030"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T01:00:00.123456Z"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T01:00:00.123"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T01:00Z"), Some(t - 123));
        assert_eq!(parse_iso8601("2026-11-23"), Some(t - 3_600_123));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-11-23T25:00Z",
            "2026-11-23T01:00:00.Z",
            "2026-11-23T01:00:00+1",
            "2026-11-23X01:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
