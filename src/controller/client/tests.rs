use super::request::{MAX_REASON, seg};
use super::*;

#[test]
fn base_urls() {
    let ok = |u: &str, insecure| check_base_url(u, insecure).map(|r| r.0);
    assert_eq!(
        ok("http://127.0.0.1:8787/api/v1/", false).unwrap(),
        "http://127.0.0.1:8787/api/v1"
    );
    assert!(ok("http://127.8.9.10/api/v1", false).is_ok());
    assert!(ok("http://localhost:8787/api/v1", false).is_ok());
    assert!(ok("http://[::1]:8787/api/v1", false).is_ok());
    assert!(ok("http://[::ffff:127.0.0.1]:8787/api/v1", false).is_ok());
    assert!(ok("https://controller.example/api/v1", false).is_ok());
    for insecure in [
        "http://192.0.2.1:8787/api/v1",
        "http://controller.example/api/v1",
        "http://localhost.evil.example/api/v1",
        "http://[::2]/api/v1",
    ] {
        assert!(
            matches!(ok(insecure, false), Err(ClientError::Insecure { .. })),
            "{insecure}"
        );
        assert!(ok(insecure, true).is_ok(), "{insecure}");
    }
    for bad in [
        "ftp://x/api",
        "/api/v1",
        "https://x/api?x=1",
        "https://user:pw@x/api",
    ] {
        assert!(
            matches!(ok(bad, true), Err(ClientError::BadUrl { .. })),
            "{bad}"
        );
    }
}

#[test]
fn client_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
}

#[test]
fn path_segments_are_encoded() {
    assert_eq!(seg("job_0b6c-1f.1e~x"), "job_0b6c-1f.1e~x");
    assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
}

#[test]
fn reasons() {
    assert_eq!(reason_header("", "agent_failed"), "agent_failed");
    assert_eq!(reason_header(" \n ", "agent_failed"), "agent_failed");
    assert_eq!(
        reason_header("invalid_job: command.outputFileName contains \"..\"", "x"),
        "invalid_job: command.outputFileName contains \"..\""
    );
    assert!(reason_header(&"x".repeat(2000), "y").len() <= MAX_REASON);
}
