use super::*;

#[test]
fn the_first_failure_of_each_kind_is_logged_at_once_and_repeats_are_folded() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut log = FailureLog::default();
    // (seconds, call, error kind, expected)
    let table: &[(u64, &'static str, &str, Option<u64>)] = &[
        (0, "claim", "timeout", Some(0)),
        (1, "claim", "timeout", None),
        (2, "claim", "malformed", Some(0)),
        (3, "job heartbeat", "timeout", Some(0)),
        (4, "claim", "timeout", None),
        (5, "claim", "status 503", Some(0)),
        (59, "claim", "timeout", None),
        (60, "claim", "timeout", Some(3)),
        (61, "claim", "timeout", None),
        (121, "claim", "timeout", Some(1)),
        (122, "claim", "malformed", Some(0)),
    ];
    for &(s, call, kind, want) in table {
        assert_eq!(
            log.note(call, kind.to_string(), at(s)),
            want,
            "{s}s {call} {kind}"
        );
    }
}
